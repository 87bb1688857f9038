"""Run the management node in the foreground until SIGTERM or SIGINT.

Readiness is told two ways, whichever the caller set up: systemd's
``NOTIFY_SOCKET`` (``Type=notify``: ``READY=1``, then ``STOPPING=1``) and a
pipe from ``zstack-lite start`` (``--ready-fd``: one line, see
:mod:`core.daemon.control`).  The node is ready once every component started
and every host's connection settled (:meth:`ManagementNode.start`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from agentkit.daemon import on_stop_signals
from core.kernel.data_dir import NodeAlreadyRunning, NodeError
from core.kernel.extensions import PluginError
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties

log = logging.getLogger(__name__)


def sd_notify(state: str) -> None:
    """Tell systemd (``Type=notify``) about the service; nothing without NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError as exc:
            log.warning("cannot notify systemd on %s: %s", address, exc)


class ReadyPipe:
    """The write end of ``zstack-lite start``'s pipe: one line, then closed."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def tell(self, line: str) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, line.encode() + b"\n")
        except OSError:
            pass  # the starter went away; the node runs on regardless
        finally:
            os.close(self._fd)
            self._fd = None


async def serve(props: Properties, ready_fd: int | None = None) -> int:
    """Start the node, tell who waits that it is ready, run until a stop signal, stop."""
    pipe = ReadyPipe(ready_fd)
    node = ManagementNode(props)
    stop = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), stop)
    try:
        await node.start()
    except NodeAlreadyRunning as exc:
        pipe.tell(f"busy {exc.pid}")
        log.error("%s", exc)
        return 1
    except (NodeError, PluginError, OSError) as exc:
        pipe.tell(f"error {exc}")
        log.error("the management node cannot start: %s", exc)
        return 1
    pipe.tell(f"ready {os.getpid()} {node.socket_path}")
    sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving {node.socket_path}")
    log.info("management node ready (pid %d, socket %s)", os.getpid(), node.socket_path)
    try:
        await stop.wait()
    finally:
        sd_notify("STOPPING=1")
        log.info("management node stopping")
        await node.stop()
    return 0

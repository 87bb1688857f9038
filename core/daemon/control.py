"""Start, find and stop the data dir's management node from a client's side.

Standard library only (see :mod:`core.daemon.node_socket`): ``zcli`` and
``ztui`` call :func:`ensure_running` before they attach, and ``zstack-lite``
uses the rest.

A detached node is ``python -m core.daemon serve --ready-fd N``: it writes one
line to that pipe when it is ready (``ready <pid> <socket>``) or cannot start
(``error <message>``), then closes it; its output goes to ``<data_dir>/node.out``.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from core.daemon.node_socket import NodeSocket
from core.kernel.data_dir import (
    OUTPUT_NAME,
    SOCKET_NAME,
    prepare_data_dir,
    running_pid,
)
from core.kernel.properties import Properties

START_TIMEOUT = 300.0
"""Seconds a start may take: migrations, components, every host's first connect (an
agent's acceleration probe) and, at a first start, the bootstrap of the lab."""
STOP_TIMEOUT = 120.0
"""Seconds ``stop`` waits for the node (its own bounds for running calls come first)."""


class ControlError(RuntimeError):
    """The node cannot be started, found or stopped; the message says why."""


class Started(NamedTuple):
    pid: int
    socket: Path
    by_us: bool
    """False when the node was running already (or another client started it meanwhile)."""


def socket_of(props: Properties) -> Path:
    return props.data_dir / SOCKET_NAME


def serve_command(props: Properties, ready_fd: int) -> list[str]:
    cmd = [sys.executable, "-m", "core.daemon", "serve", "--ready-fd", str(ready_fd)]
    if props.source is not None:
        cmd[3:3] = ["--config", str(props.source)]
    return cmd


def wait_ready(props: Properties, timeout: float = START_TIMEOUT) -> Started:
    """Wait for a node that is starting (it holds the lock) to be ready."""
    node_socket = NodeSocket(socket_of(props), timeout=5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = running_pid(props.data_dir)
        if pid is None:
            raise ControlError(
                f"the management node on {props.data_dir} stopped while starting; "
                f"see {props.data_dir / OUTPUT_NAME} and its log"
            )
        if node_socket.answers():
            return Started(pid, socket_of(props), by_us=False)
        time.sleep(0.05)
    raise ControlError(f"the management node on {props.data_dir} is not ready after {timeout:g}s")


def start_detached(props: Properties, timeout: float = START_TIMEOUT) -> Started:
    """Start the node in the background and return once it is ready."""
    if running_pid(props.data_dir) is not None:
        return wait_ready(props, timeout)
    import subprocess  # here: a client that finds the node running never needs it

    try:
        prepare_data_dir(props.data_dir)
    except OSError as exc:
        raise ControlError(f"cannot create data dir {props.data_dir}: {exc}") from exc
    read_end, write_end = os.pipe()
    out = props.data_dir / OUTPUT_NAME
    try:
        with open(out, "ab") as sink:
            os.chmod(out, 0o600)
            proc = subprocess.Popen(
                serve_command(props, write_end),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                pass_fds=(write_end,),
                start_new_session=True,
            )
    finally:
        os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        # The node writes its line when ready (its own bounds come first) or dies.
        if not select.select([pipe], [], [], timeout)[0]:
            raise ControlError(
                f"the management node on {props.data_dir} (pid {proc.pid}) is not ready after "
                f"{timeout:g}s; see {out} and its log"
            )
        line = pipe.readline().decode(errors="replace").strip()
    word, _, rest = line.partition(" ")
    if word == "ready":
        pid_text, _, socket_path = rest.partition(" ")
        return Started(int(pid_text), Path(socket_path), by_us=True)
    proc.poll()
    if word == "busy":  # another client started a node first: wait for that one
        return wait_ready(props, timeout)
    if word == "error":
        raise ControlError(rest)
    tail = out.read_text(errors="replace")[-1500:].strip() if out.exists() else ""
    raise ControlError(
        f"the management node on {props.data_dir} ended before it was ready"
        + (f":\n{tail}" if tail else "")
    )


def ensure_running(props: Properties, announce: Callable[[str], None] | None = None) -> Started:
    """The data dir's node, started (detached) when none runs; ``announce`` is told once
    when this call started it."""
    node_socket = NodeSocket(socket_of(props), timeout=5)
    if node_socket.answers():
        pid = running_pid(props.data_dir)
        return Started(pid or 0, socket_of(props), by_us=False)
    started = start_detached(props)
    if started.by_us and announce is not None:
        announce(
            f"started the management node on {props.data_dir} (pid {started.pid}); "
            "it keeps running: `zstack-lite stop` stops it"
        )
    return started


def stop_node(props: Properties, timeout: float = STOP_TIMEOUT) -> int | None:
    """Ask the node to stop (SIGTERM) and wait until it has; its pid, None if none ran."""
    pid = running_pid(props.data_dir)
    if pid is None:
        return None
    if pid == 0:  # starting: it writes its pid at once
        time.sleep(0.1)
        pid = running_pid(props.data_dir)
        if not pid:
            return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    deadline = time.monotonic() + timeout
    while running_pid(props.data_dir) is not None:
        if time.monotonic() > deadline:
            raise ControlError(
                f"the management node (pid {pid}) did not stop within {timeout:g}s; "
                f"`kill -9 {pid}` ends it"
            )
        time.sleep(0.05)
    return pid

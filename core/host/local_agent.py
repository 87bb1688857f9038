"""Agents on this machine: the node starts them when they are not running.

The local KVM agent is started detached (its own session), so it outlives a
node restart as a host's agent would; the node reconnects to it.  Simulator
agents belong to the node: started with it, stopped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from agent import protocol
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.http import JsonHttpClient

log = logging.getLogger(__name__)
START_TIMEOUT = 30.0


def is_local(address: str) -> bool:
    return address in ("127.0.0.1", "localhost", "::1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_token(agent_dir: Path) -> str:
    try:
        return (agent_dir / protocol.TOKEN_FILE).read_text().strip()
    except FileNotFoundError:
        return ""


async def answers(port: int, token: str) -> bool:
    """Whether an agent answers a ping on 127.0.0.1:port.

    Any JSON answer counts, even ``success: false`` (e.g. its libvirt is down): the agent
    runs, and starting a second one on its port could only fail.
    """
    if not token:
        return False
    client = JsonHttpClient(
        f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        reply = await client.post(protocol.HOST_PING, {"hostUuid": ""}, timeout=5)
        return isinstance(reply, dict)
    except OperationError:
        return False
    finally:
        await client.close()


class LocalAgent:
    """One agent process on this machine."""

    def __init__(
        self,
        agent_dir: Path,
        port: int,
        backend: str,
        extra: list[str] | None = None,
        detached: bool = True,
    ) -> None:
        self.agent_dir = agent_dir
        self.port = port
        self.backend = backend
        self.extra = list(extra or [])
        self.detached = detached
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def token(self) -> str:
        return read_token(self.agent_dir)

    async def ensure_running(self) -> str:
        """Start the agent unless it answers already; return its token."""
        if await answers(self.port, self.token):
            return self.token
        self.agent_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = self.agent_dir / "agent.out"
        cmd = [
            sys.executable,
            "-m",
            "agent.main",
            "--data-dir",
            str(self.agent_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend",
            self.backend,
            *self.extra,
        ]
        log.info("starting agent: %s", " ".join(cmd))
        with open(out, "ab") as sink:
            self.process = subprocess.Popen(
                cmd,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.detached,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if await answers(self.port, self.token):
                return self.token
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        self.stop()
        tail = out.read_text(errors="replace")[-2000:] if out.exists() else ""
        raise OperationError(
            ErrorCode(
                SysErrors.OPERATION_ERROR,
                f"the {self.backend} agent on 127.0.0.1:{self.port} did not start",
                tail.strip() or f"see {out}",
            )
        )

    def stop(self) -> None:
        """Stop the process this object started (if any)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""Agents on this machine, owned by the node: started with it, stopped with it.

The local KVM agent and every simulator agent run as their own processes (their
own session, so a signal meant for the node's terminal does not reach them).
A node that starts finds the agents an earlier node of its lab left running (it
was killed, say) and adopts them; ``stop`` ends them whoever started them.
Each agent is told its lab (``--lab-dir``, see :mod:`agent.lab`).

A port held by something else is reported with the holder's pid and command
line and what to do, instead of the new agent's "address already in use".
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

from agentkit.procs import alive
from contracts import kvm
from core.host.port_holder import PortHolder, port_holder
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.http import JsonHttpClient

log = logging.getLogger(__name__)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def is_local(address: str) -> bool:
    return address in ("127.0.0.1", "localhost", "::1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_token(agent_dir: Path) -> str:
    try:
        return (agent_dir / kvm.TOKEN_FILE).read_text().strip()
    except FileNotFoundError:
        return ""


async def answers(port: int, token: str) -> bool:
    """Whether an agent with ``token`` answers a ping on 127.0.0.1:port.

    Any JSON answer counts, even ``success: false`` (e.g. its libvirt is down): the agent
    runs, and starting a second one on its port could only fail.  An agent that refuses
    the token is another one (of another lab): it does not count.
    """
    if not token:
        return False
    client = JsonHttpClient(
        f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        ping = kvm.PingCmd(host_uuid="")
        reply = await client.post(ping.PATH, ping.to_json(), timeout=5)
        return isinstance(reply, dict) and "bearer token" not in str(reply.get("error", ""))
    except OperationError:
        return False
    finally:
        await client.close()


def port_held_error(holder: PortHolder, what: str) -> OperationError:
    """The error for a port another program holds: who holds it and what to do."""
    if holder.pid is None:
        fix = "find it with `ss -ltnp` and stop it, or give this lab another port"
    else:
        fix = (
            f"if it is a stale agent, stop it (`kill {holder.pid}`); otherwise give this "
            "lab another agent port (AddKVMHost agentPort, or agent.port in config.toml)"
        )
    return OperationError(
        ErrorCode(
            SysErrors.OPERATION_ERROR,
            f"{what} cannot listen on 127.0.0.1:{holder.port}: {holder.describe()}",
            f"{fix}; the node tries again while it runs",
        )
    )


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (and SIGCONT, for a stopped process), then SIGKILL after ``timeout`` seconds
    (blocking)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while alive(pid):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if time.monotonic() > deadline:
            log.warning("agent pid %d did not stop on SIGTERM; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            return
        time.sleep(0.05)


class LocalAgent:
    """One agent process on this machine, of one lab."""

    def __init__(
        self,
        agent_dir: Path,
        port: int,
        backend: str,
        lab_dir: Path,
        extra: list[str] | None = None,
    ) -> None:
        self.agent_dir = agent_dir
        self.port = port
        self.backend = backend
        self.lab_dir = lab_dir
        self.extra = list(extra or [])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def what(self) -> str:
        return "the KVM agent" if self.backend == "libvirt" else f"the {self.backend} agent"

    @property
    def token(self) -> str:
        return read_token(self.agent_dir)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "agent.main",
            "--data-dir",
            str(self.agent_dir),
            "--lab-dir",
            str(self.lab_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend",
            self.backend,
            *self.extra,
        ]

    def is_ours(self, holder: PortHolder) -> bool:
        """Whether ``holder`` is this agent (started by this node or an earlier one)."""
        return holder.pid is not None and f"--data-dir {self.agent_dir} " in holder.cmdline + " "

    async def ensure_running(self) -> str:
        """Start the agent unless it answers already; return its token.

        Raises OperationError when the port is held by another program (naming it) or
        the agent does not start (with the end of its output).
        """
        if await answers(self.port, self.token):
            return self.token
        holder = await asyncio.to_thread(port_holder, self.port)
        if holder is not None:
            if not self.is_ours(holder):
                raise port_held_error(holder, f"{self.what} of this lab")
            assert holder.pid is not None
            log.warning("%s (pid %d) does not answer; restarting it", self.what, holder.pid)
            await asyncio.to_thread(stop_pid, holder.pid)
        self.agent_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = self.agent_dir / "agent.out"
        cmd = self.command()
        log.info("starting %s: %s", self.what, " ".join(cmd))
        with open(out, "ab") as sink:
            self.process = subprocess.Popen(
                cmd,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if await answers(self.port, self.token):
                return self.token
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        await asyncio.to_thread(self.stop)
        holder = await asyncio.to_thread(port_holder, self.port)
        if holder is not None and not self.is_ours(holder):
            raise port_held_error(holder, f"{self.what} of this lab")
        tail = out.read_text(errors="replace")[-2000:] if out.exists() else ""
        raise OperationError(
            ErrorCode(
                SysErrors.OPERATION_ERROR,
                f"{self.what} on 127.0.0.1:{self.port} did not start",
                tail.strip() or f"see {out}",
            )
        )

    def stop(self) -> None:
        """Stop the agent, whichever node of this lab started it (blocking)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            stop_pid(proc.pid)
            proc.poll()
            return
        holder = port_holder(self.port)
        if holder is not None and holder.pid is not None and self.is_ours(holder):
            stop_pid(holder.pid)

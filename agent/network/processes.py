"""The virtual-router agent's process: its directory, token, start, readiness and end.

Blocking helpers (run them in a thread).  The process is started detached (its own
session, stdin and stdout on /dev/null, stderr in ``<dir>/agent.stderr`` for the
start-up errors the caller is told about) and recorded in ``<dir>/agent.pid``, so
a later agent process finds it again.  Processes this agent started are reaped
with their :class:`subprocess.Popen`, so a dead one does not linger as a zombie.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agentkit.errors import AgentError
from agentkit.procs import alive, cmdline
from contracts.names import dnsmasq_run_dir

AGENT_MODULE: Final = "virtual_router.main"
SOCKET_FILE: Final = "agent.sock"
TOKEN_FILE: Final = "agent.token"
PID_FILE: Final = "agent.pid"
STDERR_FILE: Final = "agent.stderr"
MAX_SOCKET_PATH: Final = 107
"""sun_path holds 108 bytes with the terminating NUL."""
SHORT_SOCKET_DIR: Final = Path("/run/zstack-lite/vr")
"""Where an agent's socket goes when ``<dir>/agent.sock`` would be too long (a deep data
dir): ``<this>/<dir name>.sock``, so it is still found from the directory alone."""
SPEC_FILE: Final = "appliance.json"
START_TIMEOUT: Final = 20.0
KILL_GRACE: Final = 3.0
POLL: Final = 0.02


def default_agent_command() -> list[str]:
    return [sys.executable, "-m", AGENT_MODULE]


@dataclass(frozen=True)
class AppliancePaths:
    dir: Path

    @property
    def socket(self) -> Path:
        """``<dir>/agent.sock``, or a short path under SHORT_SOCKET_DIR if that is too long."""
        beside = self.dir / SOCKET_FILE
        if len(os.fsencode(beside)) <= MAX_SOCKET_PATH:
            return beside
        return SHORT_SOCKET_DIR / f"{self.dir.name}.sock"

    def make_socket_dir(self) -> None:
        if self.socket.parent != self.dir:
            self.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def remove(self) -> None:
        """The directory, the socket if it lives outside it, and the files its dnsmasq
        re-reads (left when the agent was killed)."""
        if self.socket.parent != self.dir:
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(dnsmasq_run_dir(self.dir), ignore_errors=True)

    @property
    def token(self) -> Path:
        return self.dir / TOKEN_FILE

    @property
    def pid(self) -> Path:
        return self.dir / PID_FILE

    @property
    def stderr(self) -> Path:
        return self.dir / STDERR_FILE

    @property
    def spec(self) -> Path:
        return self.dir / SPEC_FILE

    def check_socket_path(self) -> None:
        length = len(os.fsencode(self.socket))
        if length > MAX_SOCKET_PATH:
            raise AgentError(
                f"the agent socket path {self.socket} is {length} bytes; a Unix socket path "
                f"has at most {MAX_SOCKET_PATH}: give the agent a shorter data dir"
            )
        self.make_socket_dir()

    def agent_argv(self, command: Sequence[str]) -> list[str]:
        return [
            *command,
            "--socket",
            str(self.socket),
            "--data-dir",
            str(self.dir),
            "--token-file",
            str(self.token),
        ]


def make_dir(path: Path) -> bool:
    """Make the appliance directory (0700, parents 0755); True if this call made it."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        if not path.is_dir():
            raise AgentError(f"{path} exists and is not a directory") from None
        return False
    path.chmod(0o700)
    return True


class ProcessTable:
    """The agent processes this agent started, so they can be reaped."""

    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, argv: Sequence[str], paths: AppliancePaths) -> subprocess.Popen[bytes]:
        with contextlib.suppress(FileNotFoundError):
            paths.socket.unlink()  # a stale socket from a dead agent
        with open(paths.stderr, "ab") as err:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=paths.dir,
                start_new_session=True,
                close_fds=True,
            )
        with self._lock:
            self._procs[proc.pid] = proc
        paths.pid.write_text(f"{proc.pid}\n")
        return proc

    def reap(self) -> None:
        with self._lock:
            for pid, proc in list(self._procs.items()):
                if proc.poll() is not None:
                    del self._procs[pid]

    def returncode(self, pid: int) -> int | None:
        with self._lock:
            proc = self._procs.get(pid)
        return proc.poll() if proc is not None else None


def wait_for_socket(
    table: ProcessTable, pid: int, paths: AppliancePaths, timeout: float = START_TIMEOUT
) -> None:
    """Until the agent accepts connections on its socket; raise if the process dies or time
    runs out.  The file alone is not enough: it appears at bind(), a moment before listen(),
    and a connection in between is refused."""
    deadline = time.monotonic() + timeout
    while not _accepts(paths.socket):
        code = table.returncode(pid)
        if code is not None or not alive(pid):
            raise AgentError(
                f"the virtual-router agent (pid {pid}) exited with status {code} before "
                f"listening on {paths.socket}{_stderr_tail(paths)}"
            )
        if time.monotonic() > deadline:
            raise AgentError(
                f"the virtual-router agent (pid {pid}) did not listen on {paths.socket} within "
                f"{timeout:g}s{_stderr_tail(paths)}"
            )
        time.sleep(POLL)


def _accepts(path: Path) -> bool:
    """Whether something listens on the Unix socket ``path`` (a connection is made and closed)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:  # no file yet, or bound but not listening
            return False
    return True


def _stderr_tail(paths: AppliancePaths, limit: int = 600) -> str:
    try:
        text = paths.stderr.read_text(errors="replace").strip()
    except OSError:
        return ""
    return f"; its stderr ends: {text[-limit:]}" if text else ""


def recorded_agent(paths: AppliancePaths) -> int | None:
    """The pid in ``agent.pid`` if that process runs and is this appliance's agent."""
    try:
        pid = int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0 or not alive(pid) or str(paths.socket) not in cmdline(pid):
        return None
    return pid


def terminate(pids: Iterable[int], table: ProcessTable, grace: float = KILL_GRACE) -> None:
    """SIGTERM, then SIGKILL whatever still runs after ``grace`` seconds."""
    pending = {pid for pid in pids if pid != os.getpid()}
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for sig_time, sig in ((grace, signal.SIGKILL), (2.0, None)):
        deadline = time.monotonic() + sig_time
        while pending and time.monotonic() < deadline:
            table.reap()
            pending = {pid for pid in pending if alive(pid)}
            if pending:
                time.sleep(POLL)
        if sig is None:
            break
        for pid in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    table.reap()
    if pending:
        raise AgentError(f"processes {sorted(pending)} did not end after SIGKILL")

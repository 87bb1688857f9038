"""Who listens on a TCP port of this machine: read from /proc, as ``ss -ltnp`` does.

The node starts its local agents on ports of this machine; when one is taken by
something else (a stale agent of another lab, any program), the user is told the
holder's pid and command line instead of "address already in use".
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from agentkit.procs import cmdline

LISTEN = "0A"
"""The TCP state LISTEN in /proc/net/tcp."""


@dataclass(frozen=True)
class PortHolder:
    port: int
    pid: int | None
    """None when the socket's owner cannot be seen (another network namespace or user)."""
    cmdline: str

    def describe(self) -> str:
        if self.pid is None:
            return f"port {self.port} is held by a process this node cannot see"
        return f"port {self.port} is held by pid {self.pid} ({self.cmdline})"


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def cmdline_of(pid: int) -> str:
    """A process's command line as one string ("" once it is gone)."""
    return " ".join(cmdline(pid))


def port_holder(port: int, settle: float = 1.0) -> PortHolder | None:
    """The process listening on TCP ``port`` (any address), or None if nothing listens.

    A socket whose owner was just killed stays listed for a moment with no process
    holding it: such a socket is looked at again for ``settle`` seconds before it is
    reported as held by a process this node cannot see.
    """
    deadline = time.monotonic() + settle
    while True:
        inodes = _listening_inodes(port)
        if not inodes:
            return None
        found = _owner(port, {f"socket:[{inode}]" for inode in inodes})
        if found is not None or time.monotonic() > deadline:
            return found or PortHolder(port, None, "")
        time.sleep(0.05)


def _owner(port: int, wanted: set[str]) -> PortHolder | None:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) in wanted:
                        pid = int(entry.name)
                        return PortHolder(port, pid, cmdline_of(pid))
                except OSError:
                    continue
    return None

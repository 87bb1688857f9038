"""The management node's data dir: its layout and the lock that makes one node its owner.

Clients (``zcli``, ``ztui``, ``zstack-lite``) use this module to find a running
node without starting one, so it imports nothing but the standard library.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

DATA_DIR_MODE = 0o711
LOCK_NAME = "node.lock"
SOCKET_NAME = "node.sock"
"""The node's local API (:mod:`core.kernel.local_api`): there only while the node is ready."""
LOG_NAME = "management-node.log"
OUTPUT_NAME = "node.out"
"""What a detached node prints (a crash before its logging is set up lands here)."""
LOCK_RETRY = 2.0
"""Seconds a starting node tries again for a lock held by a client's probe (pid empty)."""


class NodeError(RuntimeError):
    """The node cannot start; the message says why."""


class NodeAlreadyRunning(NodeError):
    def __init__(self, data_dir: Path, pid: str) -> None:
        super().__init__(f"a management node (pid {pid or '?'}) already runs on {data_dir}")
        self.data_dir = data_dir
        self.pid = pid


def prepare_data_dir(data_dir: Path) -> None:
    """Make the data dir, traversable but not listable by others (0711).

    QEMU runs as its own user and must reach the VM disks on the primary storage
    kept under the data dir; everything secret inside is mode 0600 or in a 0700
    directory (the database, the agent's token, the node's socket and lock).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(DATA_DIR_MODE)


class DataDirLock:
    """An exclusive flock on ``<data_dir>/node.lock`` holding the owner's pid, released when
    the process exits (even by SIGKILL)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        deadline = time.monotonic() + LOCK_RETRY
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                if pid or time.monotonic() > deadline:
                    raise NodeAlreadyRunning(self.path.parent, pid) from None
                time.sleep(0.02)  # a client probing (running_pid) holds it for a moment
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def running_pid(data_dir: Path) -> int | None:
    """The pid of the node that owns ``data_dir``, or None when none does.

    0 when a node holds the lock but has not written its pid yet.
    """
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)

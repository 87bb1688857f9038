"""What both agents' processes set up the same way: logging and stop signals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path


def setup_logging(log_file: Path, level: str) -> None:
    """Everything to ``log_file``; warnings and errors to stderr as well (whoever starts
    the agent may keep only its output)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.FileHandler(log_file)
    handler.setFormatter(formatter)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    stderr.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.handlers[:] = [handler, stderr]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # every netlink message at DEBUG


def on_stop_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``, in this process only.

    Not ``loop.add_signal_handler``: it makes the loop's self-pipe the process's signal
    wakeup fd, which a child forked without exec shares, and pyroute2 forks one for every
    request into another namespace (``IPRoute(netns=...)``) and sends it SIGTERM when done:
    that signal, written to the shared pipe, stopped this agent now and then.  A plain
    handler runs in the process that got the signal, and a forked child ignores it."""
    pid = os.getpid()

    def handler(_signum: int, _frame: object) -> None:
        if os.getpid() == pid:
            loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)

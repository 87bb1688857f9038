"""GC job runners the tests submit: real clean-ups of files, which fail while a blocker
file exists (as a clean-up fails while its host is down)."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from pathlib import Path
from typing import Any

from core.gc.job import GarbageCollectorJob
from core.kernel.errors import operr


class RemoveLeftover(GarbageCollectorJob):
    """Delete ``context["path"]``; fail while ``context["blocker"]`` exists."""

    async def run(self, node: Any, context: dict[str, Any]) -> None:
        blocker = Path(context["blocker"])
        if blocker.exists():
            raise operr(f"cannot remove {context['path']}: {blocker.name} is in the way")
        Path(context["path"]).unlink(missing_ok=True)


class WaitForFile(GarbageCollectorJob):
    """Wait until ``context["path"]`` exists (a clean-up that takes a while)."""

    async def run(self, node: Any, context: dict[str, Any]) -> None:
        while not Path(context["path"]).exists():
            await asyncio.sleep(0.05)


class Abstract(GarbageCollectorJob):
    @abstractmethod
    async def other(self) -> None: ...


class NeedsArgs(GarbageCollectorJob):
    def __init__(self, what: str) -> None:
        self.what = what

    async def run(self, node: Any, context: dict[str, Any]) -> None:
        return None

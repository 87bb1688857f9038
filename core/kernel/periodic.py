"""Work that runs every N seconds, N being a global config (ping trackers, expungers).

A change of the config applies at once: the wait restarts with the new
interval instead of finishing the old one.  An exception in one round is
logged and the next round runs as planned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


class PeriodicTask:
    def __init__(
        self, node: Any, name: str, category: str, config: str, work: Callable[[], Awaitable[None]]
    ) -> None:
        self.node = node
        self.name = name
        self.category = category
        self.config = config
        self.work = work
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        from core.config.plugin import GlobalConfigPlugin

        configs = self.node.plugin(GlobalConfigPlugin)
        wake = asyncio.Event()
        sub = self.node.events.subscribe(
            f"/globalConfig/update/{self.category}/{self.config}", lambda _event: wake.set()
        )
        try:
            while True:
                interval = configs.value(self.category, self.config)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), interval)
                if wake.is_set():
                    wake.clear()
                    continue
                try:
                    await self.work()
                except Exception:
                    log.exception(
                        "periodic task %s failed; it runs again in %ss", self.name, interval
                    )
        finally:
            sub.cancel()

"""Reports to the core (REPORT_VM_STATE, REPORT_PROGRESS), sent in order, never fatal.

Producers call the non-blocking ``vm_state``/``progress`` (from any code on the
loop); one worker task POSTs them one at a time to ``<reportUrl><path>``.  A
report that cannot be delivered is logged and dropped: the core's periodic
``/vm/vmsync`` repairs a missed state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp

from contracts.kvm import REPORT_PROGRESS, REPORT_VM_STATE

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000


class Reporter:
    def __init__(self, session: aiohttp.ClientSession, token: str, timeout: float = 10.0) -> None:
        self.session = session
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.host_uuid = ""
        """The uuid the core gave at the last host connect ("" until then)."""
        self.report_url = ""
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(MAX_QUEUED)
        self._worker: asyncio.Task[None] | None = None

    def configure(self, host_uuid: str, report_url: str) -> None:
        self.host_uuid = host_uuid
        self.report_url = report_url.rstrip("/")

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="agent-reports")

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Send what is queued (for at most ``drain_timeout``), then stop."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_timeout)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    async def drain(self) -> None:
        """Wait until every queued report has been tried."""
        await self._queue.join()

    # -- producers -------------------------------------------------------------
    def vm_state(self, vm_uuid: str, state: str) -> None:
        self._put(
            REPORT_VM_STATE, {"hostUuid": self.host_uuid, "vmUuid": vm_uuid, "vmState": state}
        )

    def progress(self, task_uuid: str, stage: str, progress: int, total: int) -> None:
        self._put(
            REPORT_PROGRESS,
            {"taskUuid": task_uuid, "stage": stage, "progress": progress, "total": total},
        )

    def _put(self, path: str, body: dict[str, Any]) -> None:
        if not self.report_url:
            log.debug("no report URL yet (no host connect); dropping %s %s", path, body)
            return
        try:
            self._queue.put_nowait((self.report_url + path, body))
        except asyncio.QueueFull:
            log.warning("report queue full; dropping %s %s", path, body)

    # -- the worker ------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            url, body = await self._queue.get()
            try:
                await self._post(url, body)
            finally:
                self._queue.task_done()

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with self.session.post(
                url, json=body, headers=headers, timeout=self.timeout
            ) as resp:
                if resp.status >= 300:
                    log.warning("report to %s answered HTTP %d: %s", url, resp.status, body)
                else:
                    log.debug("reported to %s: %s", url, body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("cannot report to %s (%s: %s): %s", url, type(exc).__name__, exc, body)

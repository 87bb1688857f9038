"""Test doubles for the agent: a fake core (callbacks and reports) and small helpers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from contracts.kvm import REPORT_PROGRESS, REPORT_VM_STATE
from core.kernel.http import JsonHttpClient

CALLBACK_PATH = "/zstack/asyncrest/callback"
REPORT_PREFIX = "/zstack/report"


class CoreStub:
    """A fake management node on 127.0.0.1: records async callbacks and agent reports.

    ``callback_script`` holds HTTP statuses to answer the next callback attempts with
    (then 200), to exercise the agent's retries.
    """

    def __init__(self) -> None:
        self.callbacks: dict[str, dict[str, Any]] = {}
        self.callback_attempts: list[tuple[str, int]] = []
        self.callback_headers: dict[str, dict[str, str]] = {}
        self.callback_script: list[int] = []
        self.reports: list[tuple[str, dict[str, Any]]] = []
        self.report_headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> CoreStub:
        app = web.Application()
        app.router.add_post(CALLBACK_PATH, self._callback)
        app.router.add_post(REPORT_PREFIX + "/{tail:.*}", self._report)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def callback_url(self) -> str:
        return self.base_url + CALLBACK_PATH

    @property
    def report_url(self) -> str:
        return self.base_url + REPORT_PREFIX

    async def _callback(self, request: web.Request) -> web.Response:
        task_uuid = request.headers.get("taskuuid", "")
        status = self.callback_script.pop(0) if self.callback_script else 200
        self.callback_attempts.append((task_uuid, status))
        if 200 <= status < 300:
            self.callbacks[task_uuid] = await request.json()
            self.callback_headers[task_uuid] = dict(request.headers)
        return web.json_response({}, status=status)

    async def _report(self, request: web.Request) -> web.Response:
        path = request.path[len(REPORT_PREFIX) :]
        self.reports.append((path, await request.json()))
        self.report_headers.append(dict(request.headers))
        return web.json_response({})

    # -- reading what arrived ---------------------------------------------------
    def vm_states(self, vm_uuid: str) -> list[str]:
        return [
            body["vmState"]
            for path, body in self.reports
            if path == REPORT_VM_STATE and body["vmUuid"] == vm_uuid
        ]

    def progress(self, task_uuid: str) -> list[dict[str, Any]]:
        return [
            body
            for path, body in self.reports
            if path == REPORT_PROGRESS and body["taskUuid"] == task_uuid
        ]

    async def callback(self, task_uuid: str, timeout: float = 10.0) -> dict[str, Any]:
        await wait_until(lambda: task_uuid in self.callbacks, timeout, f"callback {task_uuid}")
        return self.callbacks[task_uuid]

    async def wait_for_state(self, vm_uuid: str, state: str, timeout: float = 10.0) -> None:
        await wait_until(
            lambda: state in self.vm_states(vm_uuid),
            timeout,
            f"a {state} report for {vm_uuid} (got {self.vm_states(vm_uuid)})",
        )


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "the condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


class AgentCaller:
    """Calls an agent the way the core does, through the project's JsonHttpClient."""

    def __init__(self, base_url: str, token: str, core: CoreStub | None = None) -> None:
        self.base_url = base_url
        self.token = token
        self.core = core
        self.client = JsonHttpClient(base_url, headers=self.auth)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def close(self) -> None:
        await self.client.close()

    async def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A synchronous call: the answer in the body."""
        return await self.client.post(path, body if body is not None else {}, timeout=60)

    async def ok(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.call(path, body)
        assert answer["success"] is True, f"{path} failed: {answer}"
        assert answer["error"] == ""
        return answer

    async def start_async(
        self, path: str, body: dict[str, Any], task_uuid: str | None = None
    ) -> str:
        """Send an async call; the task uuid (the immediate answer is checked)."""
        assert self.core is not None
        task_uuid = task_uuid or uuid.uuid4().hex
        headers = {**self.auth, "taskuuid": task_uuid, "callbackurl": self.core.callback_url}
        client = JsonHttpClient(self.base_url, headers=headers)
        try:
            ack = await client.post(path, body, timeout=10)
        finally:
            await client.close()
        assert ack == {"success": True, "error": ""}, ack
        return task_uuid

    async def call_async(
        self, path: str, body: dict[str, Any], timeout: float = 30.0
    ) -> dict[str, Any]:
        """An async call: the answer that arrives at the callback URL."""
        assert self.core is not None
        task_uuid = await self.start_async(path, body)
        return await self.core.callback(task_uuid, timeout)

    async def ok_async(
        self, path: str, body: dict[str, Any], timeout: float = 30.0
    ) -> dict[str, Any]:
        answer = await self.call_async(path, body, timeout)
        assert answer["success"] is True, f"{path} failed: {answer}"
        return answer

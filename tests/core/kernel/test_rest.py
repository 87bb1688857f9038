"""The node's REST facade for agents (callbacks and reports), and AgentClient's async calls
to an agent that goes away while it runs one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from agentkit.server import AgentServer, CommandContext, CommandRegistry
from core.kernel.errors import OperationError
from core.kernel.rest import AgentClient, RestFacade

TOKEN = "secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEEP = '{"vmUuid": ' + "[" * 100_000 + "]" * 100_000 + "}"
HUGE = '{"vmUuid": "v", "progress": ' + "9" * 5000 + "}"


@pytest.fixture
async def rest() -> AsyncIterator[RestFacade]:
    facade = RestFacade("127.0.0.1", 0)
    await facade.start()
    facade.allow_token(TOKEN)
    try:
        yield facade
    finally:
        await facade.stop()


async def post(url: str, data: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_reports_and_callbacks_refuse_deep_or_huge_json_with_400(rest: RestFacade) -> None:
    reports: list[dict[str, Any]] = []

    async def on_report(body: dict[str, Any]) -> None:
        reports.append(body)

    rest.on_report("/kvm/reportvmstate", on_report)
    task_uuid, future = rest.expect(TOKEN)
    callback = {**AUTH, "taskuuid": task_uuid}
    for url, headers in (
        (rest.base_url + "/kvm/reportvmstate", AUTH),
        (rest.callback_url, callback),
    ):
        status, answer = await post(url, DEEP, headers)
        assert (status, answer) == (
            400,
            {"success": False, "error": "field 'vmUuid' nests deeper than 32 levels"},
        )
        status, answer = await post(url, HUGE, headers)
        assert status == 400
        assert answer["error"].startswith("field 'progress' is a number of 5000 characters")
    assert reports == [] and not future.done()
    # both still work
    assert (await post(rest.base_url + "/kvm/reportvmstate", '{"a": 1}', AUTH))[0] == 200
    assert (await post(rest.callback_url, '{"success": true}', callback))[0] == 200
    assert reports == [{"a": 1}] and future.result() == {"success": True}


class HangingAgent:
    """An agent whose async command never ends (until the agent stops)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        registry = CommandRegistry()
        registry.add("/slow", self._slow, is_async=True)
        self.server = AgentServer(registry, TOKEN, self._no_callback)

    async def _slow(self, _body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        self.entered.set()
        await asyncio.Event().wait()
        return {}

    async def _no_callback(self, _url: str, _task: str, _answer: dict[str, Any]) -> bool:
        return False


async def test_an_async_call_fails_soon_when_its_agent_stops(rest: RestFacade) -> None:
    agent = HangingAgent()
    port = await agent.server.start("127.0.0.1", 0)
    client = AgentClient(f"http://127.0.0.1:{port}", TOKEN, rest, f"agent on 127.0.0.1:{port}")
    client.watch_interval = 0.2
    try:
        call = asyncio.create_task(client.call_async("/slow", {}, timeout=300))
        await asyncio.wait_for(agent.entered.wait(), 10)
        await agent.server.stop()  # its tasks are cancelled: no callback will ever come
        with pytest.raises(OperationError) as info:
            await asyncio.wait_for(call, 30)
        assert info.value.error.description == (
            f"the agent of agent on 127.0.0.1:{port} went away during /slow"
        )
    finally:
        await agent.server.stop()
        await client.close()


async def test_an_async_call_fails_soon_when_its_agent_forgot_the_task(
    rest: RestFacade,
) -> None:
    """A restarted agent answers, but no longer runs the task."""
    agent = HangingAgent()
    port = await agent.server.start("127.0.0.1", 0)
    client = AgentClient(f"http://127.0.0.1:{port}", TOKEN, rest, "host h (127.0.0.1)")
    client.watch_interval = 0.2
    try:
        call = asyncio.create_task(client.call_async("/slow", {}, timeout=300))
        await asyncio.wait_for(agent.entered.wait(), 10)
        for task in list(agent.server._tasks.values()):
            task.cancel()
        with pytest.raises(OperationError) as info:
            await asyncio.wait_for(call, 30)
        error = info.value.error
        assert error.description == "the agent of host h (127.0.0.1) went away during /slow"
        assert error.cause is not None and error.cause.description == "it no longer runs the task"
    finally:
        await agent.server.stop()
        await client.close()

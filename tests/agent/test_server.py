"""The agent's HTTP server: auth, status codes, the envelope and the async callback protocol."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import Agent
from agent.simulator_backend import SimulatorBackend
from agentkit.auth import bearer_matches, load_or_create_token
from agentkit.callback import CallbackSender, RetryPolicy
from agentkit.errors import AgentError
from agentkit.server import AgentServer, CommandContext, CommandRegistry
from contracts.kvm import TOKEN_FILE
from tests.agent.helpers import AgentCaller, CoreStub, wait_until


async def raw_post(
    url: str, body: Any = None, headers: dict[str, str] | None = None, data: str | None = None
) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
        async with session.post(url, headers=headers or {}, **kwargs) as resp:
            return resp.status, await resp.json()


# -- auth and status codes ------------------------------------------------------
async def test_requests_without_or_with_a_wrong_token_get_401(caller: AgentCaller) -> None:
    url = caller.base_url + "/host/ping"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {caller.token}"},
        {"Authorization": f"Bearer {caller.token}x"},
    ):
        status, answer = await raw_post(url, {}, headers)
        assert status == 401, headers
        assert answer == {"success": False, "error": "missing or wrong bearer token"}
    # Unknown paths do not tell an unauthenticated caller what exists.
    status, _ = await raw_post(caller.base_url + "/no/such/path", {})
    assert status == 401


async def test_unknown_path_is_404_and_bad_bodies_are_400(caller: AgentCaller) -> None:
    status, answer = await raw_post(caller.base_url + "/no/such/path", {}, caller.auth)
    assert (status, answer["success"]) == (404, False)
    assert "/no/such/path" in answer["error"]

    url = caller.base_url + "/host/ping"
    status, answer = await raw_post(url, headers=caller.auth, data="{not json")
    assert status == 400 and answer["error"].startswith("the body is not JSON: ")
    status, answer = await raw_post(url, [1, 2], caller.auth)
    assert status == 400 and "JSON object" in answer["error"]
    status, answer = await raw_post(url, headers=caller.auth, data="")
    assert status == 400


DEEP_LISTS = "[" * 100_000 + "]" * 100_000
DEEP_OBJECTS = '{"vmUuid": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}"
HUGE_INT = '{"hostUuid": "h", "size": ' + "9" * 5000 + "}"


async def test_deep_or_huge_bodies_are_400_naming_the_field_and_the_limit(
    caller: AgentCaller,
) -> None:
    url = caller.base_url + "/host/ping"
    for data, error in (
        (DEEP_LISTS, "the body nests deeper than 32 levels"),
        (DEEP_OBJECTS, "field 'vmUuid' nests deeper than 32 levels"),
        (
            HUGE_INT,
            "field 'size' is a number of 5000 characters;"
            " a number may have at most 40 characters and must be finite",
        ),
    ):
        status, answer = await raw_post(url, headers=caller.auth, data=data)
        assert (status, answer) == (400, {"success": False, "error": error})
    # the server still serves
    assert (await caller.ok("/host/ping", {"hostUuid": ""}))["success"]


async def test_task_status_says_whether_an_async_task_runs(caller: AgentCaller) -> None:
    answer = await caller.ok("/task/status", {"taskUuid": "t-1"})
    assert answer["running"] is False and answer["taskUuid"] == "t-1"
    assert "taskUuid" in (await caller.call("/task/status", {}))["error"]


async def test_a_trailing_slash_names_the_same_command(caller: AgentCaller) -> None:
    status, answer = await raw_post(caller.base_url + "/host/ping/", {}, caller.auth)
    assert status == 200 and answer["success"] is True


def test_token_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "d" / TOKEN_FILE
    token = load_or_create_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32
    assert load_or_create_token(path) == token
    path.chmod(0o644)
    assert load_or_create_token(path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("")  # a write cut short: a new token
    assert load_or_create_token(path) not in ("", token)


def test_bearer_matching() -> None:
    assert bearer_matches("Bearer abc", "abc")
    assert bearer_matches("bearer  abc ", "abc")
    assert not bearer_matches("Bearer abd", "abc")
    assert not bearer_matches("abc", "abc")
    assert not bearer_matches("", "abc")


# -- sync commands and the envelope ----------------------------------------------
async def test_connect_ping_capacity(caller: AgentCaller, core: CoreStub) -> None:
    ping = await caller.ok("/host/ping")
    assert ping["hostUuid"] == ""  # nobody connected yet
    facts = await caller.ok("/host/connect", {"hostUuid": "h-1", "reportUrl": core.report_url})
    assert facts["hostUuid"] == "h-1"
    assert facts["hypervisorType"] == "Simulator"
    assert facts["acceleration"] == "tcg"
    assert facts["cpuNum"] == 8 and facts["totalMemory"] == 32 * 1024**3
    assert isinstance(facts["cpuFlags"], list)
    assert (await caller.ok("/host/ping"))["hostUuid"] == "h-1"
    capacity = await caller.ok("/host/capacity")
    assert capacity == {
        "success": True,
        "error": "",
        "cpuNum": 8,
        "totalMemory": 32 * 1024**3,
        "usedMemory": 0,
        "freeMemory": 32 * 1024**3,
    }


async def test_ping_answers_empty_host_uuid_after_a_restart(data_dir: Path, core: CoreStub) -> None:
    for expected in ("h-1", ""):
        agent = Agent(SimulatorBackend(), data_dir)
        await agent.start("127.0.0.1", 0)
        caller = AgentCaller(f"http://127.0.0.1:{agent.port}", agent.token, core)
        try:
            if expected:
                await caller.ok("/host/connect", {"hostUuid": "h-1", "reportUrl": ""})
            assert (await caller.ok("/host/ping"))["hostUuid"] == expected
        finally:
            await caller.close()
            await agent.stop()


async def test_a_failing_command_is_answered_200_with_its_error(caller: AgentCaller) -> None:
    answer = await caller.call("/vm/pause", {"vmUuid": "nope"})
    assert answer["success"] is False
    assert "nope" in answer["error"]
    answer = await caller.call("/host/connect", {})
    assert answer == {"success": False, "error": "field 'hostUuid' is required"}
    answer = await caller.call("/vm/stop", {"vmUuid": "a", "type": "gentle"})
    assert "grace, cold, force" in answer["error"]


async def no_callback(_url: str, _task_uuid: str, _answer: dict[str, Any]) -> bool:
    return True


async def server_with(registry: CommandRegistry) -> tuple[AgentServer, AgentCaller]:
    server = AgentServer(registry, "tok", no_callback)
    await server.start("127.0.0.1", 0)
    return server, AgentCaller(f"http://127.0.0.1:{server.port}", "tok")


async def test_unexpected_exceptions_become_clear_errors() -> None:
    async def boom(_body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        raise KeyError("disk")

    async def refused(_body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        raise AgentError("no, because")

    registry = CommandRegistry()
    registry.add("/boom", boom)
    registry.add("/refused", refused)
    server, caller = await server_with(registry)
    try:
        assert await caller.call("/boom") == {
            "success": False,
            "error": "/boom failed: KeyError: 'disk'",
        }
        assert await caller.call("/refused") == {"success": False, "error": "no, because"}
    finally:
        await caller.close()
        await server.stop()
    with pytest.raises(ValueError, match="twice"):
        registry.add("/boom", boom)


# -- the async protocol ------------------------------------------------------------
async def test_async_command_answers_at_once_then_calls_back(
    connected: AgentCaller, core: CoreStub, tmp_path: Path
) -> None:
    task = await connected.start_async("/vm/destroy", {"vmUuid": "gone"})
    answer = await core.callback(task)
    assert answer == {"success": True, "error": "", "vmUuid": "gone"}
    headers = core.callback_headers[task]
    assert headers["taskuuid"] == task
    assert headers["Authorization"] == f"Bearer {connected.token}"


async def test_async_failure_is_delivered_to_the_callback(
    connected: AgentCaller, core: CoreStub
) -> None:
    answer = await connected.call_async("/vm/reboot", {"vmUuid": "missing"})
    assert answer["success"] is False
    assert "missing" in answer["error"]


async def test_async_command_without_headers_runs_synchronously(caller: AgentCaller) -> None:
    assert await caller.ok("/vm/destroy", {"vmUuid": "x"}) == {
        "success": True,
        "error": "",
        "vmUuid": "x",
    }


async def test_header_misuse_is_400(caller: AgentCaller, core: CoreStub) -> None:
    url = caller.base_url
    headers = {**caller.auth, "taskuuid": "t1", "callbackurl": core.callback_url}
    status, answer = await raw_post(url + "/host/ping", {}, headers)
    assert status == 400 and "synchronous" in answer["error"]
    status, answer = await raw_post(
        url + "/vm/destroy", {"vmUuid": "x"}, {**caller.auth, "taskuuid": "t"}
    )
    assert status == 400 and "callbackurl" in answer["error"]


async def test_callback_is_retried_until_the_caller_answers_2xx(
    connected: AgentCaller, core: CoreStub
) -> None:
    core.callback_script = [500, 503, 502]
    task = await connected.start_async("/vm/destroy", {"vmUuid": "v"})
    assert (await core.callback(task))["success"] is True
    assert [status for t, status in core.callback_attempts if t == task] == [500, 503, 502, 200]


async def test_callback_stops_at_404(
    connected: AgentCaller, core: CoreStub, sim_agent: Agent
) -> None:
    core.callback_script = [404]
    task = await connected.start_async("/vm/destroy", {"vmUuid": "v"})
    await wait_until(lambda: not sim_agent.server.running_tasks, 5, "the task to end")  # type: ignore[union-attr]
    await asyncio.sleep(0.3)  # longer than the retry delays: no further attempt comes
    assert core.callback_attempts == [(task, 404)]
    assert task not in core.callbacks


async def test_callback_gives_up_at_the_deadline() -> None:
    async with aiohttp.ClientSession() as session:
        sender = CallbackSender(
            session, "tok", RetryPolicy(deadline=0.5, first_delay=0.05, max_delay=0.1)
        )
        # Nothing listens on port 9 of 127.0.0.1: every attempt fails to connect.
        delivered = await sender.send("http://127.0.0.1:9/cb", "t", {"success": True})
    assert delivered is False


async def test_a_repeated_task_uuid_runs_once_and_shutdown_cancels_tasks() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()
    runs = 0

    async def slow(_body: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        nonlocal runs
        runs += 1
        assert ctx.task_uuid == "t-1"
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    registry = CommandRegistry()
    registry.add("/slow", slow, is_async=True)
    server, caller = await server_with(registry)
    core = await CoreStub().start()
    caller.core = core
    try:
        await caller.start_async("/slow", {}, task_uuid="t-1")
        await asyncio.wait_for(started.wait(), 5)
        await caller.start_async("/slow", {}, task_uuid="t-1")
        assert runs == 1
        assert server.running_tasks == ["t-1"]
    finally:
        await caller.close()
        await server.stop()
        await core.stop()
    assert cancelled.is_set()
    assert server.running_tasks == []

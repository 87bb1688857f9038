"""Agent plugins (agentkit.plugins): discovery, registration, applicability and hooks, on a
server of their own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agentkit.plugins import AgentPlugin, discover, serve
from agentkit.server import CommandContext, CommandRegistry, StreamHandler

TOKEN = "t" * 32


class Context:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.enabled = True


async def _no_callbacks(_url: str, _task: str, _answer: dict[str, Any]) -> bool:
    return False


class Echo(AgentPlugin[Context]):
    def commands(self, registry: CommandRegistry) -> None:
        registry.add("/echo", self.echo)

    async def echo(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        return {"echo": body}

    async def start(self) -> None:
        self.ctx.events.append("echo started")

    async def shutdown(self) -> None:
        self.ctx.events.append("echo shut down")


class Optional(AgentPlugin[Context]):
    order = -1

    def applies(self) -> bool:
        return self.ctx.enabled

    def commands(self, registry: CommandRegistry) -> None:
        registry.add("/optional", self.optional)

    def streams(self) -> Mapping[str, StreamHandler]:
        return {"/optional/stream": self.stream}

    async def optional(self, _body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        return {}

    async def stream(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text="streamed")

    async def start(self) -> None:
        self.ctx.events.append("optional started")


class EchoAgain(Echo):
    pass


async def _post(port: int, path: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}{path}", json={"a": 1}, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def test_plugins_are_started_by_order_serve_their_paths_and_shut_down() -> None:
    ctx = Context()
    plugins, server = await serve([Echo, Optional], ctx, TOKEN, _no_callbacks)
    assert [type(p) for p in plugins] == [Optional, Echo]  # order -1 first
    port = await server.start("127.0.0.1", 0)
    try:
        assert await _post(port, "/echo") == (200, {"success": True, "error": "", "echo": {"a": 1}})
        assert (await _post(port, "/optional"))[0] == 200
        assert server.registry.paths() == ["/echo", "/optional"]
        assert set(server.streams) == {"/optional/stream"}
    finally:
        await server.stop()
    assert ctx.events == ["optional started", "echo started", "echo shut down"]


async def test_a_plugin_that_does_not_apply_serves_nothing() -> None:
    ctx = Context()
    ctx.enabled = False
    plugins, server = await serve([Echo, Optional], ctx, TOKEN, _no_callbacks)
    assert [type(p) for p in plugins] == [Echo]
    assert server.registry.paths() == ["/echo"]
    assert server.streams == {}
    assert "optional started" not in ctx.events


async def test_a_path_two_plugins_register_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="/echo is registered twice"):
        await serve([Echo, EchoAgain], Context(), TOKEN, _no_callbacks)


def test_both_agents_plugins_are_installed_entry_points() -> None:
    host = {cls.__name__ for cls in discover("zstack_lite.agent_plugins")}
    router = {cls.__name__ for cls in discover("zstack_lite.vr_agent_plugins")}
    assert {"HostCommands", "VmCommands", "StorageCommands", "SimulatorCommands"} <= host
    assert {"RouterCommands", "DhcpCommands", "DnsCommands", "SnatCommands"} <= router
    assert discover("zstack_lite.no_such_group") == []

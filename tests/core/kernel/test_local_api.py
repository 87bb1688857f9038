"""The node's local socket API, and how a stopping node treats clients already connected."""

from __future__ import annotations

import asyncio
import stat
import time
from typing import Any, ClassVar

import aiohttp
import pytest

from core.client import NodeEvent, SocketClient
from core.kernel.api import ApiMessage, param
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.extensions import Plugin
from core.kernel.http import JsonHttpClient, UnreachableError
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.kernel.service import Service, handles
from tests.conftest import make_node


class Hold(ApiMessage):
    """Wait until the test lets go."""

    label: str = param(default="")


class HoldPlugin(Plugin, Service):
    implements = (Service,)
    service_id = "hold"
    entered: ClassVar[asyncio.Event]
    release: ClassVar[asyncio.Event]
    finished: ClassVar[list[str]]

    @handles(Hold)
    async def hold(self, msg: Hold) -> dict[str, Any]:
        self.entered.set()
        await self.release.wait()
        # the database is still open: the node waits for calls under way before closing it
        assert self.node.db is not None
        await self.node.db.run(lambda s: None)
        self.finished.append(msg.label)
        return {"label": msg.label}


@pytest.fixture
def hold() -> type[HoldPlugin]:
    HoldPlugin.entered = asyncio.Event()
    HoldPlugin.release = asyncio.Event()
    HoldPlugin.finished = []
    return HoldPlugin


async def test_socket_lists_and_calls_apis(node: ManagementNode) -> None:
    mode = node.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    client = SocketClient(str(node.socket_path))
    try:
        apis = {a["name"]: a for a in await client.apis()}
        assert set(apis) == set(node.bus.messages())  # type: ignore[union-attr]
        update = apis["UpdateGlobalConfig"]
        assert update["readOnly"] is False
        assert (
            update["description"]
            == "Change a global config; the value must pass the config's rules."
        )
        assert update["params"]["value"] == "string, required, max length 2048"
        assert apis["QueryZone"]["readOnly"] is True

        reply = await client.call(
            "UpdateGlobalConfig", {"category": "kvm", "name": "vm.migrationQuantity", "value": 3}
        )
        assert reply.success and reply.inventory is not None
        assert reply.inventory["value"] == "3"
        bad = await client.call(
            "UpdateGlobalConfig", {"category": "kvm", "name": "vm.migrationQuantity", "value": "0"}
        )
        assert bad.error is not None and bad.error.code == SysErrors.INVALID_ARGUMENT
        assert "number in range" in bad.error.description
        unknown = await client.call("Nope", {})
        assert unknown.error is not None and unknown.error.description == "no API named Nope"
    finally:
        await client.close()


async def test_body_must_be_a_json_object(node: ManagementNode) -> None:
    http = JsonHttpClient("http://node", unix_socket=str(node.socket_path))
    try:
        answer = await http.post("/v1/api/QueryZone", ["not", "an", "object"])
        assert answer["success"] is False
        assert answer["error"]["code"] == SysErrors.INVALID_ARGUMENT
        assert "JSON object" in answer["error"]["description"]
    finally:
        await http.close()


async def test_no_socket_is_unreachable(tmp_path: Any) -> None:
    client = SocketClient(str(tmp_path / "nobody.sock"))
    try:
        with pytest.raises(UnreachableError) as info:
            await client.apis()
        assert info.value.error.code == SysErrors.OPERATION_ERROR
        assert "cannot reach GET http://node/v1/apis" in info.value.error.description
    finally:
        await client.close()


async def test_node_without_socket(props: Properties) -> None:
    async with ManagementNode(props, serve_socket=False) as node:
        assert not node.socket_path.exists()
        assert (await node.call("QueryZone")).success


async def test_stopping_node_answers_a_client_that_connected_before(props: Properties) -> None:
    node = ManagementNode(props)
    await node.start()
    reader, writer = await asyncio.open_unix_connection(str(node.socket_path))
    stopping = asyncio.create_task(node.stop())
    for _ in range(5):
        await asyncio.sleep(0)
    # new clients no longer find the socket while the node finishes with the old ones
    assert not node.socket_path.exists()
    assert not stopping.done()
    writer.write(b"GET /v1/apis HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"UpdateGlobalConfig" in answer
    await asyncio.wait_for(stopping, 10)
    assert not node.running
    assert (props.data_dir / "node.lock").read_text() == ""


async def test_call_under_way_when_the_node_stops_is_answered(
    props: Properties, hold: type[HoldPlugin]
) -> None:
    node = make_node(props, {"hold": HoldPlugin})
    await node.start()
    client = SocketClient(str(node.socket_path))
    try:
        call = asyncio.create_task(client.call("Hold", {"label": "x"}))
        await asyncio.wait_for(hold.entered.wait(), 10)
        stopping = asyncio.create_task(node.stop())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not stopping.done()  # waits for the call
        assert not node.socket_path.exists()
        hold.release.set()
        reply = await asyncio.wait_for(call, 10)
        assert reply.success and reply.inventory == {"label": "x"}
        await asyncio.wait_for(stopping, 10)
        assert hold.finished == ["x"]
    finally:
        await client.close()
        hold.release.set()
        await node.stop()


# -- the event stream ---------------------------------------------------------------------


async def test_socket_streams_events_matching_its_patterns(node: ManagementNode) -> None:
    client = SocketClient(str(node.socket_path))
    try:
        stream = await client.subscribe(["/test/{kind}/change", "/other"])
        # subscribed once subscribe() returns: nothing published from now on is missed
        node.events.publish("/test/vm/change", {"n": 1, "at": ErrorCode("X.1", "why")})
        node.events.publish("/test/vm/change/deeper", {"n": 0})
        node.events.publish("/nobody", {"n": 0})
        node.events.publish("/other", None)
        assert await asyncio.wait_for(anext(stream), 10) == NodeEvent(
            "/test/vm/change", {"n": 1, "at": {"code": "X.1", "description": "why"}}
        )
        assert await asyncio.wait_for(anext(stream), 10) == NodeEvent("/other", None)
        await stream.close()
        await stream.close()
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
    finally:
        await client.close()


async def test_a_bad_pattern_is_refused(node: ManagementNode) -> None:
    client = SocketClient(str(node.socket_path))
    try:
        with pytest.raises(OperationError) as info:
            await client.subscribe(["no-slash"])
        assert info.value.error.code == SysErrors.INVALID_ARGUMENT
        with pytest.raises(OperationError) as info:
            await client.subscribe([])
        assert info.value.error.code == SysErrors.INVALID_ARGUMENT
    finally:
        await client.close()


async def test_the_stream_ends_when_the_node_stops_without_holding_it_up(
    props: Properties,
) -> None:
    node = ManagementNode(props)
    await node.start()
    client = SocketClient(str(node.socket_path))
    try:
        stream = await client.subscribe(["/test/n"])
        idle = await client.subscribe(["/test/n"])  # never read until the end
        for i in range(3):
            node.events.publish("/test/n", i)
        t0 = time.monotonic()
        await asyncio.wait_for(node.stop(), 10)
        assert time.monotonic() - t0 < 2  # not the 5 s grace for open connections
        assert [e.data async for e in stream] == [0, 1, 2]  # what was sent, then the end
        assert [e.data async for e in idle] == [0, 1, 2]
    finally:
        await client.close()
        await node.stop()


async def test_the_server_forgets_a_stream_whose_client_went_away(node: ManagementNode) -> None:
    client = SocketClient(str(node.socket_path))
    server = node._socket
    assert server is not None
    try:
        stream = await client.subscribe(["/test/n"])
        assert len(server._streams) == 1
        await stream.close()
        for _ in range(100):
            if not server._streams:
                break
            await asyncio.sleep(0.05)
        assert not server._streams
        assert not node.events.has_subscribers("/test/n")
    finally:
        await client.close()


async def test_deep_or_huge_json_is_refused_with_400_naming_the_field(
    node: ManagementNode,
) -> None:
    conn = aiohttp.UnixConnector(path=str(node.socket_path))
    async with aiohttp.ClientSession(connector=conn) as session:
        for data, error in (
            ("[" * 100_000 + "]" * 100_000, "the body nests deeper than 32 levels"),
            (
                '{"conditions": ' + "[" * 100_000 + "]" * 100_000 + "}",
                "field 'conditions' nests deeper than 32 levels",
            ),
            ('{"limit": ' + "9" * 5000 + "}", "field 'limit' is a number of 5000 characters"),
            ("{nope", "the body is not JSON: "),
        ):
            async with session.post("http://node/v1/api/QueryZone", data=data) as resp:
                assert resp.status == 400
                answer = await resp.json()
            assert answer["success"] is False
            assert answer["error"]["code"] == SysErrors.INVALID_ARGUMENT
            assert answer["error"]["description"].startswith(error), answer
        # parameters that are JSON within the limits, refused by the API bus
        for params, error in (
            ({"limit": "9" * 5000}, "parameter limit of QueryZone must be an integer in the range"),
            ({"limit": 10**30}, "parameter limit of QueryZone must be an integer in the range"),
            ({"conditions": [["a"]]}, "parameter conditions of QueryZone must be a list"),
        ):
            async with session.post("http://node/v1/api/QueryZone", json=params) as resp:
                assert resp.status == 200
                answer = await resp.json()
            assert answer["error"]["code"] == SysErrors.INVALID_ARGUMENT
            assert answer["error"]["description"].startswith(error), answer
        # the event stream's query is bounded by the server: refused, never a 500
        many = "&".join(["path=/a"] * 2000)
        async with session.get(f"http://node/v1/events?{many}") as resp:
            assert resp.status == 400
    assert (await node.call("QueryZone")).success

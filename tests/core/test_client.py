"""connect(): attach to the node service (starting it); in-process clients; zcli helpers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from core import zcli
from core.client import (
    OVERFLOW_PATH,
    EventStream,
    InProcessClient,
    NodeEvent,
    SocketClient,
    connect,
)
from core.daemon.control import ControlError, stop_node
from core.kernel.data_dir import running_pid
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.event_json import DEFAULT_MAX_QUEUED
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.core.vm.conftest import make_lab


async def test_connect_starts_the_service_once_and_attaches(props: Properties) -> None:
    told: list[str] = []
    try:
        first = await connect(props, announce=told.append)
        assert isinstance(first, SocketClient) and not first.in_process
        [text] = told
        node = running_pid(props.data_dir)
        assert node and node != os.getpid() and f"(pid {node})" in text
        second = await connect(props, announce=told.append)
        try:
            done = await second.call(
                "UpdateGlobalConfig",
                {"category": "kvm", "name": "vm.migrationQuantity", "value": "6"},
            )
            assert done.success, done.error
            seen = await first.call("QueryGlobalConfig", {"conditions": ["value=6"]})
            assert [r["name"] for r in seen.inventories or []] == ["vm.migrationQuantity"]
        finally:
            await second.close()
            await first.close()
        assert len(told) == 1  # said once: the second connect found it running
        assert running_pid(props.data_dir) == node  # closing a client stops nothing
    finally:
        stop_node(props)
    assert running_pid(props.data_dir) is None


async def test_connect_without_start_needs_a_running_node(props: Properties) -> None:
    with pytest.raises(ControlError, match=f"no management node runs on {props.data_dir}"):
        await connect(props, start=False)
    assert running_pid(props.data_dir) is None


def test_build_params_for_queries_and_others() -> None:
    query = {"name": "QueryZone", "params": {"limit": "", "conditions": "", "sortBy": ""}}
    assert zcli.build_params(
        query, ["name=z1", "limit=5", "state?=a,b", "description is null"]
    ) == {
        "limit": "5",
        "conditions": ["name=z1", "state?=a,b", "description is null"],
    }
    update = {"name": "UpdateZone", "params": {"uuid": "", "name": ""}}
    assert zcli.build_params(update, ["uuid=u", "name=a=b"]) == {"uuid": "u", "name": "a=b"}
    with pytest.raises(zcli.UsageError, match="not of the form key=value"):
        zcli.build_params(update, ["uuid"])
    with pytest.raises(zcli.UsageError, match="UpdateZone has no parameter nam "):
        zcli.build_params(update, ["nam=x"])
    with pytest.raises(zcli.UsageError, match="is not of the form"):
        zcli.build_params(query, ["%%"])
    create = {"name": "CreateZone", "params": {"name": ""}}
    assert zcli.build_params(create, ["name=z", "systemTags=a::b,c", "userTags=x"]) == {
        "name": "z",
        "systemTags": ["a::b", "c"],
        "userTags": ["x"],
    }
    with pytest.raises(zcli.UsageError, match="UpdateZone has no parameter systemTags"):
        zcli.build_params(update, ["systemTags=a"])  # only APIs that create take tags


def test_format_error_shows_the_cause_chain() -> None:
    err = ErrorCode(
        SysErrors.OPERATION_ERROR,
        "cannot start vm",
        location="start-vm: 2/3",
        cause=ErrorCode("HOST.1", "agent down", "refused"),
    )
    assert zcli.format_error(err) == (
        "Error SYS.1006: cannot start vm [at start-vm: 2/3]\n"
        "  caused by HOST.1: agent down (refused)"
    )


# -- events ---------------------------------------------------------------------------------


async def _until_created(stream: EventStream) -> list[NodeEvent]:
    """Events up to the final record of the CreateVmInstance operation."""
    seen: list[NodeEvent] = []
    async for event in stream:
        seen.append(event)
        record = event.data
        if (
            event.path == "/operation/update"
            and record["apiName"] == "CreateVmInstance"
            and record["status"] != "Running"
        ):
            return seen
    raise AssertionError(f"the stream ended early: {seen}")


async def test_in_process_and_socket_subscribers_see_the_same_events(
    props: Properties, tmp_path: Path
) -> None:
    node = ManagementNode(props)
    await node.start()
    client = InProcessClient(node)
    attached = SocketClient(str(props.data_dir / "node.sock"))
    try:
        lab = await make_lab(client.node, tmp_path / "lab")
        patterns = ["/vm/state/change", "/operation/update"]
        local = await client.subscribe(patterns)
        remote = await attached.subscribe(patterns)
        reply = await attached.call(
            "CreateVmInstance",
            {
                "name": "vm1",
                "instanceOfferingUuid": lab.offering["uuid"],
                "imageUuid": lab.image_uuid,
            },
        )
        assert reply.success, reply.error
        vm = reply.inventory
        assert vm is not None
        mine = await asyncio.wait_for(_until_created(local), 10)
        theirs = await asyncio.wait_for(_until_created(remote), 10)
        assert mine == theirs

        states = [e.data for e in mine if e.path == "/vm/state/change"]
        assert states and states[-1]["vmUuid"] == vm["uuid"]
        assert states[-1]["newState"] == "Running"
        records = [e.data for e in mine if e.path == "/operation/update"]
        assert {r["uuid"] for r in records} == {records[0]["uuid"]}
        first, last = records[0], records[-1]
        assert first["status"] == "Running" and first["chains"] == []
        assert last["status"] == "Succeeded" and last["resourceUuid"] == vm["uuid"]
        assert last["params"]["name"] == "vm1"
        steps = [s for c in last["chains"] for s in c["steps"]]
        assert steps and {s["state"] for s in steps} <= {"SUCCESS", "SKIPPED"}
        # every chain was listed with all its steps pending when it started
        started = next(r for r in records if r["chains"])
        assert {s["state"] for s in started["chains"][0]["steps"]} == {"PENDING"}
        assert [s["name"] for s in started["chains"][0]["steps"]] == [
            s["name"] for s in last["chains"][0]["steps"]
        ]
        await remote.close()
    finally:
        await attached.close()
        await client.close()
    assert [e async for e in local] == []  # the node stopped: the stream has ended


async def test_an_in_process_reader_that_falls_behind_is_told(node: ManagementNode) -> None:
    client = InProcessClient(node)
    try:
        stream = await client.subscribe(["/test/{n}"])
        assert isinstance(client, InProcessClient)
        for i in range(DEFAULT_MAX_QUEUED + 5):
            client.node.events.publish(f"/test/{i % 2}", i)
        first = await anext(stream)
        assert first == NodeEvent(OVERFLOW_PATH, {"dropped": 5, "totalDropped": 5})
        assert (await anext(stream)).data == 5
        await stream.close()
        assert [e async for e in stream] == []
    finally:
        await client.close()


async def test_an_in_process_subscription_refuses_a_bad_pattern(node: ManagementNode) -> None:
    client = InProcessClient(node)
    try:
        with pytest.raises(OperationError) as info:
            await client.subscribe(["vm/state/change"])
        assert info.value.error.code == SysErrors.INVALID_ARGUMENT
    finally:
        await client.close()

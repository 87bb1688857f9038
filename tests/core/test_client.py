"""connect(): become the data dir's node, or attach to the one running there; zcli helpers."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

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
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.event_json import DEFAULT_MAX_QUEUED
from core.kernel.http import UnreachableError
from core.kernel.data_dir import DataDirLock
from core.kernel.properties import Properties
from tests.core.vm.conftest import make_lab


async def test_first_client_becomes_the_node_and_the_next_attaches(props: Properties) -> None:
    first = await connect(props)
    try:
        assert first.in_process
        assert (props.data_dir / "node.sock").exists()
        second = await connect(props, wait=5)
        try:
            assert not second.in_process
            done = await second.call(
                "UpdateGlobalConfig",
                {"category": "kvm", "name": "vm.migrationQuantity", "value": "6"},
            )
            assert done.success, done.error
            seen = await first.call("QueryGlobalConfig", {"conditions": ["value=6"]})
            assert [r["name"] for r in seen.inventories or []] == ["vm.migrationQuantity"]
            assert [a["name"] for a in await second.apis()] == [
                a["name"] for a in await first.apis()
            ]
        finally:
            await second.close()
        assert (props.data_dir / "node.sock").exists()  # closing an attached client stops nothing
    finally:
        await first.close()
    assert not (props.data_dir / "node.sock").exists()
    again = await connect(props)
    try:
        assert again.in_process
    finally:
        await again.close()


async def test_locked_data_dir_without_a_socket_is_unreachable(props: Properties) -> None:
    props.data_dir.mkdir(parents=True)
    lock = DataDirLock(props.data_dir)
    lock.acquire()  # a node that is starting (or hung) holds the lock, no socket yet
    try:
        with pytest.raises(OperationError) as info:
            await connect(props, wait=0.2)
        assert info.value.error.description == (
            f"cannot reach the management node on {props.data_dir}"
        )
    finally:
        lock.release()


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


async def test_zcli_retries_when_the_node_it_attached_to_went_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    async def flaky(ns: argparse.Namespace) -> int:
        calls.append(1)
        if len(calls) < 3:
            raise UnreachableError(ErrorCode(SysErrors.OPERATION_ERROR, "gone"))
        return 0

    monkeypatch.setattr(zcli, "run", flaky)
    assert await zcli.run_until_reached(argparse.Namespace()) == 0
    assert len(calls) == 3

    async def never(ns: argparse.Namespace) -> Any:
        raise UnreachableError(ErrorCode(SysErrors.OPERATION_ERROR, "gone for good"))

    monkeypatch.setattr(zcli, "run", never)
    with pytest.raises(UnreachableError):
        await zcli.run_until_reached(argparse.Namespace(), wait=0.05)

    async def other(ns: argparse.Namespace) -> Any:
        calls.append(1)
        raise OperationError(ErrorCode(SysErrors.OPERATION_ERROR, "reached, then failed"))

    calls.clear()
    monkeypatch.setattr(zcli, "run", other)
    with pytest.raises(OperationError, match="reached, then failed"):
        await zcli.run_until_reached(argparse.Namespace())
    assert len(calls) == 1  # a request that may have been made is never repeated


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
    client = await connect(props)
    assert isinstance(client, InProcessClient)
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


async def test_an_in_process_reader_that_falls_behind_is_told(props: Properties) -> None:
    client = await connect(props)
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


async def test_an_in_process_subscription_refuses_a_bad_pattern(props: Properties) -> None:
    client = await connect(props)
    try:
        with pytest.raises(OperationError) as info:
            await client.subscribe(["vm/state/change"])
        assert info.value.error.code == SysErrors.INVALID_ARGUMENT
    finally:
        await client.close()

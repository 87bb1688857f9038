"""The journal's records: one per operation, its chains flat with their parents, every step
listed from the chain's start, statuses that say how it ended; background work too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.kernel.api import ApiMessage, param
from core.kernel.bus import ApiBus
from core.kernel.db import Database
from core.kernel.events import EventBus
from core.kernel.flow import Flow, FlowChain, NoRollbackFlow
from core.kernel.service import Service, handles
from core.operation_log.journal import OPERATION_UPDATE_PATH, OperationJournal, Record


class Ok(NoRollbackFlow):
    async def run(self, data: dict[str, Any]) -> None:
        return None


class Fail(NoRollbackFlow):
    async def run(self, data: dict[str, Any]) -> None:
        raise RuntimeError("step broke")


class Undo(Flow):
    """Succeeds; its rollback fails when ``broken``."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken

    async def run(self, data: dict[str, Any]) -> None:
        return None

    async def rollback(self, data: dict[str, Any]) -> None:
        if self.broken:
            raise RuntimeError("cannot undo")


class Run(ApiMessage):
    """Runs an outer chain [Ok, inner chain [Undo], Undo(broken?), Fail?]."""

    fail: bool = param(default=False)
    broken: bool = param(default=False)


class Nested(ApiMessage):
    """Calls Run from inside a chain's flow."""


class Spawn(ApiMessage):
    """Starts a chain in a task that outlives the call."""


class Svc(Service):
    service_id = "svc"

    def __init__(self, events: EventBus) -> None:
        self.events = events
        self.bus: ApiBus | None = None
        self.release = asyncio.Event()
        self.spawned: asyncio.Task[Any] | None = None

    @handles(Run)
    async def run(self, msg: Run) -> dict[str, Any]:
        inner = FlowChain("inner", [Undo()])
        flows: list[Flow] = [Ok(), inner, Undo(broken=msg.broken)]
        if msg.fail:
            flows.append(Fail())
        outcome = await FlowChain("outer", flows, events=self.events).start()
        outcome.raise_for_error("run failed")
        return {"uuid": "e" * 32}

    @handles(Nested)
    async def nested(self, msg: Nested) -> None:
        bus = self.bus
        assert bus is not None

        class CallRun(NoRollbackFlow):
            async def run(self, data: dict[str, Any]) -> None:
                assert (await bus.call(Run())).success

        (await FlowChain("calls", [CallRun()], events=self.events).start()).raise_for_error()

    @handles(Spawn)
    async def spawn(self, msg: Spawn) -> None:
        async def later() -> None:
            await self.release.wait()
            await FlowChain("leftover", [Ok()], events=self.events).start()

        self.spawned = asyncio.create_task(later())


class World:
    def __init__(self, db: Database) -> None:
        self.events = EventBus()
        self.finished: list[Record] = []
        self.updates: list[Record] = []
        self.journal = OperationJournal(self.events, self.finished.append)
        self.events.subscribe(OPERATION_UPDATE_PATH, lambda e: self.updates.append(e.data))
        self.svc = Svc(self.events)
        self.bus = self.svc.bus = ApiBus(db, 30.0, self.events)
        self.bus.register_service(self.svc)

    def by_name(self, name: str) -> Record:
        [record] = [r for r in self.finished if r["name"] == name]
        return record


@pytest.fixture
async def world(db: Database) -> AsyncIterator[World]:
    w = World(db)
    yield w
    w.svc.release.set()
    if w.svc.spawned is not None:
        await w.svc.spawned
    await w.bus.drain()
    w.journal.close()


def steps(record: Record, chain: str) -> list[tuple[str | None, str]]:
    [found] = [c for c in record["chains"] if c["name"] == chain]
    return [(s["name"], s["state"]) for s in found["steps"]]


async def test_a_successful_call(world: World) -> None:
    reply = await world.bus.call(Run())
    assert reply.success
    [record] = world.finished
    assert record["uuid"] == world.updates[0]["uuid"]
    assert {k: record[k] for k in ("name", "apiName", "parentUuid", "status", "error")} == {
        "name": "Run",
        "apiName": "Run",
        "parentUuid": None,
        "status": "Succeeded",
        "error": None,
    }
    assert record["params"] == {"fail": False, "broken": False}
    assert record["resourceUuid"] == "e" * 32 and record["resourceUuids"] == []
    assert record["duration"] > 0
    outer, inner = record["chains"]
    assert (outer["name"], outer["parentId"], outer["status"]) == ("outer", None, "Succeeded")
    assert (inner["name"], inner["parentId"], inner["status"]) == (
        "inner",
        outer["id"],
        "Succeeded",
    )
    assert steps(record, "outer") == [("Ok", "SUCCESS"), ("inner", "SUCCESS"), ("Undo", "SUCCESS")]
    assert all(s["duration"] is not None and s["startedAt"] for s in outer["steps"])
    assert outer["duration"] >= inner["duration"] > 0

    # Every change was published: the call's start, each chain event, its end.
    assert world.updates[0]["status"] == "Running" and world.updates[0]["chains"] == []
    at_chain_start = world.updates[1]
    assert steps(at_chain_start, "outer") == [
        ("Ok", "PENDING"),
        ("inner", "PENDING"),
        ("Undo", "PENDING"),
    ]
    assert world.updates[-1] == record
    # each update is a snapshot: later changes never show in one already published
    assert world.updates[1]["chains"][0]["steps"][0]["state"] == "PENDING"
    assert len({id(u["chains"]) for u in world.updates}) == len(world.updates)


async def test_a_failed_call_that_rolled_back(world: World) -> None:
    reply = await world.bus.call(Run(fail=True))
    assert not reply.success and reply.error is not None
    record = world.by_name("Run")
    assert record["status"] == "RolledBack"
    assert record["error"] == reply.error.to_dict()
    assert record["error"]["cause"]["description"] == "unexpected RuntimeError: step broke"
    outer = record["chains"][0]
    assert outer["status"] == "RolledBack"
    assert outer["error"]["location"] == "outer: Fail (4/4)"
    assert steps(record, "outer") == [
        ("Ok", "REVERTED"),
        ("inner", "REVERTED"),
        ("Undo", "REVERTED"),
        ("Fail", "REVERTED"),
    ]
    failing = outer["steps"][3]
    assert failing["error"]["description"] == "unexpected RuntimeError: step broke"
    assert failing["revertDuration"] is not None
    # the nested chain succeeded, then its parent undid it
    assert record["chains"][1]["status"] == "RolledBack"
    assert steps(record, "inner") == [("Undo", "REVERTED")]
    assert any(u["chains"] and u["chains"][0]["status"] == "RollingBack" for u in world.updates)


async def test_a_failed_call_whose_rollback_failed(world: World) -> None:
    reply = await world.bus.call(Run(fail=True, broken=True))
    assert not reply.success
    record = world.by_name("Run")
    assert record["status"] == "RollbackFailed"
    assert record["chains"][0]["status"] == "RollbackFailed"
    assert dict(steps(record, "outer"))["Undo"] == "REVERT_FAILURE"
    [undo] = [s for s in record["chains"][0]["steps"] if s["name"] == "Undo"]
    assert "cannot undo" in undo["error"]["description"]


async def test_a_call_refused_before_its_handler(world: World) -> None:
    reply = await world.bus.call_by_name("Run", {"fail": "perhaps"})
    assert not reply.success
    [record] = world.finished
    assert record["status"] == "Failed" and record["chains"] == []
    assert record["params"] == {"fail": "perhaps"}
    assert record["error"]["code"] == "SYS.1007"


async def test_a_call_from_a_flow_is_its_own_operation(world: World) -> None:
    assert (await world.bus.call(Nested())).success
    outer, inner = world.by_name("Nested"), world.by_name("Run")
    assert inner["parentUuid"] == outer["uuid"]
    assert [c["name"] for c in outer["chains"]] == ["calls"]
    assert [c["name"] for c in inner["chains"]] == ["outer", "inner"]
    # its root chain's parent (a chain of the calling operation) is not in its record
    assert inner["chains"][0]["parentId"] is None
    assert world.finished.index(inner) < world.finished.index(outer)


async def test_background_work_is_an_operation_named_after_its_chain(world: World) -> None:
    assert await FlowChain("reconnect", [Ok(), Fail()], events=world.events).start()
    [record] = world.finished
    assert record["name"] == "reconnect" and record["apiName"] is None
    assert record["params"] is None and record["parentUuid"] is None
    assert record["status"] == "RolledBack"
    assert record["error"]["location"] == "reconnect: Fail (2/2)"
    assert record["duration"] == record["chains"][0]["duration"]
    assert len(record["uuid"]) == 32
    assert world.journal.running() == []


async def test_a_chain_that_outlives_its_call_is_background_work(world: World) -> None:
    assert (await world.bus.call(Spawn())).success
    [call] = world.finished
    assert call["chains"] == []
    world.svc.release.set()
    assert world.svc.spawned is not None
    await world.svc.spawned
    leftover = world.by_name("leftover")
    assert leftover["apiName"] is None and leftover["parentUuid"] == call["uuid"]
    assert leftover["status"] == "Succeeded"


async def test_running_operations(world: World) -> None:
    gate = asyncio.Event()

    class Wait(NoRollbackFlow):
        async def run(self, data: dict[str, Any]) -> None:
            await gate.wait()

    task = asyncio.create_task(FlowChain("waiting", [Ok(), Wait()], events=world.events).start())
    for _ in range(20):
        await asyncio.sleep(0)
    [running] = world.journal.running()
    assert running["status"] == "Running"
    assert steps(running, "waiting") == [("Ok", "SUCCESS"), ("Wait", "RUNNING")]
    assert world.journal.running(resource_uuid="x" * 32) == []
    gate.set()
    await task
    assert world.journal.running() == []

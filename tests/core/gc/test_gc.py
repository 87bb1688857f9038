"""GC jobs: submitted clean-ups that are retried with backoff, on events, at restart and on
demand, queryable, deletable, pruned once done, and refused at once when malformed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.gc.models import GarbageCollectorVO
from core.gc.plugin import GarbageCollectorPlugin
from core.gc.runner import DELETED_EVENT, UPDATE_EVENT
from core.gc.triggers import Trigger, host_connected
from core.kernel.errors import OperationError, SysErrors
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import fails, ok
from tests.core.gc.conftest import (
    RUNNER,
    Leftover,
    gc_node,
    job,
    set_config,
    stored,
    until_done,
    until_status,
)
from tests.core.host.test_hosts import sim_cluster


def gc(node: ManagementNode) -> GarbageCollectorPlugin:
    return node.plugin(GarbageCollectorPlugin)


async def submit(node: ManagementNode, leftover: Leftover, **kw: Any) -> str:
    return await gc(node).submit(
        name=kw.pop("name", "remove leftover"), runner=RUNNER, context=leftover.context, **kw
    )


def seconds_between(later: str, earlier: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


async def test_a_failing_trigger_keeps_the_error_and_a_later_one_finishes(
    node: ManagementNode, tmp_path: Path
) -> None:
    leftover = Leftover(tmp_path)
    await set_config(node, "retry.interval", 3600)  # only the API runs it here
    uuid = await submit(node, leftover, resource_uuid="a" * 32, error="agent unreachable")
    submitted = await job(node, uuid)
    assert (submitted["status"], submitted["attempts"]) == ("Idle", 0)
    assert submitted["lastError"]["description"] == "agent unreachable"
    assert submitted["runner"] == RUNNER and submitted["resourceUuid"] == "a" * 32

    reply = await node.call("TriggerGarbageCollector", {"uuid": uuid})
    assert not reply.success and reply.error is not None
    assert reply.error.code == SysErrors.OPERATION_ERROR
    assert "failed (attempt 1)" in reply.error.description
    assert "leftover.blocker is in the way" in reply.error.cause.description
    failed = await job(node, uuid)
    assert (failed["status"], failed["attempts"]) == ("Idle", 1)
    assert "leftover.blocker is in the way" in failed["lastError"]["description"]
    assert leftover.path.exists()
    [listed] = await ok(node, "QueryGarbageCollector", conditions=["status=Idle", "attempts=1"])
    assert listed["uuid"] == uuid

    leftover.unblock()
    done = await ok(node, "TriggerGarbageCollector", uuid=uuid)
    assert (done["status"], done["attempts"], done["nextRunTime"]) == ("Done", 2, None)
    assert not leftover.path.exists()
    description = await fails(node, "TriggerGarbageCollector", SysErrors.INVALID_STATE, uuid=uuid)
    assert "is Done" in description


async def test_backoff_doubles_per_failure_up_to_the_cap(
    node: ManagementNode, tmp_path: Path
) -> None:
    await set_config(node, "retry.interval", 100)
    await set_config(node, "retry.maxInterval", 350)
    uuid = await submit(node, Leftover(tmp_path))
    first = await job(node, uuid)
    assert round(seconds_between(first["nextRunTime"], first["createDate"])) == 100
    waits = []
    for _ in range(3):
        await node.call("TriggerGarbageCollector", {"uuid": uuid})
        found = await job(node, uuid)
        waits.append(round(seconds_between(found["nextRunTime"], found["lastOpDate"])))
    assert waits == [200, 350, 350]
    assert (await job(node, uuid))["attempts"] == 3


async def test_a_trigger_event_runs_the_job_at_once(node: ManagementNode, tmp_path: Path) -> None:
    await set_config(node, "retry.interval", 3600)
    host = await ok(node, "AddSimulatorHost", name="sim", clusterUuid=await sim_cluster(node))
    leftover = Leftover(tmp_path)
    leftover.unblock()
    other = Leftover(tmp_path, "other")
    other.unblock()
    uuid = await submit(
        node, leftover, name="remove leftover of sim", trigger_events=[host_connected(host["uuid"])]
    )
    untouched = await submit(node, other, trigger_events=[host_connected("b" * 32)])
    await ok(node, "ReconnectHost", uuid=host["uuid"])  # Connecting, then Connected
    done = await until_done(node, uuid)
    assert done["attempts"] == 1 and not leftover.path.exists()
    assert (await job(node, untouched))["status"] == "Idle" and other.path.exists()
    [operation] = await ok(node, "QueryOperationLog", conditions=["name=gc:remove leftover of sim"])
    assert operation["status"] == "Succeeded"
    assert operation["chains"][0]["steps"][0]["name"] == "RemoveLeftover"


async def test_a_job_survives_a_restart_and_an_interrupted_run(
    props: Properties, tmp_path: Path
) -> None:
    leftover = Leftover(tmp_path)
    async with gc_node(props) as first:
        await set_config(first, "retry.interval", 1)
        uuid = await submit(first, leftover)

        def crash_mid_run(session: Any) -> None:  # the node died while the job ran
            session.get(GarbageCollectorVO, uuid).status = "Processing"

        await first.db.run(crash_mid_run)
    leftover.unblock()
    async with gc_node(props) as second:
        done = await until_done(second, uuid)
        assert done["attempts"] >= 1
    assert not leftover.path.exists()


async def test_a_run_cut_by_the_node_stopping_runs_again_at_the_next_start(
    props: Properties, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    async with gc_node(props) as first:
        await set_config(first, "retry.interval", 1)
        uuid = await gc(first).submit(
            name="slow", runner="tests.core.gc.jobs.WaitForFile", context={"path": str(gate)}
        )
        await until_status(first, uuid, "Processing")
    assert (await stored(props, uuid)) == ("Idle", 0)
    gate.write_text("open")
    async with gc_node(props) as second:
        assert (await until_done(second, uuid))["attempts"] == 1


async def test_a_job_submitted_in_a_transaction_is_scheduled_when_it_commits(
    node: ManagementNode, tmp_path: Path
) -> None:
    await set_config(node, "scan.interval", 86400)  # no scan would find it
    await set_config(node, "retry.interval", 1)
    kept, dropped = Leftover(tmp_path, "kept"), Leftover(tmp_path, "dropped")
    kept.unblock()
    dropped.unblock()
    events: list[Any] = []
    node.events.subscribe(UPDATE_EVENT, lambda e: events.append(e.data))

    def in_transaction(session: Any) -> str:
        return gc(node).submit_in(session, name="kept", runner=RUNNER, context=kept.context)

    uuid = await node.db.run(in_transaction)

    def rolled_back(session: Any) -> None:
        gc(node).submit_in(session, name="dropped", runner=RUNNER, context=dropped.context)
        raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        await node.db.run(rolled_back)
    await until_done(node, uuid)
    assert not kept.path.exists() and dropped.path.exists()
    assert [e["name"] for e in await ok(node, "QueryGarbageCollector")] == ["kept"]
    assert [(e["oldStatus"], e["newStatus"]) for e in events] == [
        (None, "Idle"),
        ("Idle", "Processing"),
        ("Processing", "Done"),
    ]


@pytest.mark.parametrize(
    ("runner", "why"),
    [
        ("tests.core.gc.jobs.Nope", "cannot be imported"),
        ("tests.core.gc.nowhere.Job", "cannot be imported"),
        ("RemoveLeftover", "is not a dotted class path"),
        ("tests.core.gc.jobs.Path", "is not a subclass of core.gc.job.GarbageCollectorJob"),
        ("tests.core.gc.jobs.Abstract", "is abstract"),
        ("tests.core.gc.jobs.NeedsArgs", "cannot be made with no arguments"),
    ],
)
async def test_a_bad_runner_is_refused_and_nothing_is_stored(
    node: ManagementNode, tmp_path: Path, runner: str, why: str
) -> None:
    with pytest.raises(OperationError) as refused:
        await gc(node).submit(name="bad", runner=runner, context={})
    assert refused.value.error.code == SysErrors.INVALID_ARGUMENT
    assert runner in refused.value.error.description and why in refused.value.error.description
    assert await ok(node, "QueryGarbageCollector") == []


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"context": {"when": datetime(2026, 1, 1)}}, "context is not JSON"),
        ({"context": ["a"]}, "context must be a dict"),
        ({"trigger_events": ["host/status"]}, "is not an event path"),
        ({"trigger_events": "/host/status/change"}, "must be a list"),
        ({"name": ""}, "name"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    node: ManagementNode, kw: dict[str, Any], why: str
) -> None:
    args = {"name": "bad", "runner": RUNNER, "context": {}, **kw}
    with pytest.raises(OperationError) as refused:
        await gc(node).submit(**args)
    assert why in refused.value.error.description
    assert await ok(node, "QueryGarbageCollector") == []


async def test_delete_forgets_the_job(node: ManagementNode, tmp_path: Path) -> None:
    await set_config(node, "retry.interval", 1)
    leftover = Leftover(tmp_path)
    uuid = await submit(node, leftover, trigger_events=["/test/event"])
    deleted: list[Any] = []
    node.events.subscribe(DELETED_EVENT, lambda e: deleted.append(e.data))
    await ok(node, "DeleteGarbageCollector", uuid=uuid)
    assert await ok(node, "QueryGarbageCollector") == []
    assert deleted == [{"uuid": uuid, "name": "remove leftover"}]
    assert uuid not in gc(node).scheduler._timers
    assert not node.events.has_subscribers("/test/event")
    await fails(node, "DeleteGarbageCollector", SysErrors.RESOURCE_NOT_FOUND, uuid=uuid)


async def test_done_jobs_are_pruned_after_the_retention(
    node: ManagementNode, tmp_path: Path
) -> None:
    await set_config(node, "retry.interval", 3600)
    kept, pruned = Leftover(tmp_path, "kept"), Leftover(tmp_path, "pruned")
    kept.unblock()
    pruned.unblock()
    idle = await submit(node, Leftover(tmp_path, "idle"), name="idle")
    old = await submit(node, pruned, name="pruned")
    await ok(node, "TriggerGarbageCollector", uuid=old)
    await gc(node).scheduler.scan()  # retention 14 days: kept
    assert (await job(node, old))["status"] == "Done"

    await set_config(node, "done.retention", 0)
    recent = await submit(node, kept, name="kept")
    await ok(node, "TriggerGarbageCollector", uuid=recent)
    await gc(node).scheduler.scan()
    names = {j["name"] for j in await ok(node, "QueryGarbageCollector")}
    assert names == {"idle"}  # Done ones are gone, the pending one stays
    assert (await job(node, idle))["status"] == "Idle"


async def test_pending_jobs_are_a_problem_of_the_node(node: ManagementNode, tmp_path: Path) -> None:
    status = await ok(node, "GetManagementNodeStatus")
    assert not any("garbage collection" in p for p in status["problems"])
    await submit(node, Leftover(tmp_path), error="agent unreachable")
    status = await ok(node, "GetManagementNodeStatus")
    [problem] = [p for p in status["problems"] if "garbage collection" in p]
    assert problem.startswith("1 clean-up is waiting")
    assert "remove leftover: agent unreachable" in problem


def test_triggers_match_their_path_and_conditions() -> None:
    trigger = Trigger.parse(host_connected("h1"))
    assert trigger.path == "/host/status/change"
    assert trigger.matches({"hostUuid": "h1", "newStatus": "Connected", "oldStatus": "x"})
    assert not trigger.matches({"hostUuid": "h1", "newStatus": "Connecting"})
    assert not trigger.matches({"hostUuid": "h2", "newStatus": "Connected"})
    assert not trigger.matches(None)
    assert Trigger.parse("/a/b").matches(None)
    with pytest.raises(OperationError, match="has no key"):
        Trigger.parse("/a/b?=x")


async def test_gc_jobs_are_found_by_name_in_apis(node: ManagementNode, tmp_path: Path) -> None:
    uuid = await submit(node, Leftover(tmp_path), name="named job")
    await ok(node, "DeleteGarbageCollector", name="named job")
    found = await node.db.run(lambda s: s.scalar(select(GarbageCollectorVO).where(
        GarbageCollectorVO.uuid == uuid)))  # fmt: skip
    assert found is None

"""A durable chain whose rollback fails at a step stops there and hands the rest of its
rollback to a GC job (core.gc.flow_rollback), which finishes it when it can: what the
earlier steps hold stays held until the step that failed is undone.

The lab (tests/core/kernel/durable_lab.py): labOuter = MakeA, MakeB (nested labInner:
InnerC, InnerD), ReserveE, MakeF; each step makes a file and its rollback removes it.
``Blocked``'s rollback fails while ``<data dir>/blocked`` exists, as a rollback fails
while its host's agent is down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.gc.flow_rollback import RUNNER
from core.kernel.flow_journal import FlowRunVO
from core.kernel.node import ManagementNode
from core.operation_log.journal import OPERATION_UPDATE_PATH
from tests.conftest import ok, write_config
from tests.core.gc.conftest import until_done, until_status
from tests.core.kernel import durable_lab as lab
from tests.core.kernel.test_flow_recovery import _run_lab_until_killed, _with

# Blocked after MakeB: rolling back, F, E and Blocked's own go first; B (and the nested
# C, D) and A wait for the job.
FLOWS = [*_with(lab.OUTER_FLOWS, 2, lab.BLOCKED), lab.FAIL]
HELD = ["t-A", "t-B", "t-C", "t-D", "t-blocked"]


def _config(tmp_path: Path, flows: list[str]) -> Path:
    # The jobs' first run is gc.retry.interval (60 s) away: only a trigger (or the
    # host's reconnect) runs them within a test.
    return write_config(tmp_path, f"[chains]\n{lab.OUTER} = {json.dumps(flows)}\n")


def _made(node: ManagementNode) -> list[str]:
    made = node.data_dir / "made"
    return sorted(p.name for p in made.iterdir()) if made.exists() else []


def _undone(node: ManagementNode) -> list[str]:
    log = node.data_dir / "undo.log"
    return log.read_text().split("\n")[:-1] if log.exists() else []


async def _runs(node: ManagementNode) -> list[tuple[str, str]]:
    return await node.db.run(
        lambda s: [(r.name, r.status) for r in s.scalars(select(FlowRunVO)).all()]
    )


async def _jobs(node: ManagementNode) -> list[dict[str, Any]]:
    return await ok(node, "QueryGarbageCollector", conditions=[f"runner={RUNNER}"])


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[ManagementNode]:
    n = lab.lab_node(_config(tmp_path, FLOWS))
    await n.start()
    (n.data_dir / "blocked").touch()
    try:
        yield n
    finally:
        await n.stop()


async def test_the_rollback_stops_at_the_failed_step_and_a_gc_job_finishes_it(
    node: ManagementNode,
) -> None:
    reply = await node.call("RunLab", {"tag": "t"})
    assert not reply.success
    cause = reply.error.cause
    assert cause.code == "SYS.1010"
    assert "garbage-collection job" in cause.description and "Blocked" in cause.description
    # F, E undone; Blocked failed; what came before it is still held
    assert _undone(node) == ["undo F", "undo E"]
    assert _made(node) == HELD
    assert await _runs(node) == [(lab.OUTER, "RollbackFailed")]
    [job] = await until_jobs(node, 1)
    assert job["status"] == "Idle"
    assert job["name"].startswith("finish the rollback of RunLab (FCID_")  # a run of no resource
    assert "agent that would undo this is down" in json.dumps(job["lastError"])

    # Still blocked: the job fails, keeps its error, and nothing more is undone.
    again = await node.call("TriggerGarbageCollector", {"uuid": job["uuid"]})
    assert not again.success and "still fails" in str(again.error)
    failed = await until_status(node, job["uuid"], "Idle")
    assert failed["attempts"] == 1
    assert "agent that would undo this is down" in json.dumps(failed["lastError"])
    assert _made(node) == HELD and await _runs(node) == [(lab.OUTER, "RollbackFailed")]
    assert await _operation_status(node) == "RollbackFailed"

    # Unblocked: the job finishes the rollback from the failed step down.
    (node.data_dir / "blocked").unlink()
    updates: list[dict[str, Any]] = []
    node.events.subscribe(OPERATION_UPDATE_PATH, lambda e: updates.append(e.data))
    await ok(node, "TriggerGarbageCollector", uuid=job["uuid"])
    await until_done(node, job["uuid"])
    assert _made(node) == []
    assert _undone(node) == ["undo F", "undo E", "undo blocked", "undo B", "undo A"]
    assert await _runs(node) == []
    assert node.interrupted_resources == set()
    # The operation the job finished is RolledBack, in the log and live (ztui's view).
    await _until(lambda: any(u["name"] == "RunLab" for u in updates))
    assert await _operation_status(node) == "RolledBack"
    [update] = [u for u in updates if u["name"] == "RunLab"]
    assert update["status"] == "RolledBack" and "Blocked" in json.dumps(update["error"])


async def _operation_status(node: ManagementNode) -> str:
    [operation] = await ok(node, "QueryOperationLog", conditions=["name=RunLab"])
    return str(operation["status"])


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_the_hosts_reconnect_runs_the_job(node: ManagementNode) -> None:
    reply = await node.call("RunLab", {"tag": "t"})
    assert not reply.success
    [job] = await until_jobs(node, 1)
    assert job["triggerEvents"] == ["/host/status/change?hostUuid=host-of-t&newStatus=Connected"]
    (node.data_dir / "blocked").unlink()
    node.events.publish("/host/status/change", {"hostUuid": "host-of-t", "newStatus": "Connected"})
    await until_done(node, job["uuid"])
    assert _made(node) == []


async def test_a_restart_keeps_the_handed_over_run_for_its_job(tmp_path: Path) -> None:
    config = _config(tmp_path, FLOWS)
    first = lab.lab_node(config)
    await first.start()
    try:
        (first.data_dir / "blocked").touch()
        assert not (await first.call("RunLab", {"tag": "t"})).success
        [job] = await until_jobs(first, 1)
    finally:
        await first.stop()
    second = lab.lab_node(config)
    await second.start()
    try:
        assert second.recovered == []  # not an interrupted run: its job's
        assert [j["uuid"] for j in await _jobs(second)] == [job["uuid"]]  # no second job
        assert _made(second) == HELD
        await _unblock_and_collect(second, job["uuid"])
    finally:
        await second.stop()


async def test_a_recovery_whose_rollback_fails_hands_the_run_over(tmp_path: Path) -> None:
    """Killed after Blocked ran; at the next start Blocked cannot be undone: the recovery
    stops there and the run gets a job instead of being dropped."""
    flows = [*_with(lab.OUTER_FLOWS, 2, lab.BLOCKED)]
    kill_at = flows.index(lab.OUTER_FLOWS[2]) + 1  # after ReserveE
    config = _config(tmp_path, _with(flows, kill_at, lab.KILL))
    assert _run_lab_until_killed(config) == -9
    write_config(tmp_path)  # the default chains again
    node = lab.lab_node(config)
    (node.data_dir / "blocked").touch()
    await node.start()
    try:
        [recovered] = node.recovered
        assert recovered.status.value == "ROLLBACK_FAILED"
        assert "garbage-collection job" in recovered.error.description
        assert _made(node) == HELD
        [job] = await until_jobs(node, 1)
        [operation] = await ok(node, "QueryOperationLog", conditions=["apiName=RunLab"])
        assert operation["status"] == "RollbackFailed"
        await _unblock_and_collect(node, job["uuid"])
    finally:
        await node.stop()


async def _unblock_and_collect(node: ManagementNode, job_uuid: str) -> None:
    """Let Blocked be undone, run the job: the rest of the rollback is done, nothing held."""
    (node.data_dir / "blocked").unlink()
    await ok(node, "TriggerGarbageCollector", uuid=job_uuid)
    await until_done(node, job_uuid)
    assert _made(node) == [] and await _runs(node) == []


async def until_jobs(node: ManagementNode, count: int) -> list[dict[str, Any]]:
    """The flow-rollback jobs once there are ``count`` (the hand-over makes them in the
    background)."""
    for _ in range(400):
        jobs = await _jobs(node)
        if len(jobs) >= count:
            return jobs
        await asyncio.sleep(0.025)
    raise AssertionError(f"never {count} flow-rollback GC job(s): {await _jobs(node)}")

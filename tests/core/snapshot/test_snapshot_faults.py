"""A fault at every flow position of the snapshot chains (injected as a plugin inserts a
flow) leaves the database and the files agreeing, every file reading what it held, and
no capacity change: create and revert change nothing before their point of no return (a
snapshot taken and committed, an old active file deleted), after which the operation is
done; a failed delete leaves the snapshot Ready with every content kept."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import kvm
from core.kernel.chains import FlowChainContributor
from core.kernel.node import ManagementNode
from core.snapshot import flows
from core.snapshot.flows import SnapshotData, SnapshotTakeFlow, agent_of, file_op
from core.snapshot.global_config import CATEGORY, INCREMENTAL_MAX_NUM
from tests.conftest import ok
from tests.core.snapshot.conftest import SnapLab
from tests.core.snapshot.test_snapshots import seen_running, state, three_snapshots
from tests.core.vm.test_vm_faults import FAIL

pytestmark = pytest.mark.asyncio(loop_scope="module")


def rebuild(node: ManagementNode, overrides: dict[str, list[str]]) -> None:
    insertions = [
        i for c in node.registry.extensions(FlowChainContributor) for i in c.flow_insertions()
    ]
    node.chains.build_all(overrides, insertions)


def with_fault(flow_list: list[str], position: int) -> list[str]:
    return [*flow_list[:position], FAIL, *flow_list[position:]]


async def failing(node: ManagementNode, api: str, **params: Any) -> None:
    reply = await node.call(api, params)
    assert not reply.success, f"{api} succeeded"
    assert "injected fault" in str(reply.error), reply.error


@pytest.mark.parametrize("position", range(len(flows.CREATE_FLOWS) + 1))
async def test_a_fault_in_create(snap_lab: SnapLab, position: int) -> None:
    lab, node = snap_lab, snap_lab.node
    _vm, volume = await lab.stopped_vm(f"create-fault-{position}")
    await three_snapshots(lab, volume, f"cf{position}", verify=False)
    before = await state(lab, volume)
    rebuild(node, {flows.CREATE: with_fault(flows.CREATE_FLOWS, position)})
    try:
        await failing(node, "CreateVolumeSnapshot", volumeUuid=volume, name="doomed")
    finally:
        rebuild(node, {})
    if position < len(flows.CREATE_FLOWS):
        assert await state(lab, volume) == before
    else:  # after the point of no return: the snapshot exists
        [made] = [r for r in await lab.rows(volume) if r["name"] == "doomed"]
        assert made["latest"] and made["status"] == "Ready"
        lab.expected[made["uuid"]] = dict(lab.expected[volume])
    await lab.verify(volume)


class TakeWithoutCommit(SnapshotTakeFlow):
    """The take answered, the node gone before the commit (as a crash leaves it)."""

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        await (await agent_of(data)).send(
            kvm.TakeSnapshotCmd(
                **file_op(data, data.old_path, live=True),
                new_install_path=data.new_path,
                full=data.full,
            )
        )


@pytest.mark.parametrize("full", [False, True])
async def test_a_take_not_committed_is_undone(snap_lab: SnapLab, full: bool) -> None:
    lab, node = snap_lab, snap_lab.node
    _vm, volume = await lab.stopped_vm(f"uncommitted-{full}")
    await three_snapshots(lab, volume, f"uc{full}", verify=False)
    before = await state(lab, volume)
    take = f"{__name__}.{TakeWithoutCommit.__name__}"
    rebuild(node, {flows.CREATE: [flows.CREATE_FLOWS[0], take, FAIL]})
    limit = {"category": CATEGORY, "name": INCREMENTAL_MAX_NUM.name}
    await ok(node, "UpdateGlobalConfig", **limit, value="3" if full else "64")
    try:
        await failing(node, "CreateVolumeSnapshot", volumeUuid=volume, name="doomed")
    finally:
        rebuild(node, {})
        await ok(node, "UpdateGlobalConfig", **limit, value=INCREMENTAL_MAX_NUM.default)
    if full:  # the active file was made standalone first (content kept): no latest now
        rows, path, files, capacity = before
        assert isinstance(rows, list)
        unlatest = [{**r, "latest": False} for r in rows]
        assert await state(lab, volume) == (unlatest, path, files, capacity)
        from tests.core.snapshot.conftest import backing_of

        assert backing_of(str(path)) == ""
    else:
        assert await state(lab, volume) == before
    await lab.verify(volume)


@pytest.mark.parametrize("position", range(len(flows.REVERT_FLOWS) + 1))
async def test_a_fault_in_revert(snap_lab: SnapLab, position: int) -> None:
    lab, node = snap_lab, snap_lab.node
    _vm, volume = await lab.stopped_vm(f"revert-fault-{position}")
    snaps = await three_snapshots(lab, volume, f"rf{position}", verify=False)
    before = await state(lab, volume)
    rebuild(node, {flows.REVERT: with_fault(flows.REVERT_FLOWS, position)})
    try:
        await failing(node, "RevertVolumeFromSnapshot", uuid=snaps[1])
    finally:
        rebuild(node, {})
    if position < len(flows.REVERT_FLOWS):
        assert await state(lab, volume) == before
    else:  # the old active file is gone: the revert is done
        lab.expected[volume] = dict(lab.expected[snaps[1]])
        assert [r["latest"] for r in await lab.rows(volume)] == [False, True, False]
    await lab.verify(volume)


DELETE_CASES = [(target, False) for target in (0, 1, 2)] + [(1, True)]


@pytest.mark.parametrize("target,live", DELETE_CASES, ids=["root", "middle", "latest", "live"])
@pytest.mark.parametrize("position", range(len(flows.DELETE_FLOWS) + 1))
async def test_a_fault_in_delete(snap_lab: SnapLab, position: int, target: int, live: bool) -> None:
    """Deleting the root, the middle or the latest of a chain (the middle live too: the
    active file is pulled past it)."""
    lab, node = snap_lab, snap_lab.node
    vm, volume = await lab.stopped_vm(f"delete-fault-{position}-{target}-{live}")
    snaps = await three_snapshots(lab, volume, f"df{position}-{target}-{live}", verify=False)
    before = await state(lab, volume)
    rebuild(node, {flows.DELETE: with_fault(flows.DELETE_FLOWS, position)})
    await seen_running(lab, vm["uuid"], live)
    try:
        await failing(node, "DeleteVolumeSnapshot", uuid=snaps[target])
    finally:
        rebuild(node, {})
        await seen_running(lab, vm["uuid"], False)
    rows = {r["uuid"]: r for r in await lab.rows(volume)}
    if position < len(flows.DELETE_FLOWS):
        assert rows[snaps[target]]["status"] == "Ready"
        if position <= (1 if live else 2):  # nothing was rebased yet
            assert await state(lab, volume) == before
    else:  # the file is deleted: so is the snapshot
        assert snaps[target] not in rows
        lab.expected.pop(snaps[target])
    await lab.verify(volume)
    if position == 3:  # the children were rebased: what is left can still be deleted
        for uuid in snaps:
            if uuid in rows:
                await lab.delete(uuid)
        await lab.verify(volume)


async def test_a_live_take_not_committed_is_finished(snap_lab: SnapLab) -> None:
    """Live, the disk may be on the new file already: the rollback finishes the take."""
    lab, node = snap_lab, snap_lab.node
    vm, volume = await lab.stopped_vm("uncommitted-live")
    await three_snapshots(lab, volume, "ucl", verify=False)
    before = await lab.capacity()
    take = f"{__name__}.{TakeWithoutCommit.__name__}"
    rebuild(node, {flows.CREATE: [flows.CREATE_FLOWS[0], take, FAIL]})
    await seen_running(lab, vm["uuid"], True)
    try:
        await failing(node, "CreateVolumeSnapshot", volumeUuid=volume, name="finished")
    finally:
        rebuild(node, {})
        await seen_running(lab, vm["uuid"], False)
    [made] = [r for r in await lab.rows(volume) if r["name"] == "finished"]
    assert made["status"] == "Ready" and made["latest"]
    lab.expected[made["uuid"]] = dict(lab.expected[volume])
    await lab.verify(volume)
    assert await lab.capacity() == before

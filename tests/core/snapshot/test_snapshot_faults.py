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
from tests.core.snapshot.conftest import SnapLab
from tests.core.snapshot.test_snapshots import state, three_snapshots
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
    await three_snapshots(lab, volume, f"cf{position}")
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
                **file_op(data, data.old_path, live=True), new_install_path=data.new_path
            )
        )


async def test_a_take_not_committed_is_undone(snap_lab: SnapLab) -> None:
    lab, node = snap_lab, snap_lab.node
    _vm, volume = await lab.stopped_vm("uncommitted")
    await three_snapshots(lab, volume, "uc")
    before = await state(lab, volume)
    take = f"{__name__}.{TakeWithoutCommit.__name__}"
    rebuild(node, {flows.CREATE: [flows.CREATE_FLOWS[0], take, FAIL]})
    try:
        await failing(node, "CreateVolumeSnapshot", volumeUuid=volume, name="doomed")
    finally:
        rebuild(node, {})
    assert await state(lab, volume) == before
    await lab.verify(volume)


@pytest.mark.parametrize("position", range(len(flows.REVERT_FLOWS) + 1))
async def test_a_fault_in_revert(snap_lab: SnapLab, position: int) -> None:
    lab, node = snap_lab, snap_lab.node
    _vm, volume = await lab.stopped_vm(f"revert-fault-{position}")
    snaps = await three_snapshots(lab, volume, f"rf{position}")
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


@pytest.mark.parametrize("target", [0, 1, 2])
@pytest.mark.parametrize("position", range(len(flows.DELETE_FLOWS) + 1))
async def test_a_fault_in_delete(snap_lab: SnapLab, position: int, target: int) -> None:
    """Deleting the root, the middle or the latest of a chain."""
    lab, node = snap_lab, snap_lab.node
    _vm, volume = await lab.stopped_vm(f"delete-fault-{position}-{target}")
    snaps = await three_snapshots(lab, volume, f"df{position}-{target}")
    before = await state(lab, volume)
    rebuild(node, {flows.DELETE: with_fault(flows.DELETE_FLOWS, position)})
    try:
        await failing(node, "DeleteVolumeSnapshot", uuid=snaps[target])
    finally:
        rebuild(node, {})
    rows = {r["uuid"]: r for r in await lab.rows(volume)}
    if position < len(flows.DELETE_FLOWS):
        assert rows[snaps[target]]["status"] == "Ready"
        if position <= 2:  # nothing was rebased yet
            assert await state(lab, volume) == before
    else:  # the file is deleted: so is the snapshot
        assert snaps[target] not in rows
        lab.expected.pop(snaps[target])
    await lab.verify(volume)
    for uuid in snaps:  # what is left can be deleted
        if uuid in rows:
            await lab.delete(uuid)
    await lab.verify(volume)

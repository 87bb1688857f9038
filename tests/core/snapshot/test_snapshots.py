"""The snapshot APIs on a simulator lab with real qcow2 files: create, revert and delete
in every position (a chain deleted in every order, branches after a revert), a full
snapshot at the chain cap, refusals, the tree, and a VM's expunge; after every step the
database and the files agree and every file reads what it held."""

from __future__ import annotations

import itertools

import pytest

from core.snapshot.global_config import CATEGORY, INCREMENTAL_MAX_NUM
from tests.conftest import ok
from tests.core.snapshot.conftest import SnapLab

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def chain_of_three(lab: SnapLab, name: str) -> tuple[str, list[str]]:
    """A stopped VM's volume with S1 <- S2 <- S3 <- active, each layer with its marker."""
    _vm, volume = await lab.stopped_vm(name)
    return volume, await three_snapshots(lab, volume, name)


async def three_snapshots(lab: SnapLab, volume: str, name: str) -> list[str]:
    snaps = []
    for i in range(3):
        await lab.write(volume, i, 0x11 * (i + 1))
        snaps.append((await lab.snapshot(volume, f"{name}-s{i + 1}"))["uuid"])
    await lab.write(volume, 3, 0x44)
    await lab.write(volume, 0, 0x55)  # the active file overwrites what S1 holds
    await lab.verify(volume)
    return snaps


async def test_create_makes_a_chain(snap_lab: SnapLab) -> None:
    volume, (s1, s2, s3) = await chain_of_three(snap_lab, "chain")
    rows = {r["uuid"]: r for r in await snap_lab.rows(volume)}
    assert [rows[s]["parentUuid"] for s in (s1, s2, s3)] == [None, s1, s2]
    assert [rows[s]["latest"] for s in (s1, s2, s3)] == [False, False, True]
    assert {rows[s]["treeUuid"] for s in (s1, s2, s3)} == {s1}
    assert all(r["size"] > 0 and not r["full"] for r in rows.values())
    tree = await ok(snap_lab.node, "GetVolumeSnapshotTree", volumeUuid=volume)
    [root] = tree["trees"]
    assert root["inventory"]["uuid"] == s1 and not root["current"]
    [second] = root["children"]
    [third] = second["children"]
    assert third["inventory"]["uuid"] == s3 and third["current"] and not third["children"]
    assert tree["installPath"] == (await snap_lab.volume(volume))["installPath"]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_a_chain_deleted_in_any_order_keeps_every_content(
    snap_lab: SnapLab, order: tuple[int, ...]
) -> None:
    name = "order-" + "".join(map(str, order))
    _vm, volume = await snap_lab.stopped_vm(name)
    before = await snap_lab.capacity()
    snaps = await three_snapshots(snap_lab, volume, name)
    for i in order:
        await snap_lab.delete(snaps[i])
        await snap_lab.verify(volume)
    assert await snap_lab.rows(volume) == []
    assert await snap_lab.capacity() == before


async def test_revert_branches_and_deletes_at_branch_points(snap_lab: SnapLab) -> None:
    lab = snap_lab
    _vm, volume = await lab.stopped_vm("branches")
    before = await lab.capacity()
    await lab.write(volume, 0, 0x11)
    s1 = (await lab.snapshot(volume, "s1"))["uuid"]
    await lab.write(volume, 1, 0x22)
    s2 = (await lab.snapshot(volume, "s2"))["uuid"]
    await lab.write(volume, 2, 0x33)
    old_active = (await lab.volume(volume))["installPath"]
    await lab.revert(s1)  # what the active file held since s2 is gone, and its file
    await lab.verify(volume)
    assert (await lab.volume(volume))["installPath"] != old_active
    await lab.write(volume, 3, 0x44)
    s3 = (await lab.snapshot(volume, "s3"))["uuid"]  # a branch: s1 has two children
    await lab.write(volume, 4, 0x55)
    await lab.verify(volume)
    tree = await ok(lab.node, "GetVolumeSnapshotTree", volumeUuid=volume)
    [root] = tree["trees"]
    assert [c["inventory"]["uuid"] for c in root["children"]] == [s2, s3]
    assert [c["current"] for c in root["children"]] == [False, True]

    await lab.revert(s3)  # the latest itself: the writes since are dropped
    await lab.verify(volume)
    await lab.write(volume, 5, 0x66)
    await lab.delete(s1)  # a root with two children: each becomes a tree's root
    await lab.verify(volume)
    trees = (await ok(lab.node, "GetVolumeSnapshotTree", volumeUuid=volume))["trees"]
    assert sorted(t["inventory"]["uuid"] for t in trees) == sorted([s2, s3])
    assert all(t["inventory"]["treeUuid"] == t["inventory"]["uuid"] for t in trees)
    await lab.revert(s2)
    await lab.verify(volume)
    await lab.delete(s3)  # a leaf that is not the latest
    await lab.verify(volume)
    await lab.delete(s2)  # the latest, a root: the active file stands on the image
    await lab.verify(volume)
    assert await lab.capacity() == before


async def test_delete_a_middle_branch_point(snap_lab: SnapLab) -> None:
    lab = snap_lab
    volume, (s1, s2, s3) = await chain_of_three(lab, "middle")
    await lab.revert(s2)
    await lab.write(volume, 4, 0x77)
    s4 = (await lab.snapshot(volume, "s4"))["uuid"]
    await lab.write(volume, 5, 0x88)
    await lab.delete(s2)  # children s3 and s4 (the latest) stand on s1 afterwards
    await lab.verify(volume)
    rows = {r["uuid"]: r for r in await lab.rows(volume)}
    assert rows[s3]["parentUuid"] == s1 and rows[s4]["parentUuid"] == s1
    assert rows[s4]["latest"]
    for uuid in (s4, s1, s3):
        await lab.delete(uuid)
        await lab.verify(volume)


async def test_the_chain_cap_makes_a_full_snapshot(snap_lab: SnapLab) -> None:
    lab, node = snap_lab, snap_lab.node
    name = f"{CATEGORY}.{INCREMENTAL_MAX_NUM.name}"
    reply = await node.call(
        "UpdateGlobalConfig",
        {"category": CATEGORY, "name": INCREMENTAL_MAX_NUM.name, "value": "121"},
    )
    assert not reply.success and "121" in str(reply.error), name
    await ok(
        node, "UpdateGlobalConfig", category=CATEGORY, name=INCREMENTAL_MAX_NUM.name, value="2"
    )
    try:
        _vm, volume = await lab.stopped_vm("capped")
        made = []
        for i in range(5):
            await lab.write(volume, i, 0x10 + i)
            made.append(await lab.snapshot(volume, f"c{i}"))
        await lab.write(volume, 5, 0x99)
        rows = {r["uuid"]: r for r in await lab.rows(volume)}
        s = [rows[m["uuid"]] for m in made]
        assert [r["full"] for r in s] == [False, False, True, False, True]
        assert [r["parentUuid"] for r in s] == [None, s[0]["uuid"], None, s[2]["uuid"], None]
        assert s[2]["treeUuid"] == s[2]["uuid"] and s[4]["treeUuid"] == s[4]["uuid"]
        from tests.core.snapshot.conftest import backing_of

        assert backing_of(s[2]["installPath"]) == "" and backing_of(s[4]["installPath"]) == ""
        assert backing_of(s[0]["installPath"]).startswith(str(lab.lab.primary_url / "imagecache"))
        await lab.verify(volume)
        for m in made:
            await lab.delete(m["uuid"])
            await lab.verify(volume)
    finally:
        await ok(
            node, "UpdateGlobalConfig", category=CATEGORY, name=INCREMENTAL_MAX_NUM.name,
            value=INCREMENTAL_MAX_NUM.default,
        )  # fmt: skip


async def state(lab: SnapLab, volume: str) -> tuple[object, ...]:
    rows = [{k: v for k, v in r.items() if k != "lastOpDate"} for r in await lab.rows(volume)]
    vol = await lab.volume(volume)
    files = sorted(str(p) for p in (lab.lab.primary_url / "rootvolumes").rglob("*"))
    return rows, vol["installPath"], files, await lab.capacity()


async def test_refusals_change_nothing(snap_lab: SnapLab) -> None:
    lab, node = snap_lab, snap_lab.node
    vm, volume = await lab.stopped_vm("refused")
    await lab.write(volume, 0, 0x21)
    s1 = (await lab.snapshot(volume, "s1"))["uuid"]
    await lab.write(volume, 1, 0x22)
    await ok(node, "StartVmInstance", uuid=vm["uuid"])
    before = await state(lab, volume)

    reply = await node.call("RevertVolumeFromSnapshot", {"uuid": s1})
    assert not reply.success and reply.error is not None
    assert reply.error.code == "SYS.1009" and "is Running" in reply.error.description
    assert "stop the VM" in str(reply.error)
    # The simulator has no QEMU: a live snapshot or merge is refused by its agent, and the
    # chains roll back (the live paths' failures).
    for api, params in (
        ("CreateVolumeSnapshot", {"volumeUuid": volume, "name": "live"}),
        ("DeleteVolumeSnapshot", {"uuid": s1}),
    ):
        reply = await node.call(api, params)
        assert not reply.success, api
        assert await state(lab, volume) == before, api
    for api, params in (
        ("RevertVolumeFromSnapshot", {"uuid": "0" * 32}),
        ("DeleteVolumeSnapshot", {"uuid": "0" * 32}),
        ("CreateVolumeSnapshot", {"volumeUuid": "0" * 32, "name": "x"}),
    ):
        assert not (await node.call(api, params)).success, api
    assert await state(lab, volume) == before

    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    reply = await node.call("CreateVolumeSnapshot", {"volumeUuid": volume, "name": "gone"})
    assert not reply.success and "Destroyed" in str(reply.error), reply.error
    reply = await node.call("RevertVolumeFromSnapshot", {"uuid": s1})
    assert not reply.success and "Destroyed" in str(reply.error), reply.error
    assert (await state(lab, volume))[:3] == before[:3]
    await ok(node, "RecoverVmInstance", uuid=vm["uuid"])
    await lab.verify(volume)


async def test_expunge_deletes_the_snapshots(snap_lab: SnapLab) -> None:
    lab, node = snap_lab, snap_lab.node
    [ps] = await ok(node, "QueryPrimaryStorage")
    vm, volume = await lab.stopped_vm("expunged")
    directory = lab.lab.primary_url / "rootvolumes" / f"vm-{vm['uuid']}"
    for i in range(2):
        await lab.write(volume, i, 0x31 + i)
        await lab.snapshot(volume, f"e{i}")
    assert len(list(directory.iterdir())) == 3
    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])
    assert not directory.exists()
    assert await lab.rows(volume) == []
    [after] = await ok(node, "QueryPrimaryStorage")
    assert after["availableCapacity"] == ps["availableCapacity"]

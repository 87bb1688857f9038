"""Data volumes on a simulator lab (real qcow2 files, no QEMU): create from a size or an
offering, attach to a stopped or running VM, detach, the deletion policy, recover,
expunge; a VM made with data disks; what an expunged VM leaves (its data volumes,
detached); refusals that change nothing; a fault at every flow of every chain."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from contracts import kvm
from core.host.plugin import HostPlugin
from core.kernel.errors import OperationError
from core.kernel.node import ManagementNode
from core.volume import flows
from core.volume.models import VolumeVO
from tests.conftest import fails, ok
from tests.core.vm.conftest import Lab, MiB, make_lab
from tests.core.vm.test_vm_faults import FAIL

OPERATION, ARGUMENT = "SYS.1006", "SYS.1007"


@pytest.fixture
async def lab(node: ManagementNode, tmp_path: Path) -> Lab:
    return await make_lab(node, tmp_path)


def qemu_info(path: str) -> dict[str, Any]:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", path], check=True, capture_output=True
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


async def vm(lab: Lab, name: str = "vm", **params: Any) -> dict[str, Any]:
    return await ok(
        lab.node,
        "CreateVmInstance",
        name=name,
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
        **params,
    )


async def storage_room(lab: Lab) -> int:
    [ps] = await ok(lab.node, "QueryPrimaryStorage")
    return int(ps["availableCapacity"])


async def test_a_data_volume_of_a_size_or_an_offering_is_a_blank_qcow2(lab: Lab) -> None:
    node = lab.node
    room = await storage_room(lab)
    volume = await ok(node, "CreateDataVolume", name="d1", diskSize=32 * MiB)
    assert (volume["type"], volume["status"], volume["size"]) == ("Data", "Ready", 32 * MiB)
    assert volume["installPath"].startswith(f"{lab.primary_url}/datavolumes/vol-{volume['uuid']}/")
    info = qemu_info(volume["installPath"])
    assert info["format"] == "qcow2" and info["virtual-size"] == 32 * MiB
    assert "backing-filename" not in info
    offering = await ok(node, "CreateDiskOffering", name="small", diskSize=16 * MiB)
    second = await ok(node, "CreateDataVolume", name="d2", diskOfferingUuid=offering["uuid"])
    assert second["size"] == 16 * MiB and second["diskOfferingUuid"] == offering["uuid"]
    assert await storage_room(lab) == room - 48 * MiB
    listed = await ok(node, "QueryVolume", conditions=["type=Data"])
    assert {v["name"] for v in listed} == {"d1", "d2"}


async def test_bad_creates_are_refused_and_change_nothing(lab: Lab) -> None:
    node = lab.node
    room = await storage_room(lab)
    assert "either" in await fails(node, "CreateDataVolume", ARGUMENT, name="x")
    offering = await ok(node, "CreateDiskOffering", name="o", diskSize=MiB)
    await fails(
        node,
        "CreateDataVolume",
        ARGUMENT,
        name="x",
        diskSize=MiB,
        diskOfferingUuid=offering["uuid"],
    )
    await fails(node, "CreateDataVolume", ARGUMENT, name="x", diskSize=10)
    too_big = await node.call("CreateDataVolume", {"name": "x", "diskSize": 2**49})
    assert not too_big.success and "free" in str(too_big.error)
    assert "not a DataVolumeTemplate" in await fails(
        node, "CreateDataVolumeFromVolumeTemplate", ARGUMENT, name="x", imageUuid=lab.image_uuid
    )
    assert await ok(node, "QueryVolume", conditions=["type=Data"]) == []
    assert await storage_room(lab) == room
    assert not (lab.primary_url / "datavolumes").exists() or not any(
        (lab.primary_url / "datavolumes").iterdir()
    )


async def test_attach_to_a_stopped_vm_plugs_it_at_start_and_detach_keeps_it(lab: Lab) -> None:
    node = lab.node
    machine = await vm(lab, strategy="CreateStopped")
    volume = await ok(node, "CreateDataVolume", name="d", diskSize=8 * MiB)
    attached = await ok(
        node, "AttachDataVolumeToVm", volumeUuid=volume["uuid"], vmInstanceUuid=machine["uuid"]
    )
    assert (attached["vmInstanceUuid"], attached["deviceId"]) == (machine["uuid"], 1)
    second = await ok(node, "CreateDataVolume", name="e", diskSize=8 * MiB)
    attached = await ok(
        node, "AttachDataVolumeToVm", volumeUuid=second["uuid"], vmInstanceUuid=machine["uuid"]
    )
    assert attached["deviceId"] == 2
    again = await fails(
        node,
        "AttachDataVolumeToVm",
        OPERATION,
        volumeUuid=volume["uuid"],
        vmInstanceUuid=machine["uuid"],
    )
    assert "already" in again
    await ok(node, "StartVmInstance", uuid=machine["uuid"])
    detached = await ok(node, "DetachDataVolumeFromVm", uuid=volume["uuid"])
    assert detached["vmInstanceUuid"] is None and detached["lastVmInstanceUuid"] == machine["uuid"]
    assert Path(detached["installPath"]).is_file()
    assert "not attached" in await fails(
        node, "DetachDataVolumeFromVm", OPERATION, uuid=volume["uuid"]
    )


async def test_a_running_vm_gets_the_disk_hot_plugged(lab: Lab) -> None:
    node = lab.node
    machine = await vm(lab)
    volume = await ok(node, "CreateDataVolume", name="d", diskSize=8 * MiB)
    assert not await plugged(lab, volume)
    await ok(
        node, "AttachDataVolumeToVm", volumeUuid=volume["uuid"], vmInstanceUuid=machine["uuid"]
    )
    assert await plugged(lab, volume)
    await ok(node, "DetachDataVolumeFromVm", uuid=volume["uuid"])
    assert not await plugged(lab, volume)


async def test_the_data_volume_limit_is_the_global_config(lab: Lab) -> None:
    node = lab.node
    await ok(node, "UpdateGlobalConfig", category="kvm", name="dataVolume.maxNum", value="1")
    machine = await vm(lab, strategy="CreateStopped")
    first = await ok(node, "CreateDataVolume", name="a", diskSize=MiB)
    second = await ok(node, "CreateDataVolume", name="b", diskSize=MiB)
    await ok(node, "AttachDataVolumeToVm", volumeUuid=first["uuid"], vmInstanceUuid=machine["uuid"])
    refused = await fails(
        node,
        "AttachDataVolumeToVm",
        OPERATION,
        volumeUuid=second["uuid"],
        vmInstanceUuid=machine["uuid"],
    )
    assert "kvm.dataVolume.maxNum" in refused
    [row] = await ok(node, "QueryVolume", conditions=[f"uuid={second['uuid']}"])
    assert row["vmInstanceUuid"] is None


@pytest.mark.parametrize("policy", ["Direct", "Delay", "Never"])
async def test_delete_follows_the_deletion_policy(lab: Lab, policy: str) -> None:
    node = lab.node
    await ok(node, "UpdateGlobalConfig", category="volume", name="deletionPolicy", value=policy)
    room = await storage_room(lab)
    machine = await vm(lab, strategy="CreateStopped")
    volume = await ok(node, "CreateDataVolume", name="d", diskSize=8 * MiB)
    await ok(
        node, "AttachDataVolumeToVm", volumeUuid=volume["uuid"], vmInstanceUuid=machine["uuid"]
    )
    room_with_vm = await storage_room(lab)
    await ok(node, "DeleteDataVolume", uuid=volume["uuid"])
    path = Path(volume["installPath"])
    if policy == "Direct":
        assert await ok(node, "QueryVolume", conditions=[f"uuid={volume['uuid']}"]) == []
        assert not path.exists() and not path.parent.exists()
        assert await storage_room(lab) == room_with_vm + 8 * MiB
        return
    [row] = await ok(node, "QueryVolume", conditions=[f"uuid={volume['uuid']}"])
    assert (row["status"], row["vmInstanceUuid"]) == ("Deleted", None) and path.is_file()
    recovered = await ok(node, "RecoverDataVolume", uuid=volume["uuid"])
    assert recovered["status"] == "Ready"
    await ok(node, "DeleteDataVolume", uuid=volume["uuid"])
    await ok(node, "ExpungeDataVolume", uuid=volume["uuid"])
    assert not path.exists()
    assert await storage_room(lab) == room_with_vm + 8 * MiB
    assert room_with_vm < room


async def test_expunge_needs_a_deleted_volume(lab: Lab) -> None:
    volume = await ok(lab.node, "CreateDataVolume", name="d", diskSize=MiB)
    assert "delete it first" in await fails(
        lab.node, "ExpungeDataVolume", OPERATION, uuid=volume["uuid"]
    )
    assert Path(volume["installPath"]).is_file()


async def test_a_vm_made_with_data_disks_and_expunged_keeps_them(lab: Lab) -> None:
    node = lab.node
    small = await ok(node, "CreateDiskOffering", name="s", diskSize=4 * MiB)
    big = await ok(node, "CreateDiskOffering", name="b", diskSize=16 * MiB)
    machine = await vm(lab, dataDiskOfferingUuids=[small["uuid"], big["uuid"]])
    disks = await ok(
        node, "QueryVolume", conditions=[f"vmInstanceUuid={machine['uuid']}", "type=Data"]
    )
    assert sorted((d["deviceId"], d["size"]) for d in disks) == [(1, 4 * MiB), (2, 16 * MiB)]
    for disk in disks:
        assert qemu_info(disk["installPath"])["virtual-size"] == disk["size"]
    await ok(node, "UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Direct")
    await ok(node, "DestroyVmInstance", uuid=machine["uuid"])
    kept = await ok(node, "QueryVolume", conditions=["type=Data"])
    assert {d["uuid"] for d in kept} == {d["uuid"] for d in disks}
    assert all(d["vmInstanceUuid"] is None for d in kept)
    assert all(d["lastVmInstanceUuid"] == machine["uuid"] for d in kept)
    assert all(Path(d["installPath"]).is_file() for d in kept)
    assert await ok(node, "QueryVolume", conditions=["type=Root"]) == []


async def test_too_many_data_disks_at_create_are_refused(lab: Lab) -> None:
    node = lab.node
    await ok(node, "UpdateGlobalConfig", category="kvm", name="dataVolume.maxNum", value="1")
    offering = await ok(node, "CreateDiskOffering", name="s", diskSize=MiB)
    reply = await node.call(
        "CreateVmInstance",
        {
            "name": "x",
            "instanceOfferingUuid": lab.offering["uuid"],
            "imageUuid": lab.image_uuid,
            "dataDiskOfferingUuids": [offering["uuid"], offering["uuid"]],
        },
    )
    assert not reply.success and "kvm.dataVolume.maxNum" in str(reply.error)
    assert await ok(node, "QueryVmInstance") == [] and await ok(node, "QueryVolume") == []


# -- faults ------------------------------------------------------------------------------


async def leaks(lab: Lab) -> dict[str, Any]:
    node = lab.node
    volumes = await node.db.run(  # type: ignore[union-attr]
        lambda s: sorted(
            (v.uuid, v.vm_instance_uuid, v.device_id, v.status) for v in s.query(VolumeVO)
        )
    )
    return {
        "volumes": volumes,
        "room": await storage_room(lab),
        "files": sorted(
            str(p.relative_to(lab.primary_url))
            for top in ("rootvolumes", "datavolumes")
            for p in (lab.primary_url / top).rglob("*")
        ),
    }


def with_fault(flow_list: list[str]) -> list[list[str]]:
    return [[*flow_list[:i], FAIL, *flow_list[i:]] for i in range(len(flow_list) + 1)]


async def test_a_fault_in_create_or_attach_leaves_nothing(lab: Lab) -> None:
    node = lab.node
    running = await vm(lab, "running")
    stopped = await vm(lab, "stopped", strategy="CreateStopped")
    spare = await ok(node, "CreateDataVolume", name="spare", diskSize=MiB)
    before = await leaks(lab)
    create_flows = flows.CHAINS[flows.CREATE][0]
    for faulty in with_fault(create_flows):
        node.chains.build_all({flows.CREATE: faulty}, [])
        reply = await node.call("CreateDataVolume", {"name": "doomed", "diskSize": MiB})
        assert not reply.success and "injected fault" in str(reply.error)
        assert await leaks(lab) == before, faulty
    attach_flows = flows.CHAINS[flows.ATTACH][0]
    for machine in (running, stopped):
        for faulty in with_fault(attach_flows):
            node.chains.build_all({flows.ATTACH: faulty}, [])
            reply = await node.call(
                "AttachDataVolumeToVm",
                {"volumeUuid": spare["uuid"], "vmInstanceUuid": machine["uuid"]},
            )
            assert not reply.success and "injected fault" in str(reply.error)
            assert await leaks(lab) == before, faulty
            assert not await plugged(lab, spare), faulty
    node.chains.build_all({}, [])
    await ok(node, "AttachDataVolumeToVm", volumeUuid=spare["uuid"], vmInstanceUuid=running["uuid"])
    assert await plugged(lab, spare)


async def test_a_fault_in_a_vm_create_with_data_disks_leaves_nothing(lab: Lab) -> None:
    from core.vm.create_flows import DEFAULT_FLOWS

    node = lab.node
    offering = await ok(node, "CreateDiskOffering", name="s", diskSize=MiB)
    await vm(lab, "warm")  # the image cache is kept on purpose
    before = await leaks(lab)
    for faulty in with_fault(DEFAULT_FLOWS):
        node.chains.build_all({"createVm": faulty}, [])
        reply = await node.call(
            "CreateVmInstance",
            {
                "name": "doomed",
                "instanceOfferingUuid": lab.offering["uuid"],
                "imageUuid": lab.image_uuid,
                "dataDiskOfferingUuids": [offering["uuid"]] * 2,
            },
        )
        assert not reply.success and "injected fault" in str(reply.error)
        assert await leaks(lab) == before, faulty


async def plugged(lab: Lab, volume: dict[str, Any]) -> bool:
    """Whether a running domain of the simulator host has the volume as a disk: the host
    refuses an offline operation on such a file (here a resize to its own size, which
    changes nothing otherwise)."""
    agent = lab.node.plugin(HostPlugin)._agents[lab.host["uuid"]]
    body = {
        "storagePath": str(lab.primary_url),
        "installPath": volume["installPath"],
        "size": volume["size"],
    }
    try:
        await agent.call(kvm.VOLUME_RESIZE, body)
    except OperationError as exc:
        assert "the running VM" in str(exc), exc
        return True
    return False

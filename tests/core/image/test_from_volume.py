"""Images made from volumes on a simulator lab: the host really exports the volume's
chain into a standalone qcow2 on backup storage, and VMs boot from it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.image.from_volume import DEFAULT_FLOWS
from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.image.plugin import PROGRESS_EVENT
from core.kernel.events import CanonicalEvent
from core.kernel.flow import Flow
from core.kernel.flow_journal import FlowRunVO
from core.kernel.node import ManagementNode
from core.volume.models import VolumeVO
from tests.conftest import fails, ok
from tests.core.vm.conftest import Lab, MiB, make_lab

FAIL = f"{__name__}.InjectedFault"


class InjectedFault(Flow):
    async def run(self, data: dict[str, Any]) -> None:
        raise RuntimeError("injected fault")

    async def rollback(self, data: dict[str, Any]) -> None:
        return None


@pytest.fixture
async def lab(node: ManagementNode, tmp_path: Path) -> Lab:
    return await make_lab(node, tmp_path)


async def volume_of(node: ManagementNode, uuid: str) -> dict[str, Any]:
    return await node.db.run(lambda s: s.get(VolumeVO, uuid).to_inventory())  # type: ignore[union-attr,no-any-return]


def qemu_info(path: Path | str) -> dict[str, Any]:
    out = subprocess.run(
        ["qemu-img", "info", "--force-share", "--output=json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


async def stopped_vm(lab: Lab, name: str = "source") -> dict[str, Any]:
    vm = await ok(
        lab.node,
        "CreateVmInstance",
        name=name,
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )
    return await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])  # type: ignore[no-any-return]


def bs_dir(lab: Lab) -> Path:
    return lab.primary_url.parent / "bs"


def bs_files(lab: Lab) -> list[str]:
    return sorted(p.name for p in bs_dir(lab).iterdir())


async def images_state(node: ManagementNode) -> dict[str, Any]:
    def count(session: Any) -> dict[str, int]:
        return {
            m.__name__: session.query(m).count()
            for m in (ImageVO, ImageBackupStorageRefVO, VolumeVO, FlowRunVO)
        }

    return await node.db.run(count)  # type: ignore[union-attr,no-any-return]


async def test_a_root_volume_template_is_standalone_and_boots_a_vm(lab: Lab) -> None:
    node = lab.node
    vm = await stopped_vm(lab)
    events: list[dict[str, Any]] = []

    def record(event: CanonicalEvent) -> None:
        events.append(event.data)

    node.events.subscribe(PROGRESS_EVENT, record)
    image = await ok(
        node,
        "CreateRootVolumeTemplateFromRootVolume",
        rootVolumeUuid=vm["rootVolumeUuid"],
        name="golden",
        description="from source",
    )
    assert image["status"] == "Ready" and image["mediaType"] == "RootVolumeTemplate"
    assert image["format"] == "qcow2" and image["platform"] == "Linux"
    assert image["size"] == 64 * MiB and image["actualSize"] > 0 and image["md5sum"]
    [ref] = image["backupStorageRefs"]
    assert ref["status"] == "Ready"
    assert ref["installPath"] == str(bs_dir(lab) / f"{image['uuid']}.qcow2")
    info = qemu_info(ref["installPath"])
    assert info["format"] == "qcow2" and info["virtual-size"] == 64 * MiB
    assert "backing-filename" not in info, "the exported image must stand alone"
    assert events and {e["stage"] for e in events} == {"export"}
    assert {e["imageUuid"] for e in events} == {image["uuid"]}

    # A VM made from it: its root volume stands on the new image's cache.
    child = await ok(
        node,
        "CreateVmInstance",
        name="child",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=image["uuid"],
    )
    assert child["state"] == "Running"
    volume = await volume_of(node, child["rootVolumeUuid"])
    backing = qemu_info(volume["installPath"])["backing-filename"]
    assert backing == str(lab.primary_url / "imagecache" / f"{image['uuid']}.qcow2")
    # The source VM is untouched and starts again.
    assert (await ok(node, "StartVmInstance", uuid=vm["uuid"]))["state"] == "Running"


async def test_a_data_volume_template_of_a_root_volume(lab: Lab) -> None:
    node = lab.node
    vm = await stopped_vm(lab)
    image = await ok(
        node,
        "CreateDataVolumeTemplateFromVolume",
        volumeUuid=vm["rootVolumeUuid"],
        name="data",
        backupStorageUuids=[(await ok(node, "QueryBackupStorage"))[0]["uuid"]],
    )
    assert image["status"] == "Ready" and image["mediaType"] == "DataVolumeTemplate"
    [ref] = image["backupStorageRefs"]
    assert "backing-filename" not in qemu_info(ref["installPath"])
    # Made Ready, it is deleted like any image (files and rows).
    await ok(node, "UpdateGlobalConfig", category="image", name="deletionPolicy", value="Direct")
    await ok(node, "DeleteImage", uuid=image["uuid"])
    assert not Path(ref["installPath"]).exists()


async def test_refusals_change_nothing(lab: Lab) -> None:
    node = lab.node
    running = await ok(
        node,
        "CreateVmInstance",
        name="busy",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )
    before = (await images_state(node), bs_files(lab))
    description = await fails(
        node,
        "CreateRootVolumeTemplateFromRootVolume",
        "SYS.1009",
        rootVolumeUuid=running["rootVolumeUuid"],
        name="nope",
    )
    assert "busy is Running; stop it first" in description, description
    description = await fails(
        node,
        "CreateDataVolumeTemplateFromVolume",
        "SYS.1009",
        volumeUuid=running["rootVolumeUuid"],
        name="nope",
    )
    assert "stop it first" in description, description
    assert (await images_state(node), bs_files(lab)) == before
    # Stopped, it goes.
    await ok(node, "StopVmInstance", uuid=running["uuid"])
    await ok(
        node,
        "CreateRootVolumeTemplateFromRootVolume",
        rootVolumeUuid=running["rootVolumeUuid"],
        name="yes",
        platform="Other",
    )


async def test_a_fault_anywhere_in_the_chain_leaves_nothing(lab: Lab) -> None:
    node = lab.node
    vm = await stopped_vm(lab)
    before = (await images_state(node), bs_files(lab))
    for position in range(len(DEFAULT_FLOWS) + 1):
        faulty = [*DEFAULT_FLOWS[:position], FAIL, *DEFAULT_FLOWS[position:]]
        node.chains.build_all({"createTemplateFromVolume": faulty}, [])
        reply = await node.call(
            "CreateRootVolumeTemplateFromRootVolume",
            {"rootVolumeUuid": vm["rootVolumeUuid"], "name": f"doomed-{position}"},
        )
        assert not reply.success, f"fault at {position} did not fail the call"
        assert "injected fault" in str(reply.error)
        assert (await images_state(node), bs_files(lab)) == before, f"leak at {position}"
    node.chains.build_all({}, [])
    assert (await ok(node, "StartVmInstance", uuid=vm["uuid"]))["state"] == "Running"

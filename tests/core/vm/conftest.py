"""A simulator lab for VM tests: one host, local storage, an offering and an image."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.kernel.node import ManagementNode
from tests.conftest import ok

MiB = 1024**2
GiB = 1024**3


@dataclass
class Lab:
    node: ManagementNode
    host: dict
    offering: dict
    image_uuid: str
    primary_url: Path


async def make_lab(node: ManagementNode, root: Path, cpu: int = 4, memory: int = 8 * GiB) -> Lab:
    zone = await ok(node, "CreateZone", name="z")
    cluster = await ok(
        node, "CreateCluster", name="c", zoneUuid=zone["uuid"], hypervisorType="Simulator"
    )
    host = await ok(
        node,
        "AddSimulatorHost",
        name="sim",
        clusterUuid=cluster["uuid"],
        cpuNum=cpu,
        memorySize=memory,
    )
    bs = await ok(
        node, "AddLocalBackupStorage", name="bs", zoneUuid=zone["uuid"], url=str(root / "bs")
    )
    ps = await ok(
        node, "AddLocalPrimaryStorage", name="ps", zoneUuid=zone["uuid"], url=str(root / "ps")
    )
    await ok(
        node,
        "AttachPrimaryStorageToCluster",
        primaryStorageUuid=ps["uuid"],
        clusterUuid=cluster["uuid"],
    )
    offering = await ok(
        node, "CreateInstanceOffering", name="small", cpuNum=1, memorySize=512 * MiB
    )
    image_path = root / "bs" / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image_path), "64M"], check=True)

    def add_image(session) -> str:  # type: ignore[no-untyped-def]
        image = ImageVO(
            name="base",
            url=str(image_path),
            status="Ready",
            format="qcow2",
            size=64 * MiB,
            actual_size=image_path.stat().st_size,
        )
        session.add(image)
        session.flush()
        session.add(
            ImageBackupStorageRefVO(
                image_uuid=image.uuid,
                backup_storage_uuid=bs["uuid"],
                install_path=str(image_path),
                status="Ready",
            )
        )
        return image.uuid

    image_uuid = await node.db.run(add_image)  # type: ignore[union-attr]
    return Lab(node, host, offering, image_uuid, root / "ps")


@pytest.fixture
async def lab(node: ManagementNode, tmp_path: Path) -> Lab:
    return await make_lab(node, tmp_path)

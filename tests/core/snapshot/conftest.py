"""A simulator lab for snapshot tests, shared by a module: one node, one host, local
storage, an image; VMs whose root volumes are snapshotted, with real qcow2 files (the
simulator's agent makes them with qemu-img).  The simulator runs no QEMU, so the tests
write and read a volume's data with ``qemu-io`` on its files (offline: the VM is stopped),
each region ``i`` (``i`` MiB, 64 KiB long) filled with one byte."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import select

from core.kernel import properties
from core.kernel.node import ManagementNode
from core.snapshot.models import VolumeSnapshotVO
from core.volume.models import VolumeVO
from tests.conftest import ok, write_config
from tests.core.vm.conftest import Lab, make_lab

REGIONS = 6
Content = dict[int, int]
"""Region -> byte (a region not named reads zeros)."""


def qemu_io(path: str, *commands: str, read_only: bool = False) -> str:
    args = ["qemu-io", "-f", "qcow2", *(["-r"] if read_only else [])]
    for command in commands:
        args += ["-c", command]
    done = subprocess.run([*args, path], capture_output=True, text=True, check=True)
    return done.stdout + done.stderr


def write(path: str, region: int, byte: int) -> None:
    out = qemu_io(path, f"write -P {byte:#04x} {region}M 64k")
    assert "wrote" in out, out


def reads(path: str, content: Content) -> bool:
    """Whether the file reads ``content`` in every region."""
    commands = [f"read -P {content.get(i, 0):#04x} {i}M 64k" for i in range(REGIONS)]
    out = qemu_io(path, *commands, read_only=True)
    return "verification failed" not in out.lower() and out.count("read ") == REGIONS


def backing_of(path: str) -> str:
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", path],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = json.loads(info.stdout)
    return str(found.get("full-backing-filename") or found.get("backing-filename") or "")


def check_image(path: str) -> None:
    done = subprocess.run(["qemu-img", "check", "-q", path], capture_output=True, text=True)
    assert done.returncode == 0, f"qemu-img check {path}: {done.stdout}{done.stderr}"


@dataclass
class SnapLab:
    lab: Lab
    expected: dict[str, Content] = field(default_factory=dict)
    """What each snapshot (by uuid) and each volume's active file (by volume uuid) reads."""

    @property
    def node(self) -> ManagementNode:
        return self.lab.node

    async def stopped_vm(self, name: str) -> tuple[dict[str, Any], str]:
        """A new stopped VM and its root volume's uuid (its active file reads zeros)."""
        vm = await ok(self.node, "CreateVmInstance", name=name,
                      instanceOfferingUuid=self.lab.offering["uuid"],
                      imageUuid=self.lab.image_uuid, strategy="CreateStopped")  # fmt: skip
        self.expected[vm["rootVolumeUuid"]] = {}
        return vm, vm["rootVolumeUuid"]

    async def volume(self, uuid: str) -> dict[str, Any]:
        def read(session: Any) -> dict[str, Any]:
            row = session.get(VolumeVO, uuid)
            assert row is not None
            return dict(row.to_inventory())

        return await self.node.db.run(read)  # type: ignore[union-attr,no-any-return]

    async def rows(self, volume_uuid: str | None = None) -> list[dict[str, Any]]:
        def read(session: Any) -> list[dict[str, Any]]:
            query = select(VolumeSnapshotVO).order_by(VolumeSnapshotVO.create_date)
            if volume_uuid is not None:
                query = query.where(VolumeSnapshotVO.volume_uuid == volume_uuid)
            return [r.to_inventory() for r in session.scalars(query)]

        return await self.node.db.run(read)  # type: ignore[union-attr,no-any-return]

    async def write(self, volume_uuid: str, region: int, byte: int) -> None:
        """Write into the volume's active file (no VM runs on it)."""
        write((await self.volume(volume_uuid))["installPath"], region, byte)
        self.expected[volume_uuid] = {**self.expected[volume_uuid], region: byte}

    async def snapshot(self, volume_uuid: str, name: str) -> dict[str, Any]:
        snap = await ok(self.node, "CreateVolumeSnapshot", volumeUuid=volume_uuid, name=name)
        self.expected[snap["uuid"]] = dict(self.expected[volume_uuid])
        return snap  # type: ignore[no-any-return]

    async def revert(self, snapshot_uuid: str) -> None:
        snap = await ok(self.node, "RevertVolumeFromSnapshot", uuid=snapshot_uuid)
        self.expected[snap["volumeUuid"]] = dict(self.expected[snapshot_uuid])

    async def delete(self, snapshot_uuid: str) -> None:
        await ok(self.node, "DeleteVolumeSnapshot", uuid=snapshot_uuid)
        self.expected.pop(snapshot_uuid)

    async def capacity(self) -> int:
        """The primary storage's free room plus what the snapshots hold: constant while
        no VM is made or expunged."""
        [ps] = await ok(self.node, "QueryPrimaryStorage")
        return int(ps["availableCapacity"]) + sum(r["size"] for r in await self.rows())

    async def verify(self, volume_uuid: str) -> None:
        """The database and the disk agree, and every file reads what it should."""
        volume = await self.volume(volume_uuid)
        rows = await self.rows(volume_uuid)
        by_uuid = {r["uuid"]: r for r in rows}
        files = {r["installPath"] for r in rows}
        assert all(r["status"] == "Ready" for r in rows), rows
        latest = [r for r in rows if r["latest"]]
        assert len(latest) <= 1, latest
        active = volume["installPath"]
        # Chains: a snapshot stands on its parent's file, the active file on the latest's.
        for row in rows:
            parent = by_uuid.get(row["parentUuid"]) if row["parentUuid"] else None
            backing = backing_of(row["installPath"])
            if parent is not None:
                assert backing == parent["installPath"], (row, backing)
            else:
                assert backing not in files, (row, backing)
                assert row["parentUuid"] is None, row
        backing = backing_of(active)
        if latest:
            assert backing == latest[0]["installPath"], (latest, backing)
        else:
            assert backing not in files, backing
        # Files: exactly the active file and the snapshots' in the volume's directory.
        directory = Path(active).parent
        assert {str(p) for p in directory.iterdir()} == files | {active}
        # Content.
        for row in rows:
            check_image(row["installPath"])
            assert reads(row["installPath"], self.expected[row["uuid"]]), row["name"]
        check_image(active)
        assert reads(active, self.expected[volume_uuid]), "the active file"


def lab_node(config: Path) -> ManagementNode:
    return ManagementNode(properties.load(config, env={}), serve_socket=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def snap_lab(tmp_path_factory: Any) -> AsyncIterator[SnapLab]:
    root = tmp_path_factory.mktemp("snapshots")
    node = lab_node(write_config(root))
    await node.start()
    try:
        yield SnapLab(await make_lab(node, root))
    finally:
        await node.stop()

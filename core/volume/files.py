"""Where a data volume's files go, what a VM's disks are for the host, and how a volume
leaves for good (its files, its snapshots' files, its rows, its room on the storage)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from core.kernel.errors import argerr
from core.kernel.rest import AgentClient
from core.offering.models import DiskOfferingVO
from core.snapshot.models import VolumeSnapshotVO
from core.storage.capacity import return_primary_capacity
from core.storage.models import PrimaryStorageVO
from core.volume.models import VolumeVO

DATA = "Data"
ROOT = "Root"


def data_volume_path(storage_url: str, volume_uuid: str) -> str:
    """A data volume's first file: in a directory of its own (``vol-<uuid>``), beside
    which its later files (snapshots' new active files) go."""
    return f"{storage_url}/datavolumes/vol-{volume_uuid}/{volume_uuid}.qcow2"


def data_volumes_of(session: Session, vm_uuid: str) -> list[kvm.DataVolumeTO]:
    """The data volumes attached to a VM, as its disks (contracts.kvm.StartVmCmd)."""
    rows = session.scalars(
        select(VolumeVO)
        .where(VolumeVO.vm_instance_uuid == vm_uuid, VolumeVO.type == DATA)
        .order_by(VolumeVO.device_id)
    )
    return [
        kvm.DataVolumeTO(
            uuid=v.uuid,
            install_path=v.install_path or "",
            format="raw" if v.format == "raw" else "qcow2",
            device_id=v.device_id,
        )
        for v in rows
        if v.install_path and v.status == "Ready"
    ]


def free_device_id(session: Session, vm_uuid: str, max_num: int) -> int | None:
    """The lowest data volume slot (1 is ``vdb``) free on a VM, or None if it has
    ``max_num`` data volumes already."""
    used = set(
        session.scalars(
            select(VolumeVO.device_id).where(
                VolumeVO.vm_instance_uuid == vm_uuid, VolumeVO.type == DATA
            )
        )
    )
    if len(used) >= max_num:
        return None
    return next(i for i in range(1, kvm.MAX_DATA_VOLUMES + 1) if i not in used)


def volume_files(session: Session, volume_uuid: str) -> list[str]:
    """A volume's files in the order they can go: the active file first, then its
    snapshots' files, each after every file that stands on it (newest first)."""
    volume = session.get(VolumeVO, volume_uuid)
    snapshots = list(
        session.scalars(select(VolumeSnapshotVO).where(VolumeSnapshotVO.volume_uuid == volume_uuid))
    )
    children: dict[str | None, list[VolumeSnapshotVO]] = {}
    for snapshot in snapshots:
        children.setdefault(snapshot.parent_uuid, []).append(snapshot)
    ordered: list[str] = []

    def after_children(snapshot: VolumeSnapshotVO) -> None:
        for child in children.get(snapshot.uuid, []):
            after_children(child)
        ordered.append(snapshot.install_path)

    for root in children.get(None, []):
        after_children(root)
    known = {s.uuid for s in snapshots}
    for parent, orphans in children.items():  # a parent row gone: keep them anyway
        if parent is not None and parent not in known:
            for snapshot in orphans:
                after_children(snapshot)
    active = [volume.install_path] if volume is not None and volume.install_path else []
    return active + ordered


async def expunge_volume(node: Any, agent: AgentClient, volume_uuid: str) -> None:
    """Delete a volume's files (the active one, then its snapshots', newest first), then
    its snapshots' rows and its own, and give their room back to the primary storage.

    Idempotent (a file already gone is fine), so an expunge cut short runs again."""

    def read(session: Session) -> tuple[list[str], str]:
        volume = session.get(VolumeVO, volume_uuid)
        storage = (
            session.get(PrimaryStorageVO, volume.primary_storage_uuid)
            if volume is not None and volume.primary_storage_uuid
            else None
        )
        return volume_files(session, volume_uuid), storage.url if storage else ""

    files, storage_path = await node.db.run(read)
    for path in files:
        await agent.send(kvm.DeleteVolumeCmd(install_path=path, storage_path=storage_path))

    def forget(session: Session) -> None:
        volume = session.get(VolumeVO, volume_uuid)
        room: dict[str, int] = {}
        for snapshot in session.scalars(
            select(VolumeSnapshotVO).where(VolumeSnapshotVO.volume_uuid == volume_uuid)
        ):
            room[snapshot.primary_storage_uuid] = room.get(snapshot.primary_storage_uuid, 0)
            room[snapshot.primary_storage_uuid] += snapshot.size
            session.delete(snapshot)
        if volume is not None:
            if volume.primary_storage_uuid:
                room[volume.primary_storage_uuid] = (
                    room.get(volume.primary_storage_uuid, 0) + volume.size
                )
            session.delete(volume)
        for storage_uuid, size in room.items():
            if session.get(PrimaryStorageVO, storage_uuid) is not None:
                return_primary_capacity(session, storage_uuid, size)

    await node.db.run(forget)


def data_disk_sizes(session: Session, offering_uuids: list[str], max_num: int) -> list[int]:
    """The sizes of the data disks a new VM is to get (one per disk offering, in order)."""
    if len(offering_uuids) > max_num:
        raise argerr(
            f"{len(offering_uuids)} data disks asked for; a VM may have {max_num} "
            "(kvm.dataVolume.maxNum)"
        )
    sizes = []
    for uuid in offering_uuids:
        offering = session.get(DiskOfferingVO, uuid)
        if offering is None:
            raise argerr(f"disk offering {uuid} does not exist")
        sizes.append(offering.disk_size)
    return sizes

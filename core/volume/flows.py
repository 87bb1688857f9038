"""The chains of data volumes: create, attach, detach, expunge.

Create and attach are durable (rolled back after a crash from the journal): create
writes the row, its path and the room it took on the primary storage in one transaction
(the volume's uuid is chosen before the chain), so a rollback finds all of it by that
uuid; attach writes the VM and slot on the row, then hot-plugs (a running VM), and its
rollbacks unplug and clear the row, each finding what to undo by the volume's uuid.
Detach and expunge are resumable (run on after a crash): each step is idempotent and
there is no way back from a half-unplugged disk or a half-deleted chain.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow, checkpointer
from core.kernel.flow_data import FlowData
from core.storage.capacity import reserve_primary_capacity, return_primary_capacity
from core.storage.image_cache import image_cache
from core.storage.models import BackupStorageVO, PrimaryStorageVO
from core.vm.models import VmInstanceVO
from core.volume.files import DATA, data_volume_path, expunge_volume
from core.volume.models import VolumeVO
from core.volume.spi import LIVE_STATES, volume_agent

CREATE, ATTACH, DETACH, EXPUNGE = (
    "createDataVolume",
    "attachDataVolume",
    "detachDataVolume",
    "expungeDataVolume",
)


class CreateDataVolumeData(FlowData):
    """A data volume being made: empty of ``size`` bytes, or on an image's cache."""

    volume_uuid: str
    name: str
    description: str | None = None
    size: int = 0
    """Bytes (for an image: its virtual size)."""
    disk_offering_uuid: str | None = None
    image_uuid: str | None = None
    primary_storage_uuid: str | None = None
    """Asked for by the caller, or None (the storage with the most room)."""
    reserved: dict[str, Any] | None = None
    """``{storage, url, zone, size, path}`` once the row and its room exist."""


class DataVolumeAllocateFlow(Flow):
    """The row (Creating) and its room on a primary storage, in one transaction."""

    checkpointed = True

    async def run(self, data: CreateDataVolumeData) -> None:  # type: ignore[override]
        save = checkpointer()

        def allocate(session: Session) -> None:
            query = select(PrimaryStorageVO).where(PrimaryStorageVO.state == "Enabled")
            if data.primary_storage_uuid:
                query = query.where(PrimaryStorageVO.uuid == data.primary_storage_uuid)
            storages = list(
                session.scalars(query.order_by(PrimaryStorageVO.available_capacity.desc()))
            )
            if not storages:
                raise operr("no Enabled primary storage to put the volume on")
            for storage in storages:
                if reserve_primary_capacity(session, storage.uuid, data.size):
                    break
            else:
                raise operr(f"no primary storage has {data.size} bytes free for volume {data.name}")
            path = data_volume_path(storage.url, data.volume_uuid)
            session.add(
                VolumeVO(
                    uuid=data.volume_uuid,
                    name=data.name,
                    description=data.description,
                    type=DATA,
                    primary_storage_uuid=storage.uuid,
                    root_image_uuid=data.image_uuid,
                    disk_offering_uuid=data.disk_offering_uuid,
                    install_path=path,
                    size=data.size,
                    status="Creating",
                )
            )
            session.flush()
            data.reserved = {
                "storage": storage.uuid,
                "url": storage.url,
                "zone": storage.zone_uuid,
                "size": data.size,
                "path": path,
            }
            save(session.connection())

        await data.node.db.run(allocate)

    async def rollback(self, data: CreateDataVolumeData) -> None:  # type: ignore[override]
        reserved = data.reserved
        if reserved is None:
            return
        save = checkpointer()

        def forget(session: Session) -> None:
            row = session.get(VolumeVO, data.volume_uuid)
            if row is not None:
                session.delete(row)
            return_primary_capacity(session, reserved["storage"], reserved["size"])
            data.reserved = None
            save(session.connection())

        await data.node.db.run(forget)


class DataVolumeInstantiateFlow(Flow):
    """The file: an empty qcow2, or an overlay on the image's cache (copied there once)."""

    async def run(self, data: CreateDataVolumeData) -> None:  # type: ignore[override]
        reserved = data.reserved
        assert reserved is not None
        node = data.node
        agent = await volume_agent(node, None, reserved["zone"])
        backing = ""
        image_uuid = data.image_uuid
        if image_uuid:
            source = await node.db.run(lambda s: _image_copy(s, image_uuid, reserved["zone"]))
            backing = await image_cache(
                node,
                agent,
                {"uuid": reserved["storage"], "url": reserved["url"]},
                source,
                image_uuid,
                task_uuid=data.volume_uuid,
            )
        answer = await agent.send(
            kvm.CreateVolumeCmd(
                install_path=reserved["path"],
                backing_file=backing,
                size=0 if backing else data.size,
            ),
            timeout=120,
        )

        def ready(session: Session) -> None:
            row = session.get(VolumeVO, data.volume_uuid)
            assert row is not None
            row.status, row.actual_size = "Ready", answer.actual_size

        await node.db.run(ready)

    async def rollback(self, data: CreateDataVolumeData) -> None:  # type: ignore[override]
        reserved = data.reserved
        if reserved is None:
            return
        agent = await volume_agent(data.node, None, reserved["zone"])
        # Deleting a file that was never made (or is gone already) succeeds.
        await agent.send(
            kvm.DeleteVolumeCmd(install_path=reserved["path"], storage_path=reserved["url"])
        )


def _image_copy(session: Session, image_uuid: str, zone_uuid: str) -> str:
    """The image's file on a backup storage of the zone (it must be Ready there)."""
    image = session.get(ImageVO, image_uuid)
    if image is None or image.status != "Ready":
        raise operr(f"image {image_uuid} is not Ready")
    path = session.scalar(
        select(ImageBackupStorageRefVO.install_path)
        .join(BackupStorageVO, BackupStorageVO.uuid == ImageBackupStorageRefVO.backup_storage_uuid)
        .where(
            ImageBackupStorageRefVO.image_uuid == image_uuid,
            ImageBackupStorageRefVO.status == "Ready",
            BackupStorageVO.zone_uuid == zone_uuid,
        )
    )
    if path is None:
        raise operr(f"no backup storage in the primary storage's zone holds image {image.name}")
    return path


class VolumeVmData(FlowData):
    """A data volume being attached to, or detached from, a VM."""

    volume_uuid: str
    vm_uuid: str
    device_id: int = 0
    """Its slot on the VM (1 is ``vdb``), chosen before the chain."""


async def _disk(data: VolumeVmData) -> tuple[Any, kvm.DataVolumeTO] | None:
    """The VM's host agent and the volume as its disk, if the VM's domain runs."""
    node = data.node

    def read(session: Session) -> tuple[dict[str, Any], kvm.DataVolumeTO] | None:
        vm = session.get(VmInstanceVO, data.vm_uuid)
        volume = session.get(VolumeVO, data.volume_uuid)
        if vm is None or volume is None or vm.state not in LIVE_STATES or not vm.host_uuid:
            return None
        disk = kvm.DataVolumeTO(
            uuid=volume.uuid,
            install_path=volume.install_path or "",
            format="raw" if volume.format == "raw" else "qcow2",
            device_id=data.device_id,
        )
        return vm.to_inventory(), disk

    found = await node.db.run(read)
    if found is None:
        return None
    vm, disk = found
    return await volume_agent(node, vm["hostUuid"], ""), disk


class DataVolumeAttachRowFlow(Flow):
    """The row names the VM and the slot (so a start from now on plugs it)."""

    async def run(self, data: VolumeVmData) -> None:  # type: ignore[override]
        def attach(session: Session) -> None:
            row = session.get(VolumeVO, data.volume_uuid)
            assert row is not None
            row.vm_instance_uuid, row.device_id = data.vm_uuid, data.device_id

        await data.node.db.run(attach)

    async def rollback(self, data: VolumeVmData) -> None:  # type: ignore[override]
        def detach(session: Session) -> None:
            row = session.get(VolumeVO, data.volume_uuid)
            if row is not None and row.vm_instance_uuid == data.vm_uuid:
                row.vm_instance_uuid, row.device_id = None, 0

        await data.node.db.run(detach)


class DataVolumeAttachOnHypervisorFlow(Flow):
    """Hot-plug into a running VM (a stopped one gets it at its next start)."""

    async def run(self, data: VolumeVmData) -> None:  # type: ignore[override]
        found = await _disk(data)
        if found is not None:
            agent, disk = found
            await agent.send(kvm.AttachVolumeCmd(vm_uuid=data.vm_uuid, volume=disk), timeout=120)

    async def rollback(self, data: VolumeVmData) -> None:  # type: ignore[override]
        found = await _disk(data)
        if found is not None:
            agent, disk = found
            await agent.send(kvm.DetachVolumeCmd(vm_uuid=data.vm_uuid, volume=disk), timeout=120)


class DataVolumeDetachOnHypervisorFlow(NoRollbackFlow):
    """Unplug from a running VM (the guest must let it go; if not, nothing changes)."""

    async def run(self, data: VolumeVmData) -> None:  # type: ignore[override]
        found = await _disk(data)
        if found is not None:
            agent, disk = found
            await agent.send(kvm.DetachVolumeCmd(vm_uuid=data.vm_uuid, volume=disk), timeout=120)


class DataVolumeDetachRowFlow(NoRollbackFlow):
    async def run(self, data: VolumeVmData) -> None:  # type: ignore[override]
        def detach(session: Session) -> None:
            row = session.get(VolumeVO, data.volume_uuid)
            if row is not None and row.vm_instance_uuid == data.vm_uuid:
                row.vm_instance_uuid, row.device_id = None, 0
                row.last_vm_instance_uuid = data.vm_uuid

        await data.node.db.run(detach)


class VolumeData(FlowData):
    volume_uuid: str


class DataVolumeExpungeFlow(NoRollbackFlow):
    """Its files (snapshots' too), rows and room on the storage go."""

    async def run(self, data: VolumeData) -> None:  # type: ignore[override]
        node = data.node

        def zone(session: Session) -> str | None:
            volume = session.get(VolumeVO, data.volume_uuid)
            if volume is None or not volume.primary_storage_uuid:
                return None
            storage = session.get(PrimaryStorageVO, volume.primary_storage_uuid)
            return storage.zone_uuid if storage else None

        zone_uuid = await node.db.run(zone)
        if zone_uuid is None:  # gone already (a repeat), or never on a storage
            await node.db.run(lambda s: _delete_row(s, data.volume_uuid))
            return
        await expunge_volume(node, await volume_agent(node, None, zone_uuid), data.volume_uuid)


def _delete_row(session: Session, volume_uuid: str) -> None:
    row = session.get(VolumeVO, volume_uuid)
    if row is not None:
        session.delete(row)


def _paths(*classes: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__name__}" for cls in classes]


CHAINS: dict[str, tuple[list[str], type[FlowData], bool]] = {
    CREATE: (
        _paths(DataVolumeAllocateFlow, DataVolumeInstantiateFlow),
        CreateDataVolumeData,
        False,
    ),
    ATTACH: (
        _paths(DataVolumeAttachRowFlow, DataVolumeAttachOnHypervisorFlow),
        VolumeVmData,
        False,
    ),
    DETACH: (
        _paths(DataVolumeDetachOnHypervisorFlow, DataVolumeDetachRowFlow),
        VolumeVmData,
        True,
    ),
    EXPUNGE: (_paths(DataVolumeExpungeFlow), VolumeData, True),
}
"""name -> (default flows, data class, resumable)."""

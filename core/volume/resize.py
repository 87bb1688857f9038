"""Growing a volume: ZStack's ``ResizeRootVolume`` and ``ResizeDataVolume``, one durable
chain (``resizeVolume``) run while the volume (and its VM) is held.

1. :class:`VolumeReserveGrowthFlow`: the growth (new size - old size) is reserved on the
   volume's primary storage with one conditional UPDATE (refused when it has not that
   much free), written down with the reservation; the rollback gives it back.
2. :class:`VolumeResizeOnHypervisorFlow`: the host grows the file (``VOLUME_RESIZE``: live
   through libvirt while the VM runs, else ``qemu-img resize``), then the volume's size
   is recorded, written down with it.  A grown file cannot be shrunk back: when a later
   failure unwinds the chain, its rollback keeps the new size and the capacity it holds
   (the rows then agree with the file) instead of giving the growth back.

The chain is resumable: a node killed in it runs it on at the next start (the
reservation is not taken twice: it is written down with it; growing to the size the file
already has succeeds), since a resize the host may have done cannot be taken back.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from contracts import kvm
from core.host.capacity import approximate_size
from core.kernel.errors import OperationError, argerr, operr, stateerr
from core.kernel.flow import Flow, checkpointer
from core.kernel.flow_data import FlowData
from core.kernel.operation import name_subject
from core.storage.capacity import reserve_primary_capacity, return_primary_capacity
from core.storage.models import PrimaryStorageVO
from core.volume.models import VolumeVO
from core.volume.spi import VolumeSite, volume_agent, volume_locked

log = logging.getLogger(__name__)

CHAIN = "resizeVolume"
RESIZABLE_VM_STATES = frozenset({"Running", "Paused", "Stopped"})
"""States of a volume's VM in which it can be grown (live in the first two)."""


class ResizeVolumeData(FlowData):
    """What the resizeVolume flows share."""

    volume_uuid: str
    volume_name: str
    primary_storage_uuid: str
    old_size: int
    size: int
    file_op: dict[str, Any]
    """The contracts.kvm.VolumeFileOp fields naming the volume's active file (and VM)."""
    host_uuid: str | None = None
    """The host of the volume's VM while it has one (a live resize goes there)."""
    zone_uuid: str
    reserved: bool = False
    """The growth is held on the primary storage."""
    resized: bool = False
    """The file has grown and the volume's row says so."""

    @property
    def growth(self) -> int:
        return self.size - self.old_size

    def hosts(self) -> list[str]:
        return [self.host_uuid] if self.host_uuid else []


def describe_size(size: int) -> str:
    return f"{approximate_size(size)} ({size} bytes)"


async def resize_volume(node: Any, volume_uuid: str, size: int, volume_type: str) -> dict[str, Any]:
    """Grow a volume of ``volume_type`` (Root or Data) to ``size`` bytes; its inventory."""
    async with volume_locked(node, volume_uuid) as site:
        volume = site.volume
        name_subject(volume_uuid, volume["name"])
        check_resizable(site, size, volume_type)
        if size == volume["size"]:
            return volume  # already that size: nothing to do
        data = ResizeVolumeData(
            volume_uuid=volume_uuid,
            volume_name=volume["name"],
            primary_storage_uuid=volume["primaryStorageUuid"],
            old_size=volume["size"],
            size=size,
            file_op=site.file_op(),
            host_uuid=site.vm.get("hostUuid") if site.vm is not None and site.live else None,
            zone_uuid=site.zone_uuid,
        ).bind(node)
        outcome = await node.chain(CHAIN).start(data)
        outcome.raise_for_error(f"cannot resize volume {volume['name']}")
        return await node.db.run(  # type: ignore[no-any-return]
            lambda s: s.get(VolumeVO, volume_uuid).to_inventory()
        )


def check_resizable(site: VolumeSite, size: int, volume_type: str) -> None:
    """Refuse what cannot be grown to ``size``, naming why (a smaller size names both)."""
    volume, vm = site.volume, site.vm
    what = f"cannot resize volume {volume['name']}"
    if volume["type"] != volume_type:
        other = "ResizeDataVolume" if volume["type"] == "Data" else "ResizeRootVolume"
        raise argerr(f"{what}: it is a {volume['type']} volume; use {other}")
    if volume["status"] != "Ready" or not volume["installPath"]:
        raise stateerr(f"{what}: it is {volume['status']}", "only a Ready volume grows")
    if vm is not None and vm["state"] not in RESIZABLE_VM_STATES:
        raise stateerr(
            f"{what}: its VM {vm['name']} is {vm['state']}",
            "a volume grows while its VM is Running, Paused or Stopped",
        )
    if size < volume["size"]:
        raise argerr(
            f"{what} to {describe_size(size)}: it is {describe_size(volume['size'])} and a "
            "volume can only grow",
            "a smaller size would cut off the end of the disk",
        )


class VolumeReserveGrowthFlow(Flow):
    """The growth reserved on the volume's primary storage (written down with it)."""

    checkpointed = True

    async def run(self, data: ResizeVolumeData) -> None:  # type: ignore[override]
        if data.reserved:  # resumed after a crash that came after the reservation
            return
        save = checkpointer()

        def reserve(session: Session) -> str | None:
            if reserve_primary_capacity(session, data.primary_storage_uuid, data.growth):
                data.reserved = True
                save(session.connection())
                return None
            storage = session.get(PrimaryStorageVO, data.primary_storage_uuid)
            if storage is None:
                return f"its primary storage {data.primary_storage_uuid} is gone"
            return (
                f"primary storage {storage.name} has {describe_size(storage.available_capacity)}"
                f" free; growing it from {describe_size(data.old_size)} to "
                f"{describe_size(data.size)} needs {describe_size(data.growth)}"
            )

        shortage = await data.node.db.run(reserve)
        if shortage is not None:
            raise operr(f"cannot resize volume {data.volume_name}: {shortage}")

    async def rollback(self, data: ResizeVolumeData) -> None:  # type: ignore[override]
        if not data.reserved:
            return
        save = checkpointer()

        def give_back(session: Session) -> None:
            return_primary_capacity(session, data.primary_storage_uuid, data.growth)
            data.reserved = False
            save(session.connection())

        await data.node.db.run(give_back)


class VolumeResizeOnHypervisorFlow(Flow):
    """The host grows the file; the volume's size recorded (written down with it)."""

    async def run(self, data: ResizeVolumeData) -> None:  # type: ignore[override]
        if data.resized:
            return
        agent = await volume_agent(data.node, data.host_uuid, data.zone_uuid)
        try:
            await agent.send(kvm.ResizeVolumeCmd(**data.file_op, size=data.size), timeout=300)
        except OperationError as exc:
            raise operr(
                f"the host could not grow volume {data.volume_name} to {describe_size(data.size)}",
                cause=exc.error,
            ) from None
        save = checkpointer()

        def record(session: Session) -> None:
            session.execute(
                update(VolumeVO).where(VolumeVO.uuid == data.volume_uuid).values(size=data.size)
            )
            data.resized = True
            save(session.connection())

        await data.node.db.run(record)

    async def rollback(self, data: ResizeVolumeData) -> None:  # type: ignore[override]
        if not data.resized:
            return  # the host refused (it changes nothing then) or was never asked
        # A grown file is not shrunk back (that would cut off what the guest may have
        # written there): the volume keeps its new size, and the growth stays reserved.
        log.warning(
            "volume %s stays grown to %d bytes: a failure after the resize cannot undo it",
            data.volume_name,
            data.size,
        )
        save = checkpointer()

        def keep(session: Session) -> None:
            data.reserved = False  # what VolumeReserveGrowthFlow's rollback would give back
            save(session.connection())

        await data.node.db.run(keep)


DEFAULT_FLOWS = [
    f"{__name__}.{cls.__name__}" for cls in (VolumeReserveGrowthFlow, VolumeResizeOnHypervisorFlow)
]

"""What the volume, snapshot and image services use to work on a volume's files: the
volume held (with its VM's queue), the agent that reaches its files, and how a host
command names them (contracts.kvm.VolumeFileOp).

Locks go volume first, then the VM it is attached to (``Vm-<uuid>``, the queue of the
VM's own operations), so a snapshot never runs beside a start, stop or migration of its
VM.  VM operations never take a volume's queue (they only read which volumes a VM has),
so the order cannot deadlock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import not_found, operr
from core.kernel.rest import AgentClient
from core.snapshot.models import VolumeSnapshotVO
from core.storage.models import PrimaryStorageVO
from core.vm.models import VmInstanceVO
from core.volume.models import VolumeVO

__all__ = [
    "LIVE_STATES",
    "VolumeSite",
    "files_of",
    "read_site",
    "volume_agent",
    "volume_and_vm_locked",
    "volume_locked",
    "volume_signature",
]

LIVE_STATES = frozenset({"Running", "Paused"})
"""States in which a VM's domain holds its volumes' files open (live operations)."""


def volume_signature(volume_uuid: str) -> str:
    """The queue of a volume's operations (an API message's sync signature)."""
    return f"Volume-{volume_uuid}"


@dataclass(frozen=True)
class VolumeSite:
    """A volume as read under its lock: where its files are and what holds them."""

    volume: dict[str, Any]
    """Its inventory."""
    storage_path: str
    """The primary storage directory holding its files."""
    zone_uuid: str
    vm: dict[str, Any] | None
    """The inventory of the VM it is attached to, or None."""

    @property
    def uuid(self) -> str:
        return str(self.volume["uuid"])

    @property
    def live(self) -> bool:
        """Whether a running domain holds its files (operations go through libvirt)."""
        return self.vm is not None and self.vm["state"] in LIVE_STATES

    def file_op(self, install_path: str | None = None) -> dict[str, Any]:
        """The fields of a contracts.kvm.VolumeFileOp on this volume (its active file,
        unless ``install_path`` names another file of its chain)."""
        return {
            "vm_uuid": self.vm["uuid"] if self.vm is not None else "",
            "device_id": self.volume["deviceId"] if self.vm is not None else 0,
            "storage_path": self.storage_path,
            "install_path": install_path or self.volume["installPath"],
        }


def read_site(session: Session, volume_uuid: str) -> VolumeSite:
    """The volume, its primary storage and its VM, as the database has them now."""
    volume = session.get(VolumeVO, volume_uuid)
    if volume is None:
        raise not_found("VolumeVO", volume_uuid)
    storage = (
        session.get(PrimaryStorageVO, volume.primary_storage_uuid)
        if volume.primary_storage_uuid
        else None
    )
    if storage is None:
        raise operr(f"volume {volume.name} is on no primary storage")
    vm = session.get(VmInstanceVO, volume.vm_instance_uuid) if volume.vm_instance_uuid else None
    return VolumeSite(
        volume=volume.to_inventory(),
        storage_path=storage.url,
        zone_uuid=storage.zone_uuid,
        vm=vm.to_inventory() if vm is not None else None,
    )


@asynccontextmanager
async def volume_locked(node: Any, volume_uuid: str) -> AsyncIterator[VolumeSite]:
    """Hold the volume's queue, then its VM's (if it is attached to one); the site is
    read once both are held, so it stays true until the block ends."""
    async with node.bus.hold(volume_signature(volume_uuid)):
        while True:
            site = await node.db.run(lambda s: read_site(s, volume_uuid))
            if site.vm is None:
                yield site
                return
            vm_uuid = site.vm["uuid"]
            async with node.bus.hold(f"Vm-{vm_uuid}"):
                site = await node.db.run(lambda s: read_site(s, volume_uuid))
                if site.vm is not None and site.vm["uuid"] == vm_uuid:
                    yield site
                    return
                if site.vm is None:
                    yield site
                    return
            # attached to another VM meanwhile: hold that one instead


@asynccontextmanager
async def volume_and_vm_locked(node: Any, volume_uuid: str, vm_uuid: str) -> AsyncIterator[None]:
    """Hold the volume's queue, then VM ``vm_uuid``'s (to attach the volume to it)."""
    async with node.bus.hold(volume_signature(volume_uuid)), node.bus.hold(f"Vm-{vm_uuid}"):
        yield


async def volume_agent(node: Any, host_uuid: str | None, zone_uuid: str) -> AgentClient:
    """The agent that works on a volume's files: its VM's host's while the VM has one
    (``host_uuid``: a live operation must go there), else a local host's in the zone of
    the volume's primary storage."""
    from core.host.plugin import HostPlugin

    hosts = node.plugin(HostPlugin)
    client: AgentClient = await (
        hosts.agent_of(host_uuid) if host_uuid else hosts.local_agent(zone_uuid)
    )
    return client


def files_of(session: Session, volume_uuid: str) -> list[str]:
    """Every file of a volume's chains: its active file and its snapshots' files (what
    must not stand on a file about to be deleted: contracts.kvm.DeleteVolumeCmd)."""
    volume = session.get(VolumeVO, volume_uuid)
    files = [volume.install_path] if volume is not None and volume.install_path else []
    files += session.scalars(
        select(VolumeSnapshotVO.install_path).where(VolumeSnapshotVO.volume_uuid == volume_uuid)
    )
    return files

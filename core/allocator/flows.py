"""The host allocator chain (ZStack's HostAllocatorChain), declared as ``hostAllocator``.

Each flow narrows ``data["candidates"]`` (host rows as dicts, best first) for
the VM described by ``data["spec"]``; the first queries the database.  A flow
that leaves no candidate fails with HOST_ALLOCATION.1000 and says which
condition no host met.  Nothing here reserves anything: VmAllocateHostFlow
reserves capacity atomically on the first candidate that still has it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.allocator.extension_points import InstanceOfferingTagAllocatorExtensionPoint
from core.cluster.models import ClusterVO
from core.host.models import HostVO
from core.image.models import ImageBackupStorageRefVO
from core.kernel.errors import ErrorCode, OperationError, operr
from core.kernel.flow import NoRollbackFlow
from core.storage.models import BackupStorageVO, PrimaryStorageClusterRefVO, PrimaryStorageVO
from core.zone.models import ZoneVO

CHAIN = "hostAllocator"
NO_AVAILABLE_HOST = "HOST_ALLOCATION.1000"


def no_host(description: str, details: str = "") -> OperationError:
    return OperationError(ErrorCode(NO_AVAILABLE_HOST, description, details))


def _host_dict(host: HostVO) -> dict[str, Any]:
    return {
        "uuid": host.uuid,
        "name": host.name,
        "zoneUuid": host.zone_uuid,
        "clusterUuid": host.cluster_uuid,
        "hypervisorType": host.hypervisor_type,
        "availableCpuCapacity": host.available_cpu_capacity,
        "availableMemoryCapacity": host.available_memory_capacity,
    }


class _Narrow(NoRollbackFlow):
    """A flow that keeps the candidates ``keep`` accepts, or fails saying why none did."""

    reason = ""

    async def run(self, data: dict[str, Any]) -> None:
        kept = await self.keep(data, data["candidates"])
        if not kept:
            raise no_host(self.reason.format(**data["spec"].describe()))
        data["candidates"] = kept

    async def keep(
        self, data: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        raise NotImplementedError


class HostStateAndHypervisorAllocatorFlow(NoRollbackFlow):
    """Hosts Enabled and Connected, in Enabled zones and clusters (the first query)."""

    async def run(self, data: dict[str, Any]) -> None:
        spec = data["spec"]

        def query(session: Session) -> list[dict[str, Any]]:
            stmt = (
                select(HostVO)
                .join(ClusterVO, ClusterVO.uuid == HostVO.cluster_uuid)
                .join(ZoneVO, ZoneVO.uuid == HostVO.zone_uuid)
                .where(
                    HostVO.state == "Enabled",
                    HostVO.status == "Connected",
                    ClusterVO.state == "Enabled",
                    ZoneVO.state == "Enabled",
                )
                .order_by(HostVO.create_date)
            )
            if spec.hypervisor_type:
                stmt = stmt.where(HostVO.hypervisor_type == spec.hypervisor_type)
            return [_host_dict(h) for h in session.scalars(stmt)]

        data["candidates"] = await data["node"].db.run(query)
        if not data["candidates"]:
            raise no_host("no host is Enabled and Connected in an Enabled zone and cluster")


class HostCapacityAllocatorFlow(_Narrow):
    reason = "no Connected host has {cpu} CPU(s) and {memory} of memory free"

    async def keep(
        self, data: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        spec = data["spec"]
        return [
            h
            for h in candidates
            if h["availableCpuCapacity"] >= spec.cpu_num
            and h["availableMemoryCapacity"] >= spec.memory_size
        ]


class AttachedL2NetworkAllocatorFlow(NoRollbackFlow):
    """Hosts in clusters attached to every L2 network of the VM's L3 networks.

    Until the networking service lands there are no L2 networks to attach: a VM on
    networks is refused with that reason (CreateVmInstance refuses it earlier too).
    """

    def skip(self, data: dict[str, Any]) -> bool:
        return not data["spec"].l3_network_uuids

    async def run(self, data: dict[str, Any]) -> None:
        raise operr("L3 networks are not available yet: the networking service is not installed")


class ImageBackupStorageAllocatorFlow(_Narrow):
    """Hosts in zones whose backup storage holds the image, Ready."""

    reason = "no host is in a zone whose backup storage holds image {image}"

    def skip(self, data: dict[str, Any]) -> bool:
        return data["spec"].image_uuid is None

    async def keep(
        self, data: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        image_uuid = data["spec"].image_uuid

        def zones(session: Session) -> set[str]:
            return set(
                session.scalars(
                    select(BackupStorageVO.zone_uuid)
                    .join(
                        ImageBackupStorageRefVO,
                        ImageBackupStorageRefVO.backup_storage_uuid == BackupStorageVO.uuid,
                    )
                    .where(
                        ImageBackupStorageRefVO.image_uuid == image_uuid,
                        ImageBackupStorageRefVO.status == "Ready",
                        BackupStorageVO.state == "Enabled",
                    )
                )
            )

        ok = await data["node"].db.run(zones)
        return [h for h in candidates if h["zoneUuid"] in ok]


class HostPrimaryStorageAllocatorFlow(_Narrow):
    """Hosts whose cluster reaches Enabled primary storage with room for the root volume."""

    reason = "no host reaches primary storage with {disk} free"

    async def keep(
        self, data: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        need = data["spec"].disk_size

        def clusters(session: Session) -> set[str]:
            return set(
                session.scalars(
                    select(PrimaryStorageClusterRefVO.cluster_uuid)
                    .join(
                        PrimaryStorageVO,
                        PrimaryStorageVO.uuid == PrimaryStorageClusterRefVO.primary_storage_uuid,
                    )
                    .where(
                        PrimaryStorageVO.state == "Enabled",
                        PrimaryStorageVO.status == "Connected",
                        PrimaryStorageVO.available_capacity >= need,
                    )
                )
            )

        ok = await data["node"].db.run(clusters)
        return [h for h in candidates if h["clusterUuid"] in ok]


class DesignatedHostAllocatorFlow(_Narrow):
    """The zone, cluster or host the caller asked for."""

    reason = "the host, cluster or zone asked for ({designated}) cannot take the VM"

    def skip(self, data: dict[str, Any]) -> bool:
        spec = data["spec"]
        return not (spec.host_uuid or spec.cluster_uuid or spec.zone_uuid)

    async def keep(
        self, data: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        spec = data["spec"]
        return [
            h
            for h in candidates
            if (not spec.host_uuid or h["uuid"] == spec.host_uuid)
            and (not spec.cluster_uuid or h["clusterUuid"] == spec.cluster_uuid)
            and (not spec.zone_uuid or h["zoneUuid"] == spec.zone_uuid)
        ]


class AvoidHostAllocatorFlow(_Narrow):
    reason = "every host that could take the VM is on its avoid list"

    def skip(self, data: dict[str, Any]) -> bool:
        return not data["spec"].avoid_host_uuids

    async def keep(
        self, data: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        avoid = set(data["spec"].avoid_host_uuids)
        return [h for h in candidates if h["uuid"] not in avoid]


class TagAllocatorFlow(_Narrow):
    """Every InstanceOfferingTagAllocatorExtensionPoint narrows by the offering's tags."""

    reason = "no host matches the tag rules of the instance offering"

    async def keep(
        self, data: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        for ext in data["node"].registry.extensions(InstanceOfferingTagAllocatorExtensionPoint):
            candidates = await ext.allocate_by_tags(data["spec"], candidates)
        return candidates


class LastHostPreferredAllocatorFlow(NoRollbackFlow):
    """The host the VM last ran on first, if it is still a candidate."""

    def skip(self, data: dict[str, Any]) -> bool:
        return data["spec"].last_host_uuid is None

    async def run(self, data: dict[str, Any]) -> None:
        last = data["spec"].last_host_uuid
        data["candidates"].sort(key=lambda h: h["uuid"] != last)


DEFAULT_FLOWS = [
    f"{__name__}.{cls.__name__}"
    for cls in (
        HostStateAndHypervisorAllocatorFlow,
        HostCapacityAllocatorFlow,
        AttachedL2NetworkAllocatorFlow,
        ImageBackupStorageAllocatorFlow,
        HostPrimaryStorageAllocatorFlow,
        DesignatedHostAllocatorFlow,
        AvoidHostAllocatorFlow,
        TagAllocatorFlow,
        LastHostPreferredAllocatorFlow,
    )
]

"""The host allocator chain (ZStack's HostAllocatorChain), declared as ``hostAllocator``.

It runs over :class:`HostAllocationData` (nested in ``createVm``, over that chain's data,
a subclass).  Each flow narrows ``data.candidates`` (host rows as dicts, best first) for
the VM described by ``data.spec``; the first queries the database.  A flow
that leaves no candidate fails with HOST_ALLOCATION.1000 and says which
condition no host met.  Nothing here reserves anything: VmAllocateHostFlow
reserves capacity atomically on the first candidate that still has it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from core.allocator.extension_points import InstanceOfferingTagAllocatorExtensionPoint
from core.appliance.models import ApplianceVmVO
from core.cluster.models import ClusterVO
from core.host.capacity import reservation_shortage, reserved_capacity
from core.host.models import HostVO
from core.image.models import ImageBackupStorageRefVO
from core.kernel.errors import ErrorCode, OperationError
from core.kernel.flow import NoRollbackFlow
from core.kernel.flow_data import FlowData
from core.network.l2.models import L2NetworkClusterRefVO, L2NetworkVO
from core.network.l3.models import L3NetworkVO
from core.storage.models import BackupStorageVO, PrimaryStorageClusterRefVO, PrimaryStorageVO
from core.vm.spec import VmInstanceSpec
from core.zone.models import ZoneVO

# Tables, for Core statements on hot paths (see Base.inventory_columns).
_hosts = HostVO.__table__
_clusters = ClusterVO.__table__
_zones = ZoneVO.__table__
_backup_storages = BackupStorageVO.__table__
_image_copies = ImageBackupStorageRefVO.__table__
_ps_clusters = PrimaryStorageClusterRefVO.__table__
_primary_storages = PrimaryStorageVO.__table__
_l2s = L2NetworkVO.__table__
_l2_clusters = L2NetworkClusterRefVO.__table__
_l3s = L3NetworkVO.__table__
_appliances = ApplianceVmVO.__table__

CHAIN = "hostAllocator"
NO_AVAILABLE_HOST = "HOST_ALLOCATION.1000"


class HostAllocationData(FlowData):
    """What the allocator reads (the VM) and narrows (the candidates)."""

    spec: VmInstanceSpec
    candidates: list[dict[str, Any]] = []
    """Host rows (``uuid``, ``name``, ``zoneUuid``, ``clusterUuid``, ``hypervisorType``,
    ``acceleration``, available capacities), best first."""


def no_host(description: str, details: str = "") -> OperationError:
    return OperationError(ErrorCode(NO_AVAILABLE_HOST, description, details))


# The allocator's reads run for every VM created, so they are built once and select
# plain columns (no ORM objects); the values are bound at each run.
_CANDIDATE_COLUMNS = {
    "uuid": _hosts.c.uuid,
    "name": _hosts.c.name,
    "zoneUuid": _hosts.c.zone_uuid,
    "clusterUuid": _hosts.c.cluster_uuid,
    "hypervisorType": _hosts.c.hypervisor_type,
    "acceleration": _hosts.c.acceleration,
    "availableCpuCapacity": _hosts.c.available_cpu_capacity,
    "availableMemoryCapacity": _hosts.c.available_memory_capacity,
}
_CANDIDATES = (
    select(*_CANDIDATE_COLUMNS.values())
    .join(_clusters, _clusters.c.uuid == _hosts.c.cluster_uuid)
    .join(_zones, _zones.c.uuid == _hosts.c.zone_uuid)
    .where(
        _hosts.c.state == "Enabled",
        _hosts.c.status == "Connected",
        _clusters.c.state == "Enabled",
        _zones.c.state == "Enabled",
    )
    .order_by(_hosts.c.create_date)
)
_CANDIDATES_OF_TYPE = _CANDIDATES.where(_hosts.c.hypervisor_type == bindparam("hypervisor_type"))
_ZONES_WITH_IMAGE = (
    select(_backup_storages.c.zone_uuid)
    .join(
        _image_copies,
        _image_copies.c.backup_storage_uuid == _backup_storages.c.uuid,
    )
    .where(
        _image_copies.c.image_uuid == bindparam("image_uuid"),
        _image_copies.c.status == "Ready",
        _backup_storages.c.state == "Enabled",
    )
)
_CLUSTERS_WITH_ROOM = (
    select(_ps_clusters.c.cluster_uuid)
    .join(
        _primary_storages,
        _primary_storages.c.uuid == _ps_clusters.c.primary_storage_uuid,
    )
    .where(
        _primary_storages.c.state == "Enabled",
        _primary_storages.c.status == "Connected",
        _primary_storages.c.available_capacity >= bindparam("need"),
    )
)


class _Narrow(NoRollbackFlow):
    """A flow that keeps the candidates ``keep`` accepts, or fails saying why none did."""

    reason = ""

    async def run(self, data: HostAllocationData) -> None:
        kept = await self.keep(data, data.candidates)
        if not kept:
            raise no_host(self.reason.format(**data.spec.describe()))
        data.candidates = kept

    async def keep(
        self, data: HostAllocationData, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        raise NotImplementedError


class HostStateAndHypervisorAllocatorFlow(NoRollbackFlow):
    """Hosts Enabled and Connected, in Enabled zones and clusters (the first query)."""

    async def run(self, data: HostAllocationData) -> None:
        spec = data.spec

        def query(session: Connection) -> list[dict[str, Any]]:
            if spec.hypervisor_type:
                rows = session.execute(
                    _CANDIDATES_OF_TYPE, {"hypervisor_type": spec.hypervisor_type}
                )
            else:
                rows = session.execute(_CANDIDATES)
            return [dict(zip(_CANDIDATE_COLUMNS, row, strict=True)) for row in rows]

        data.candidates = await data.node.db.run_core(query)
        if not data.candidates:
            raise no_host("no host is Enabled and Connected in an Enabled zone and cluster")


class HostCapacityAllocatorFlow(_Narrow):
    """Hosts with the VM's CPUs and memory free.  When none has, and a host's reserved
    capacity (kvm.reservedMemory…) is what is short, the refusal says so."""

    reason = "no Connected host has {cpu} CPU(s) and {memory} of memory free"

    async def keep(
        self, data: HostAllocationData, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        spec = data.spec
        kept = [
            h
            for h in candidates
            if h["availableCpuCapacity"] >= spec.cpu_num
            and h["availableMemoryCapacity"] >= spec.memory_size
        ]
        if not kept:
            notes = shortage_notes(data.node, candidates, spec.cpu_num, spec.memory_size)
            if notes:
                raise no_host(f"{self.reason.format(**spec.describe())}: {notes}")
        return kept


def shortage_notes(
    node: Any, hosts: list[dict[str, Any]], cpu: int, memory: int, most: int = 3
) -> str:
    """Of ``hosts`` (allocator candidates), those short of room only because of what their
    reservation holds back, each in a sentence (the first ``most``)."""
    notes = []
    for host in hosts:
        note = reservation_shortage(
            host, reserved_capacity(node, host["hypervisorType"]), cpu, memory
        )
        if note is not None:
            notes.append(note)
    more = f"; and {len(notes) - most} more host(s)" if len(notes) > most else ""
    return "; ".join(notes[:most]) + more


class AttachedL2NetworkAllocatorFlow(_Narrow):
    """Hosts in clusters attached to every L2 network of the VM's L3 networks.

    An isolated bridge (an L2 network with no physical interface) exists on each host
    separately, so a VM on one must run where that network's appliance runs, if it
    has one already.
    """

    reason = "no host is in a cluster attached to the L2 networks of every L3 network asked for"

    def skip(self, data: HostAllocationData) -> bool:
        return not data.spec.l3_network_uuids

    async def keep(
        self, data: HostAllocationData, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        l3s = data.spec.l3_network_uuids

        def rules(session: Connection) -> tuple[set[str], set[str] | None]:
            l2s = {
                row[0]: row[1]
                for row in session.execute(
                    select(_l3s.c.l2_network_uuid, _l2s.c.physical_interface)
                    .join(_l2s, _l2s.c.uuid == _l3s.c.l2_network_uuid)
                    .where(_l3s.c.uuid.in_(l3s))
                )
            }
            clusters: set[str] | None = None
            for l2 in l2s:
                attached = set(
                    session.scalars(
                        select(_l2_clusters.c.cluster_uuid).where(
                            _l2_clusters.c.l2_network_uuid == l2
                        )
                    )
                )
                clusters = attached if clusters is None else clusters & attached
            isolated = [l2 for l2, interface in l2s.items() if not interface]
            pinned = set(
                session.scalars(
                    select(_appliances.c.host_uuid)
                    .join(_l3s, _l3s.c.uuid == _appliances.c.guest_network_uuid)
                    .where(
                        _l3s.c.uuid.in_(l3s),
                        _l3s.c.l2_network_uuid.in_(isolated),
                        _appliances.c.host_uuid.is_not(None),
                    )
                )
            )
            return clusters or set(), pinned or None

        clusters, pinned = await data.node.db.run_core(rules)
        kept = [h for h in candidates if h["clusterUuid"] in clusters]
        if kept and pinned is not None:
            kept = [h for h in kept if h["uuid"] in pinned]
            if not kept:
                raise no_host(
                    "the VM's isolated network is served by a virtual router on a host "
                    "that cannot take the VM",
                    f"virtual router host(s): {', '.join(sorted(pinned))}",
                )
        return kept


class ImageBackupStorageAllocatorFlow(_Narrow):
    """Hosts in zones whose backup storage holds the image, Ready."""

    reason = "no host is in a zone whose backup storage holds image {image}"

    def skip(self, data: HostAllocationData) -> bool:
        return data.spec.image_uuid is None

    async def keep(
        self, data: HostAllocationData, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        image_uuid = data.spec.image_uuid

        def zones(session: Connection) -> set[str]:
            return set(session.scalars(_ZONES_WITH_IMAGE, {"image_uuid": image_uuid}))

        ok = await data.node.db.run_core(zones)
        return [h for h in candidates if h["zoneUuid"] in ok]


class HostPrimaryStorageAllocatorFlow(_Narrow):
    """Hosts whose cluster reaches Enabled primary storage with room for the root volume."""

    reason = "no host reaches primary storage with {disk} free"

    async def keep(
        self, data: HostAllocationData, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        need = data.spec.disk_size

        def clusters(session: Connection) -> set[str]:
            return set(session.scalars(_CLUSTERS_WITH_ROOM, {"need": need}))

        ok = await data.node.db.run_core(clusters)
        return [h for h in candidates if h["clusterUuid"] in ok]


class DesignatedHostAllocatorFlow(_Narrow):
    """The zone, cluster or host the caller asked for."""

    reason = "the host, cluster or zone asked for ({designated}) cannot take the VM"

    def skip(self, data: HostAllocationData) -> bool:
        spec = data.spec
        return not (spec.host_uuid or spec.cluster_uuid or spec.zone_uuid)

    async def keep(
        self, data: HostAllocationData, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        spec = data.spec
        return [
            h
            for h in candidates
            if (not spec.host_uuid or h["uuid"] == spec.host_uuid)
            and (not spec.cluster_uuid or h["clusterUuid"] == spec.cluster_uuid)
            and (not spec.zone_uuid or h["zoneUuid"] == spec.zone_uuid)
        ]


class AvoidHostAllocatorFlow(_Narrow):
    reason = "every host that could take the VM is on its avoid list"

    def skip(self, data: HostAllocationData) -> bool:
        return not data.spec.avoid_host_uuids

    async def keep(
        self, data: HostAllocationData, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        avoid = set(data.spec.avoid_host_uuids)
        return [h for h in candidates if h["uuid"] not in avoid]


class TagAllocatorFlow(_Narrow):
    """Every InstanceOfferingTagAllocatorExtensionPoint narrows by the offering's tags."""

    reason = "no host matches the tag rules of the instance offering"

    async def keep(
        self, data: HostAllocationData, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        for ext in data.node.registry.extensions(InstanceOfferingTagAllocatorExtensionPoint):
            candidates = await ext.allocate_by_tags(data.spec, candidates)
        return candidates


class LastHostPreferredAllocatorFlow(NoRollbackFlow):
    """The host the VM last ran on first, if it is still a candidate."""

    def skip(self, data: HostAllocationData) -> bool:
        return data.spec.last_host_uuid is None

    async def run(self, data: HostAllocationData) -> None:
        last = data.spec.last_host_uuid
        data.candidates.sort(key=lambda h: h["uuid"] != last)


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

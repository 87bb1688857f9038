"""Who owns what on a host, as the database says: the node's half of a comparison.

The agent lists the lab's objects on its host (agent.lab_inventory: ``{kind, name, ref,
detail}``); an object is owned when a row of the database accounts for it.  The rules
lean to keeping: a VM or router whose uuid is in the database in any state owns every
object that names it (a stopped or destroyed-but-not-expunged VM keeps its domain,
volumes and console log; a router being created owns its namespace before its rows say
where it is); an object whose owner cannot be told (``ref`` empty) is owned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from core.appliance.models import ApplianceVmVO
from core.host.models import HostVO
from core.image.models import ImageVO
from core.network.l2.models import L2NetworkVO
from core.network.l3.host_nat import host_nat_entries
from core.network.l3.models import VmNicVO
from core.storage.models import ImageCacheVO, PrimaryStorageClusterRefVO, PrimaryStorageVO
from core.vm.models import VmInstanceVO
from core.volume.models import VolumeVO

SHORT = 9
"""Hex digits of a uuid in host names (routers' namespaces and veths, taps, bridges)."""
TAP_PREFIX = "zslt"
SIMULATORS = "simulators/"
LOCAL_AGENT = "agent"


@dataclass
class Owners:
    """What the database holds that may own objects on one host."""

    vms: set[str] = field(default_factory=set)
    routers: set[str] = field(default_factory=set)
    hosts: dict[str, str] = field(default_factory=dict)
    """uuid -> hypervisor type."""
    taps: set[str] = field(default_factory=set)
    bridges: set[str] = field(default_factory=set)
    host_nat: set[str] = field(default_factory=set)
    """``<bridge> <gateway cidr>`` of the entries the host should hold."""
    volumes: set[str] = field(default_factory=set)
    volume_uuids: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    image_caches: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._short_machines: set[str] = set()

    def index(self) -> Owners:
        self._short_machines = {u.replace("-", "").lower()[:SHORT] for u in self.vms | self.routers}
        return self

    def _machine(self, ref: str) -> bool:
        return ref in self.vms or ref in self.routers

    def _short_machine(self, short: str) -> bool:
        return short.lower() in self._short_machines

    def owns(self, obj: kvm.HostObjectTO) -> bool:
        kind, name, ref, detail = obj.kind, obj.name, obj.ref, obj.detail
        if kind == "domain":
            return self._machine(ref) or not ref
        if kind == "process":
            return self._owns_process(ref)
        if kind in ("namespace", "veth"):
            return self._short_machine(ref) or not ref
        if kind == "tap":
            short = name[len(TAP_PREFIX) :][:SHORT] if name.startswith(TAP_PREFIX) else ""
            return name in self.taps or (bool(short) and self._short_machine(short))
        if kind == "bridge":
            return name in self.bridges
        if kind == "hostNat":
            return name in self.host_nat
        if kind == "file":
            return self._owns_file(name, ref, detail)
        return True  # a kind this node does not know: not its to judge

    def _owns_process(self, ref: str) -> bool:
        if not ref:
            return True
        if ref == LOCAL_AGENT:
            return any(kind != "Simulator" for kind in self.hosts.values())
        if ref.startswith(SIMULATORS):
            return ref[len(SIMULATORS) :] in self.hosts
        return self._machine(ref)

    def _owns_file(self, path: str, ref: str, detail: str) -> bool:
        if not ref or self._machine(ref):
            return True
        if detail == "image cache":
            return ref in self.images or path in self.image_caches
        if detail == "data volume":  # datavolumes/vol-<volume uuid>
            return ref in self.volume_uuids
        # a volume directory: any volume in it
        return any(v == path or v.startswith(path.rstrip("/") + "/") for v in self.volumes)


def load_owners(session: Session, host_uuid: str) -> Owners:
    """Everything of the database that may own an object on host ``host_uuid``."""
    owners = Owners(
        vms=set(session.scalars(select(VmInstanceVO.uuid))),
        routers=set(session.scalars(select(ApplianceVmVO.uuid))),
        hosts={u: t for u, t in session.execute(select(HostVO.uuid, HostVO.hypervisor_type))},
        taps=set(session.scalars(select(VmNicVO.internal_name))),
        bridges=set(session.scalars(select(L2NetworkVO.bridge_name))),
        host_nat={
            f"{body['bridgeName']} {body['gatewayCidr']}"
            for _host, body in host_nat_entries(session, host_uuid=host_uuid, connected_only=False)
        },
        volumes={p for p in session.scalars(select(VolumeVO.install_path)) if p},
        volume_uuids=set(session.scalars(select(VolumeVO.uuid))),
        images=set(session.scalars(select(ImageVO.uuid)))
        | set(session.scalars(select(ImageCacheVO.image_uuid))),
        image_caches=set(session.scalars(select(ImageCacheVO.install_url))),
    )
    # VM NICs name their VM: a NIC row's machine owns the tap even if the VM row is gone.
    owners.vms |= set(session.scalars(select(VmNicVO.vm_instance_uuid)))
    owners.vms |= {u for u in session.scalars(select(VolumeVO.vm_instance_uuid)) if u}
    return owners.index()


def storage_paths(session: Session, host_uuid: str) -> list[str]:
    """The primary storage directories of a host (those attached to its cluster)."""
    cluster = session.scalar(select(HostVO.cluster_uuid).where(HostVO.uuid == host_uuid))
    stmt = (
        select(PrimaryStorageVO.url)
        .join(
            PrimaryStorageClusterRefVO,
            PrimaryStorageClusterRefVO.primary_storage_uuid == PrimaryStorageVO.uuid,
        )
        .where(PrimaryStorageClusterRefVO.cluster_uuid == cluster)
    )
    return sorted(set(session.scalars(stmt)))


def orphans(objects: Iterable[kvm.HostObjectTO], owners: Owners) -> list[kvm.HostObjectTO]:
    """The objects no row of the database owns."""
    return [obj for obj in objects if not owners.owns(obj)]

"""The create-VM chain (ZStack's ``createVmWorkFlowElements``), declared as ``createVm``.

Data keys: ``node``, ``spec`` (VmInstanceSpec); the flows add ``host``,
``backup_storage``, ``primary_storage``, ``root_volume`` and the spec's ``nics``.
Each flow undoes in ``rollback`` exactly what its ``run`` did, reading what it needs from ``data``,
so a failure anywhere leaves no capacity taken, no volume row or file, and no
domain.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from agent import protocol
from core.allocator.flows import CHAIN as ALLOCATOR_CHAIN
from core.allocator.flows import no_host
from core.host.capacity import reserve_capacity, return_capacity
from core.host.plugin import HostPlugin
from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.kernel.db import new_uuid
from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow
from core.network.l3.ipam import allocate_ip
from core.network.l3.nics import agent_nics, create_nic, delete_nics, nics_of, tap_name
from core.storage.capacity import reserve_primary_capacity, return_primary_capacity
from core.storage.models import (
    BackupStorageVO,
    ImageCacheVO,
    PrimaryStorageClusterRefVO,
    PrimaryStorageVO,
)
from core.vm.extension_points import (
    PostVmInstantiateResourceExtensionPoint,
    PreVmInstantiateResourceExtensionPoint,
)
from core.vm.spec import VmInstanceSpec
from core.volume.models import VolumeVO

# Tables, for Core statements on hot paths (see Base.inventory_columns).
_backup_storages = BackupStorageVO.__table__
_image_copies = ImageBackupStorageRefVO.__table__
_ps_clusters = PrimaryStorageClusterRefVO.__table__
_primary_storages = PrimaryStorageVO.__table__
_volumes = VolumeVO.__table__

CHAIN = "createVm"
_cache_locks: dict[tuple[str, str], asyncio.Lock] = {}
# Caches are never removed while the node runs, so a hit can be remembered.
_cache_paths: dict[tuple[str, str], str] = {}


def console_log_path(primary_storage_url: str, vm_uuid: str) -> str:
    """The serial console log sits beside the VM's volumes, on its host."""
    return f"{primary_storage_url}/consoles/{vm_uuid}.log"


# Built once: these run for every VM created.
_IMAGE_COPY_IN_ZONE = (
    select(
        _image_copies.c.backup_storage_uuid,
        _image_copies.c.install_path,
    )
    .join(
        _backup_storages,
        _backup_storages.c.uuid == _image_copies.c.backup_storage_uuid,
    )
    .where(
        _image_copies.c.image_uuid == bindparam("image"),
        _image_copies.c.status == "Ready",
        _backup_storages.c.zone_uuid == bindparam("zone"),
    )
)

_CLUSTER_PRIMARY_STORAGES = (
    select(_primary_storages.c.uuid, _primary_storages.c.url)
    .join(
        _ps_clusters,
        _ps_clusters.c.primary_storage_uuid == _primary_storages.c.uuid,
    )
    .where(
        _ps_clusters.c.cluster_uuid == bindparam("cluster"),
        _primary_storages.c.state == "Enabled",
    )
    .order_by(_primary_storages.c.available_capacity.desc())
)
_NEW_VOLUME = insert(_volumes)
_VOLUME_READY = (
    update(VolumeVO)
    .where(_volumes.c.uuid == bindparam("volume"))
    .values(status=bindparam("status"), size=bindparam("size"), actual_size=bindparam("actual"))
)


class VmAllocateHostFlow(Flow):
    """Run the host allocator chain, then reserve CPU and memory on the first candidate
    that still has them (one conditional UPDATE, so concurrent creates never overbook)."""

    async def run(self, data: dict[str, Any]) -> None:
        node, spec = data["node"], data["spec"]
        await node.chain(ALLOCATOR_CHAIN).run(data)

        def reserve(session: Connection) -> dict[str, Any] | None:
            for host in data["candidates"]:
                if reserve_capacity(session, host["uuid"], spec.cpu_num, spec.memory_size):
                    return host
            return None

        host = await node.db.run_core(reserve)
        if host is None:
            raise no_host(
                f"no Connected host has {spec.describe()['cpu']} CPU(s) and "
                f"{spec.describe()['memory']} of memory free",
                "the last candidates were taken by concurrent allocations",
            )
        data["host"] = host

    async def rollback(self, data: dict[str, Any]) -> None:
        host, spec = data.get("host"), data["spec"]
        if host is not None:
            await data["node"].db.run(
                lambda s: return_capacity(s, host["uuid"], spec.cpu_num, spec.memory_size)
            )
            del data["host"]


class VmImageSelectBackupStorageFlow(NoRollbackFlow):
    """The backup storage in the host's zone that holds the image."""

    def skip(self, data: dict[str, Any]) -> bool:
        return data["spec"].image_uuid is None

    async def run(self, data: dict[str, Any]) -> None:
        zone, image = data["host"]["zoneUuid"], data["spec"].image_uuid

        def select_bs(session: Connection) -> dict[str, Any] | None:
            row = session.execute(_IMAGE_COPY_IN_ZONE, {"image": image, "zone": zone}).first()
            return None if row is None else {"uuid": row[0], "installPath": row[1]}

        data["backup_storage"] = await data["node"].db.run_core(select_bs)
        if data["backup_storage"] is None:
            raise operr(f"no backup storage in the host's zone holds image {image}")


class VmAllocatePrimaryStorageFlow(Flow):
    """Primary storage attached to the host's cluster, with the root volume's room reserved."""

    async def run(self, data: dict[str, Any]) -> None:
        cluster, need = data["host"]["clusterUuid"], data["spec"].disk_size

        def allocate(session: Connection) -> dict[str, Any] | None:
            for uuid, url in session.execute(_CLUSTER_PRIMARY_STORAGES, {"cluster": cluster}):
                if reserve_primary_capacity(session, uuid, need):
                    return {"uuid": uuid, "url": url, "reserved": need}
            return None

        data["primary_storage"] = await data["node"].db.run_core(allocate)
        if data["primary_storage"] is None:
            raise operr(
                f"no primary storage of the host's cluster has "
                f"{data['spec'].describe()['disk']} free"
            )

    async def rollback(self, data: dict[str, Any]) -> None:
        ps = data.pop("primary_storage", None)
        if ps is not None:
            await data["node"].db.run(
                lambda s: return_primary_capacity(s, ps["uuid"], ps["reserved"])
            )


class VmAllocateVolumeFlow(Flow):
    """The root volume: a qcow2 overlay on the image, cached once per primary storage."""

    async def run(self, data: dict[str, Any]) -> None:
        node, spec, ps = data["node"], data["spec"], data["primary_storage"]
        agent = await node.plugin(HostPlugin).agent_of(data["host"]["uuid"])
        cache = await _image_cache(data, agent)

        uuid = new_uuid()
        volume = data["root_volume"] = {
            "uuid": uuid,
            "installPath": f"{ps['url']}/rootvolumes/vm-{spec.vm_uuid}/{uuid}.qcow2",
            "created": False,
        }
        row = {
            "uuid": uuid,
            "name": f"ROOT-for-{spec.name}",
            "vm_instance_uuid": spec.vm_uuid,
            "primary_storage_uuid": ps["uuid"],
            "root_image_uuid": spec.image_uuid,
            "type": "Root",
            "format": "qcow2",
            "status": "Creating",
            "install_path": volume["installPath"],
        }
        await node.db.run_core(lambda c: c.execute(_NEW_VOLUME, row))
        answer = await agent.call(
            protocol.VOLUME_CREATE,
            {
                "installPath": volume["installPath"],
                "backingFile": cache,
                "format": "qcow2",
                "size": 0,
            },
            timeout=120,
        )
        volume["created"] = True
        # The size is what was reserved on the primary storage (the image's virtual
        # size), so expunging gives back exactly that.
        ready = {
            "volume": uuid,
            "status": "Ready",
            "size": ps["reserved"],
            "actual": int(answer.get("actualSize", 0)),
        }
        await node.db.run_core(lambda c: c.execute(_VOLUME_READY, ready))

    async def rollback(self, data: dict[str, Any]) -> None:
        volume = data.pop("root_volume", None)
        if volume is None:
            return
        node = data["node"]
        if volume["created"]:
            agent = await node.plugin(HostPlugin).agent_of(data["host"]["uuid"])
            await agent.call(protocol.VOLUME_DELETE, {"installPath": volume["installPath"]})
        await node.db.run(lambda s: _delete(s, VolumeVO, volume["uuid"]))


async def _image_cache(data: dict[str, Any], agent: Any) -> str:
    """The image's copy on the primary storage, made on first use (never rolled back:
    a cache serves every later VM, as ZStack's ImageCacheVO does)."""
    node, spec, ps = data["node"], data["spec"], data["primary_storage"]
    key = (ps["uuid"], spec.image_uuid)
    cached = _cache_paths.get(key)
    if cached is not None:
        return cached
    lock = _cache_locks.setdefault(key, asyncio.Lock())
    async with lock:

        def find(session: Session) -> tuple[str | None, str]:
            cache = session.scalars(
                select(ImageCacheVO).where(
                    ImageCacheVO.primary_storage_uuid == ps["uuid"],
                    ImageCacheVO.image_uuid == spec.image_uuid,
                )
            ).first()
            image = session.get(ImageVO, spec.image_uuid)
            fmt = (image.format if image is not None else None) or "qcow2"
            return (cache.install_url if cache else None), fmt

        existing, fmt = await node.db.run(find)
        if existing is not None:
            _cache_paths[key] = existing
            return existing
        path = f"{ps['url']}/imagecache/{spec.image_uuid}.{fmt}"
        answer = await agent.call_async(
            protocol.IMAGE_DOWNLOAD,
            {
                "url": data["backup_storage"]["installPath"],
                "installPath": path,
                "checksum": "",
                "taskUuid": spec.vm_uuid,
            },
            timeout=3600,
            cancellable=True,  # a cancelled copy leaves no partial cache behind
        )

        def record(session: Session) -> None:
            session.add(
                ImageCacheVO(
                    primary_storage_uuid=ps["uuid"],
                    image_uuid=spec.image_uuid,
                    install_url=path,
                    size=int(answer.get("actualSize", 0)),
                )
            )

        await node.db.run(record)
        _cache_paths[key] = path
        return path


class VmAllocateNicFlow(Flow):
    """One NIC per L3 network, the default first: an address from IPAM (the one a
    ``staticIp`` tag asks for, or the lowest free), a fresh MAC and a tap name."""

    def skip(self, data: dict[str, Any]) -> bool:
        return not data["spec"].l3_network_uuids

    async def run(self, data: dict[str, Any]) -> None:
        spec = data["spec"]

        def allocate(session: Session) -> list[dict[str, Any]]:
            for device_id, l3_uuid in enumerate(spec.l3_network_uuids):
                used = allocate_ip(session, l3_uuid, "VmNic", spec.static_ips.get(l3_uuid))
                create_nic(
                    session,
                    owner_uuid=spec.vm_uuid,
                    l3_uuid=l3_uuid,
                    device_id=device_id,
                    internal_name=tap_name(spec.vm_uuid, device_id),
                    used_ip=used,
                )
            return nics_of(session, spec.vm_uuid)

        data["nics_allocated"] = True
        spec.nics = await data["node"].db.run(allocate)

    async def rollback(self, data: dict[str, Any]) -> None:
        if data.pop("nics_allocated", False):
            spec = data["spec"]
            await data["node"].db.run(lambda s: delete_nics(s, spec.vm_uuid))
            spec.nics = []


async def spec_of(data: dict[str, Any]) -> VmInstanceSpec:
    """The operation's VmInstanceSpec: a create's own, or one read from the VM's row and
    NICs (the life-cycle chains start from the row, ``data["vm"]``)."""
    spec: VmInstanceSpec | None = data.get("spec")
    if spec is None:
        vm = data["vm"]
        nics = await data["node"].db.run(lambda s: nics_of(s, vm["uuid"]))
        spec = data["spec"] = VmInstanceSpec(
            vm_uuid=vm["uuid"],
            name=vm["name"],
            cpu_num=vm["cpuNum"],
            memory_size=vm["memorySize"],
            image_uuid=vm["imageUuid"],
            l3_network_uuids=[nic["l3NetworkUuid"] for nic in nics],
            nics=nics,
            last_host_uuid=vm["lastHostUuid"],
        )
    return spec


class VmInstantiateResourcePreFlow(Flow):
    """Every PreVmInstantiateResourceExtensionPoint prepares its part (DHCP, DNS…)."""

    async def run(self, data: dict[str, Any]) -> None:
        done = data.setdefault("pre_instantiated", [])
        spec = await spec_of(data)
        spec.dest_host_uuid = data["host"]["uuid"]
        for ext in data["node"].registry.extensions(PreVmInstantiateResourceExtensionPoint):
            await ext.pre_before_instantiate_vm_resource(spec)
        for ext in data["node"].registry.extensions(PreVmInstantiateResourceExtensionPoint):
            done.append(ext)
            await ext.pre_instantiate_vm_resource(spec)

    async def rollback(self, data: dict[str, Any]) -> None:
        for ext in reversed(data.pop("pre_instantiated", [])):
            await ext.pre_release_vm_resource(data["spec"])


class VmCreateOnHypervisorFlow(Flow):
    """Define and start the domain on the host."""

    async def run(self, data: dict[str, Any]) -> None:
        node, spec, volume = data["node"], data["spec"], data["root_volume"]
        agent = await node.plugin(HostPlugin).agent_of(data["host"]["uuid"])
        data["console_log"] = console_log_path(data["primary_storage"]["url"], spec.vm_uuid)
        data["on_hypervisor"] = True
        await agent.call_async(
            protocol.VM_START,
            {
                "vmUuid": spec.vm_uuid,
                "vmName": spec.name,
                "cpuNum": spec.cpu_num,
                "memorySize": spec.memory_size,
                "rootVolume": {"installPath": volume["installPath"], "format": "qcow2"},
                "nics": agent_nics(spec.nics),
                "consoleLogPath": data["console_log"],
                "acceleration": data["host"]["acceleration"] or "",
                "timeout": 120,
            },
            timeout=300,
        )

    async def rollback(self, data: dict[str, Any]) -> None:
        if data.pop("on_hypervisor", False):
            agent = await data["node"].plugin(HostPlugin).agent_of(data["host"]["uuid"])
            vm_uuid = data["spec"].vm_uuid
            await agent.call_async(protocol.VM_DESTROY, {"vmUuid": vm_uuid}, timeout=300)
            await agent.call(
                protocol.VM_EXPUNGE, {"vmUuid": vm_uuid, "consoleLogPath": data["console_log"]}
            )


class VmInstantiateResourcePostFlow(Flow):
    """Every PostVmInstantiateResourceExtensionPoint, after the domain runs."""

    async def run(self, data: dict[str, Any]) -> None:
        done = data.setdefault("post_instantiated", [])
        for ext in data["node"].registry.extensions(PostVmInstantiateResourceExtensionPoint):
            done.append(ext)
            await ext.post_instantiate_vm_resource(data["spec"])

    async def rollback(self, data: dict[str, Any]) -> None:
        for ext in reversed(data.pop("post_instantiated", [])):
            await ext.post_release_vm_resource(data["spec"])


def _delete(session: Session, model: Any, uuid: str) -> None:
    row = session.get(model, uuid)
    if row is not None:
        session.delete(row)


DEFAULT_FLOWS = [
    f"{__name__}.{cls.__name__}"
    for cls in (
        VmAllocateHostFlow,
        VmImageSelectBackupStorageFlow,
        VmAllocatePrimaryStorageFlow,
        VmAllocateVolumeFlow,
        VmAllocateNicFlow,
        VmInstantiateResourcePreFlow,
        VmCreateOnHypervisorFlow,
        VmInstantiateResourcePostFlow,
    )
]

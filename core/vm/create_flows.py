"""The create-VM chain (ZStack's ``createVmWorkFlowElements``), declared as ``createVm``.

It runs over :class:`CreateVmData`: the caller gives the spec (the VM row exists, in
``Starting``); the flows add the host, the storages, the root volume and the spec's NICs.
Each flow undoes in ``rollback`` what its ``run`` did, so a failure anywhere leaves no
capacity taken, no volume row or file, no domain, and no VM row.

The chain is durable: after a crash its rollbacks run from the journal's record (see
:mod:`core.kernel.flow_journal`), for a step that may have done none, part or all of its
work.  So every rollback finds what to undo by the VM's uuid or by a value the step
wrote down in the same transaction as its change (``checkpointer``), and undoing twice
is harmless.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import PrivateAttr
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from contracts import kvm
from contracts.events import VmDeleted
from core.allocator.flows import CHAIN as ALLOCATOR_CHAIN
from core.allocator.flows import HostAllocationData, no_host
from core.host.capacity import reserve_capacity, return_capacity
from core.host.plugin import HostPlugin
from core.image.models import ImageBackupStorageRefVO
from core.kernel.db import new_uuid
from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow, checkpointer
from core.kernel.rest import AgentClient
from core.kvm.extension_points import KVMStartVmExtensionPoint, before_start_vm
from core.network.l3.ipam import allocate_ip
from core.network.l3.nics import agent_nics, create_nic, delete_nics, nics_of, tap_name
from core.storage.capacity import reserve_primary_capacity, return_primary_capacity
from core.storage.image_cache import image_cache
from core.storage.models import (
    BackupStorageVO,
    PrimaryStorageClusterRefVO,
    PrimaryStorageVO,
)
from core.tag.plugin import delete_all_tags
from core.vm.extension_points import (
    PostVmInstantiateResourceExtensionPoint,
    PreVmInstantiateResourceExtensionPoint,
)
from core.vm.models import VmInstanceVO
from core.vm.spec import VmInstanceSpec
from core.volume.files import data_volumes_of
from core.volume.models import VolumeVO
from core.volume.vm_flows import VmAllocateDataVolumesFlow

# Tables, for Core statements on hot paths (see Base.inventory_columns).
_backup_storages = BackupStorageVO.__table__
_image_copies = ImageBackupStorageRefVO.__table__
_ps_clusters = PrimaryStorageClusterRefVO.__table__
_primary_storages = PrimaryStorageVO.__table__
_volumes = cast(Table, VolumeVO.__table__)  # a Table (typed FromClause): insert and update it
_vms = cast(Table, VmInstanceVO.__table__)

CHAIN = "createVm"


class CreateVmData(HostAllocationData):
    """What the createVm flows share (the allocator's data, and what the flows make)."""

    host: dict[str, Any] | None = None
    """The allocator's candidate the VM's CPU and memory are reserved on."""
    backup_storage: dict[str, Any] | None = None
    """``{uuid, installPath}``: where the image is copied from."""
    primary_storage: dict[str, Any] | None = None
    """``{uuid, url, reserved}``: where the root volume lives, and the room reserved."""
    root_volume: dict[str, Any] | None = None
    """``{uuid, installPath}`` of the root volume, once its row exists."""
    console_log: str | None = None
    _running: dict[str, Any] | None = PrivateAttr(default=None)
    """The VM's inventory as the chain's last step left it (not journalled: no step follows)."""

    def hosts(self) -> list[str]:
        return [] if self.host is None else [self.host["uuid"]]

    @property
    def running_inventory(self) -> dict[str, Any] | None:
        """The VM's inventory once the chain made it Running (None before)."""
        return self._running


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
_SET_VM_HOST = (
    update(_vms).where(_vms.c.uuid == bindparam("vm")).values(host_uuid=bindparam("host"))
)
_VOLUME_READY = (
    update(VolumeVO)
    .where(_volumes.c.uuid == bindparam("volume"))
    .values(status=bindparam("status"), size=bindparam("size"), actual_size=bindparam("actual"))
)


class VmInstanceRowFlow(Flow):
    """The VM's row, made (in ``Starting``) by the caller just before the chain: its
    rollback, the chain's last, takes the row away with its tags, so a failed or
    interrupted create leaves no VM behind.

    Its run does nothing, so the journal needs no record before it: the next step's
    checkpoint is the run's first record.  A node that dies before that leaves a row
    with no run, which ``VmPlugin.after_recovery`` removes."""

    checkpointed = True

    async def run(self, data: CreateVmData) -> None:  # type: ignore[override]
        return None

    async def rollback(self, data: CreateVmData) -> None:  # type: ignore[override]
        await forget_vm(data.node, data.spec.vm_uuid)


async def forget_vm(node: Any, vm_uuid: str) -> None:
    """Delete a VM's row and tags (no-op if gone) and say so on ``/vm/deleted``."""

    def forget(session: Session) -> bool:
        vm = session.get(VmInstanceVO, vm_uuid)
        if vm is not None:
            session.delete(vm)
        delete_all_tags(session, [vm_uuid])
        return vm is not None

    if await node.db.run(forget):
        node.events.publish(VmDeleted.PATH, VmDeleted(vm_uuid=vm_uuid).to_json())


class VmAllocateHostFlow(Flow):
    """Run the host allocator chain, then reserve CPU and memory on the first candidate
    that still has them (one conditional UPDATE, so concurrent creates never overbook;
    the choice is written down with it)."""

    checkpointed = True

    async def run(self, data: CreateVmData) -> None:  # type: ignore[override]
        node, spec = data.node, data.spec
        # FlowChain.run is typed for dict data (core.kernel.flow); it takes the chain's FlowData
        await node.chain(ALLOCATOR_CHAIN).run(data)  # type: ignore[arg-type]
        save = checkpointer()

        def reserve(conn: Connection) -> dict[str, Any] | None:
            for host in data.candidates:
                if reserve_capacity(conn, host["uuid"], spec.cpu_num, spec.memory_size):
                    # The row names the host too: a host's capacity is recomputed from the
                    # rows at reconnect, which must count this reservation.
                    conn.execute(_SET_VM_HOST, {"vm": spec.vm_uuid, "host": host["uuid"]})
                    data.host = host
                    save(conn)
                    return host
            return None

        if await node.db.run_core(reserve) is None:
            raise no_host(
                f"no Connected host has {spec.describe()['cpu']} CPU(s) and "
                f"{spec.describe()['memory']} of memory free",
                "the last candidates were taken by concurrent allocations",
            )

    async def rollback(self, data: CreateVmData) -> None:  # type: ignore[override]
        host, spec = data.host, data.spec
        if host is None:
            return
        save = checkpointer()

        def give_back(conn: Connection) -> None:
            return_capacity(conn, host["uuid"], spec.cpu_num, spec.memory_size)
            conn.execute(_SET_VM_HOST, {"vm": spec.vm_uuid, "host": None})
            data.host = None
            save(conn)

        await data.node.db.run_core(give_back)


class VmImageSelectBackupStorageFlow(NoRollbackFlow):
    """The backup storage in the host's zone that holds the image."""

    def skip(self, data: CreateVmData) -> bool:  # type: ignore[override]
        return data.spec.image_uuid is None

    async def run(self, data: CreateVmData) -> None:  # type: ignore[override]
        assert data.host is not None
        zone, image = data.host["zoneUuid"], data.spec.image_uuid

        def select_bs(session: Connection) -> dict[str, Any] | None:
            row = session.execute(_IMAGE_COPY_IN_ZONE, {"image": image, "zone": zone}).first()
            return None if row is None else {"uuid": row[0], "installPath": row[1]}

        data.backup_storage = await data.node.db.run_core(select_bs)
        if data.backup_storage is None:
            raise operr(f"no backup storage in the host's zone holds image {image}")


class VmAllocatePrimaryStorageFlow(Flow):
    """Primary storage attached to the host's cluster, with the root volume's room reserved
    (written down with the reservation)."""

    checkpointed = True

    async def run(self, data: CreateVmData) -> None:  # type: ignore[override]
        assert data.host is not None
        cluster, need = data.host["clusterUuid"], data.spec.disk_size
        save = checkpointer()

        def allocate(conn: Connection) -> bool:
            for uuid, url in conn.execute(_CLUSTER_PRIMARY_STORAGES, {"cluster": cluster}):
                if reserve_primary_capacity(conn, uuid, need):
                    data.primary_storage = {"uuid": uuid, "url": url, "reserved": need}
                    save(conn)
                    return True
            return False

        if not await data.node.db.run_core(allocate):
            raise operr(
                f"no primary storage of the host's cluster has {data.spec.describe()['disk']} free"
            )

    async def rollback(self, data: CreateVmData) -> None:  # type: ignore[override]
        ps = data.primary_storage
        if ps is None:
            return
        save = checkpointer()

        def give_back(conn: Connection) -> None:
            return_primary_capacity(conn, ps["uuid"], ps["reserved"])
            data.primary_storage = None
            save(conn)

        await data.node.db.run_core(give_back)


class VmAllocateVolumeFlow(Flow):
    """The root volume: a qcow2 overlay on the image, cached once per primary storage.
    Its row (and so its uuid and path) is written down before the file is made."""

    checkpointed = True

    async def run(self, data: CreateVmData) -> None:  # type: ignore[override]
        node, spec, ps, host = data.node, data.spec, data.primary_storage, data.host
        assert ps is not None and host is not None
        agent = await node.plugin(HostPlugin).agent_of(host["uuid"])
        cache = await _image_cache(data, agent)

        uuid = new_uuid()
        path = f"{ps['url']}/rootvolumes/vm-{spec.vm_uuid}/{uuid}.qcow2"
        row = {
            "uuid": uuid,
            "name": f"ROOT-for-{spec.name}",
            "vm_instance_uuid": spec.vm_uuid,
            "primary_storage_uuid": ps["uuid"],
            "root_image_uuid": spec.image_uuid,
            "type": "Root",
            "format": "qcow2",
            "status": "Creating",
            "install_path": path,
        }
        save = checkpointer()

        def new_volume(conn: Connection) -> None:
            conn.execute(_NEW_VOLUME, row)
            data.root_volume = {"uuid": uuid, "installPath": path}
            save(conn)

        await node.db.run_core(new_volume)
        answer = await agent.send(
            kvm.CreateVolumeCmd(install_path=path, backing_file=cache, format="qcow2", size=0),
            timeout=120,
        )
        # The size is what was reserved on the primary storage (the image's virtual
        # size), so expunging gives back exactly that.
        ready = {
            "volume": uuid,
            "status": "Ready",
            "size": ps["reserved"],
            "actual": answer.actual_size,
        }
        await node.db.run_core(lambda c: c.execute(_VOLUME_READY, ready))

    async def rollback(self, data: CreateVmData) -> None:  # type: ignore[override]
        volume = data.root_volume
        if volume is None:
            return
        node = data.node
        assert data.host is not None
        agent = await node.plugin(HostPlugin).agent_of(data.host["uuid"])
        # Deleting a file that was never made (or is gone already) succeeds.
        await agent.send(kvm.DeleteVolumeCmd(install_path=volume["installPath"]))
        save = checkpointer()

        def forget(session: Session) -> None:
            _delete(session, VolumeVO, volume["uuid"])
            data.root_volume = None
            save(session.connection())

        await node.db.run(forget)


async def _image_cache(data: CreateVmData, agent: AgentClient) -> str:
    """The image's copy on the primary storage (core.storage.image_cache)."""
    spec, ps, bs = data.spec, data.primary_storage, data.backup_storage
    assert ps is not None and bs is not None and spec.image_uuid is not None
    return await image_cache(
        data.node, agent, ps, bs["installPath"], spec.image_uuid, task_uuid=spec.vm_uuid
    )


class VmAllocateNicFlow(Flow):
    """One NIC per L3 network, the default first: an address from IPAM (the one a
    ``staticIp`` tag asks for, or the lowest free), a fresh MAC and a tap name."""

    def skip(self, data: CreateVmData) -> bool:  # type: ignore[override]
        return not data.spec.l3_network_uuids

    async def run(self, data: CreateVmData) -> None:  # type: ignore[override]
        spec = data.spec

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

        spec.nics = await data.node.db.run(allocate)

    async def rollback(self, data: CreateVmData) -> None:  # type: ignore[override]
        # Found by the VM's uuid: nothing to write down first, and a second run is a no-op.
        spec = data.spec
        await data.node.db.run(lambda s: delete_nics(s, spec.vm_uuid))
        spec.nics = []


async def spec_of(data: Any) -> VmInstanceSpec:
    """The operation's VmInstanceSpec: a create's own, or one read from the VM's row and
    NICs (the life-cycle chains start from the row, ``data.vm``), kept in ``data.spec``."""
    spec: VmInstanceSpec | None = data.spec
    if spec is None:
        spec = data.spec = await spec_from_row(data.node, data.vm)
    return spec


async def spec_from_row(node: Any, vm: dict[str, Any]) -> VmInstanceSpec:
    """A VmInstanceSpec for the VM of inventory ``vm``, with its NICs."""
    nics = await node.db.run(lambda s: nics_of(s, vm["uuid"]))
    return VmInstanceSpec(
        vm_uuid=vm["uuid"],
        name=vm["name"],
        cpu_num=vm["cpuNum"],
        memory_size=vm["memorySize"],
        image_uuid=vm["imageUuid"],
        l3_network_uuids=[nic["l3NetworkUuid"] for nic in nics],
        nics=nics,
        last_host_uuid=vm["lastHostUuid"],
    )


class VmInstantiateResourcePreFlow(Flow):
    """Every PreVmInstantiateResourceExtensionPoint prepares its part (DHCP, DNS…).

    The rollback asks every one of them to release, last first: a release finds what to
    undo by the VM (its NICs' entries) and does nothing when there is nothing."""

    async def run(self, data: Any) -> None:
        spec = await spec_of(data)
        assert data.host is not None
        spec.dest_host_uuid = data.host["uuid"]
        for ext in data.node.registry.extensions(PreVmInstantiateResourceExtensionPoint):
            await ext.pre_before_instantiate_vm_resource(spec)
        for ext in data.node.registry.extensions(PreVmInstantiateResourceExtensionPoint):
            await ext.pre_instantiate_vm_resource(spec)

    async def rollback(self, data: Any) -> None:
        spec = await spec_of(data)
        for ext in reversed(data.node.registry.extensions(PreVmInstantiateResourceExtensionPoint)):
            await ext.pre_release_vm_resource(spec)


class VmCreateOnHypervisorFlow(Flow):
    """Define and start the domain on the host."""

    async def run(self, data: CreateVmData) -> None:  # type: ignore[override]
        node, spec, volume, host = data.node, data.spec, data.root_volume, data.host
        assert volume is not None and host is not None and data.primary_storage is not None
        agent = await node.plugin(HostPlugin).agent_of(host["uuid"])
        console = data.console_log = console_log_path(data.primary_storage["url"], spec.vm_uuid)
        cmd = kvm.StartVmCmd(
            vm_uuid=spec.vm_uuid,
            vm_name=spec.name,
            cpu_num=spec.cpu_num,
            memory_size=spec.memory_size,
            root_volume=kvm.VolumeTO(install_path=volume["installPath"], format="qcow2"),
            nics=agent_nics(data.node.registry, spec.nics),
            console_log_path=console,
            acceleration=host["acceleration"] or "",
            timeout=120,
            data_volumes=await node.db.run(lambda s: data_volumes_of(s, spec.vm_uuid)),
        )
        extensions = node.registry.extensions(KVMStartVmExtensionPoint)
        await agent.send(await before_start_vm(extensions, spec, cmd), timeout=300)

    async def rollback(self, data: CreateVmData) -> None:  # type: ignore[override]
        # The domain is named after the VM: destroying one that is not there succeeds.
        assert data.host is not None and data.primary_storage is not None
        agent = await data.node.plugin(HostPlugin).agent_of(data.host["uuid"])
        vm_uuid = data.spec.vm_uuid
        await agent.send(kvm.DestroyVmCmd(vm_uuid=vm_uuid), timeout=300)
        await agent.send(
            kvm.ExpungeVmCmd(
                vm_uuid=vm_uuid,
                console_log_path=console_log_path(data.primary_storage["url"], vm_uuid),
            )
        )


class VmInstantiateResourcePostFlow(Flow):
    """Every PostVmInstantiateResourceExtensionPoint, after the domain runs (the rollback
    asks each to release, as the pre flow's does)."""

    async def run(self, data: Any) -> None:
        for ext in data.node.registry.extensions(PostVmInstantiateResourceExtensionPoint):
            await ext.post_instantiate_vm_resource(data.spec)

    async def rollback(self, data: Any) -> None:
        spec = await spec_of(data)
        for ext in reversed(data.node.registry.extensions(PostVmInstantiateResourceExtensionPoint)):
            await ext.post_release_vm_resource(spec)


class VmCreatedRunningFlow(NoRollbackFlow):
    """The VM is Running on its host, with its root volume: the last step, so a create
    whose chain ended has a consistent row (nothing after it can be interrupted)."""

    async def run(self, data: CreateVmData) -> None:  # type: ignore[override]
        from core.vm.plugin import VmPlugin

        host, volume = data.host, data.root_volume
        assert host is not None and volume is not None
        data._running = await data.node.plugin(VmPlugin).change_state(
            data.spec.vm_uuid,
            "running",
            host_uuid=host["uuid"],
            cluster_uuid=host["clusterUuid"],
            zone_uuid=host["zoneUuid"],
            root_volume_uuid=volume["uuid"],
            hypervisor_type=host["hypervisorType"],
        )


def _delete(session: Session, model: Any, uuid: str) -> None:
    row = session.get(model, uuid)
    if row is not None:
        session.delete(row)


DEFAULT_FLOWS = [
    f"{cls.__module__}.{cls.__name__}"
    for cls in (
        VmInstanceRowFlow,
        VmAllocateHostFlow,
        VmImageSelectBackupStorageFlow,
        VmAllocatePrimaryStorageFlow,
        VmAllocateVolumeFlow,
        VmAllocateDataVolumesFlow,
        VmAllocateNicFlow,
        VmInstantiateResourcePreFlow,
        VmCreateOnHypervisorFlow,
        VmInstantiateResourcePostFlow,
        VmCreatedRunningFlow,
    )
]

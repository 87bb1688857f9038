"""The VM service: create and life-cycle operations, each a declared flow chain,
with ZStack's state machine; VM states kept in line with what hosts report.

State follows the hypervisor: agents report every domain state change
(``/kvm/reportvmstate``) and a host connect ends with a full sync
(``VmSyncOnHostConnectFlow``, inserted into the ``hostConnect`` chain through
FlowChainContributor).  A VM that stops outside the project becomes Stopped and
its capacity goes back to its host.  Reports about a VM with an operation in
flight are ignored: the operation sets the state it ends in.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from aiohttp import web
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from contracts import events as ev
from contracts import kvm
from core.allocator.flows import CHAIN as ALLOCATOR_CHAIN
from core.allocator.flows import DEFAULT_FLOWS as ALLOCATOR_FLOWS
from core.allocator.flows import HostAllocationData
from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.config.plugin import GlobalConfigPlugin
from core.host.capacity import HOLDING_STATES, return_capacity, take_capacity
from core.host.connect import CHAIN as HOST_CONNECT_CHAIN
from core.host.connect import HostConnectData
from core.host.plugin import HostPlugin
from core.image.plugin import ready_image
from core.kernel.chains import FlowChainContributor, FlowInsertion
from core.kernel.db import new_uuid
from core.kernel.deletion import expunge_expired
from core.kernel.errors import ErrorCode, OperationError, SysErrors, not_found
from core.kernel.extensions import AfterRecoveryExtensionPoint, Component, Plugin
from core.kernel.flow import NoRollbackFlow
from core.kernel.local_api import LocalApiRouteProvider
from core.kernel.operation import name_subject
from core.kernel.periodic import PeriodicTask
from core.kernel.service import Service, handles
from core.network.l3.vm_networks import check_vm_networks
from core.offering.models import InstanceOfferingVO
from core.tag.plugin import TagPlugin
from core.vm import global_config
from core.vm import state as st
from core.vm.api import (
    ChangeInstanceOffering,
    CreateVmInstance,
    DestroyVmInstance,
    ExpungeVmInstance,
    GetVmConsoleAddress,
    PauseVmInstance,
    QueryVmInstance,
    RebootVmInstance,
    RecoverVmInstance,
    ResumeVmInstance,
    StartVmInstance,
    StopVmInstance,
)
from core.vm.change_offering import change_instance_offering
from core.vm.console import add_console_routes
from core.vm.create_flows import CHAIN as CREATE_CHAIN
from core.vm.create_flows import DEFAULT_FLOWS as CREATE_FLOWS
from core.vm.create_flows import CreateVmData, forget_vm, spec_from_row
from core.vm.extension_points import PreVmInstantiateResourceExtensionPoint
from core.vm.lifecycle_flows import CHAINS as LIFECYCLE_CHAINS
from core.vm.lifecycle_flows import RESUMABLE, VmOperationData
from core.vm.models import VmInstanceVO
from core.vm.spec import VmInstanceSpec
from core.volume import resize
from core.volume.files import data_disk_sizes
from core.volume.global_config import DATA_VOLUME_MAX_NUM
from core.volume.resize_api import ResizeDataVolume, ResizeRootVolume

# Tables, for Core statements on hot paths (see Base.inventory_columns).
_vms = cast(Table, VmInstanceVO.__table__)  # a Table (typed FromClause): insert and update it
_offerings = InstanceOfferingVO.__table__


log = logging.getLogger(__name__)
STATE_EVENT = ev.VmStateChanged.PATH
DELETED_EVENT = ev.VmDeleted.PATH
"""A VM row is gone: expunged, or a create that failed and was rolled back."""


class VmPlugin(
    Plugin,
    GlobalConfigProvider,
    Service,
    FlowChainContributor,
    Component,
    LocalApiRouteProvider,
    AfterRecoveryExtensionPoint,
):
    implements = (
        GlobalConfigProvider,
        Service,
        FlowChainContributor,
        Component,
        LocalApiRouteProvider,
        AfterRecoveryExtensionPoint,
    )
    service_id = "vmInstance"
    queries = (QueryVmInstance,)

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        node.declare_chain(CREATE_CHAIN, CREATE_FLOWS, CreateVmData)
        node.declare_chain(ALLOCATOR_CHAIN, ALLOCATOR_FLOWS, HostAllocationData)
        for name, flows in LIFECYCLE_CHAINS.items():
            node.declare_chain(name, flows, VmOperationData, resumable=name in RESUMABLE)
        node.declare_chain(
            resize.CHAIN, resize.DEFAULT_FLOWS, resize.ResizeVolumeData, resumable=True
        )
        node.rest.on_report(kvm.REPORT_VM_STATE, self._on_state_report)
        self._creating: set[str] = set()  # creates have no per-VM queue: tracked here
        self._expunger = PeriodicTask(
            node,
            "vm-expunger",
            global_config.CATEGORY,
            global_config.EXPUNGE_INTERVAL.name,
            self.expunge_expired,
        )

    async def start(self) -> None:
        self._expunger.start()

    async def stop(self) -> None:
        await self._expunger.stop()

    async def expunge_expired(self) -> None:
        """With the Delay policy, expunge VMs Destroyed longer than vm.expungePeriod ago."""
        await expunge_expired(
            self.node,
            global_config.CATEGORY,
            VmInstanceVO,
            "state",
            st.DESTROYED,
            "ExpungeVmInstance",
        )

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    def flow_insertions(self) -> list[FlowInsertion]:
        return [FlowInsertion(HOST_CONNECT_CHAIN, f"{__name__}.VmSyncOnHostConnectFlow")]

    # -- state ----------------------------------------------------------------------

    async def change_state(self, vm_uuid: str, event: str, **columns: Any) -> dict[str, Any]:
        """Apply a state-machine event (and column updates); fire /vm/state/change."""

        def change(session: Connection) -> tuple[str, dict[str, Any]]:
            row = session.execute(_VM_STATE, {"vm": vm_uuid}).first()
            if row is None:
                raise not_found("VmInstanceVO", vm_uuid)
            old, host_uuid = row
            values = {"state": st.next_state(old, event), **columns}
            host_uuid = values.get("host_uuid", host_uuid)
            if values["state"] in (st.STOPPED, st.DESTROYED) and host_uuid is not None:
                values["last_host_uuid"], values["host_uuid"] = host_uuid, None
            changed = session.execute(_SET_VM, {"vm": vm_uuid, **values}).one()
            return old, VmInstanceVO.inventory_of(changed)

        old, inventory = await self.node.db.run_core(change)
        self._state_changed(old, inventory)
        return inventory

    def _state_changed(self, old: str, inventory: dict[str, Any]) -> None:
        if old != inventory["state"]:
            event = ev.VmStateChanged(
                vm_uuid=inventory["uuid"],
                old_state=old,
                new_state=inventory["state"],
                inventory=inventory,
            )
            self.node.events.publish(event.PATH, event.to_json())

    def _busy(self, vm_uuid: str) -> bool:
        assert self.node.bus is not None
        return (
            vm_uuid in self._creating
            or vm_uuid in self.node.interrupted_resources
            or self.node.bus.is_busy(f"Vm-{vm_uuid}")
        )

    async def after_recovery(self) -> None:
        """A VM still in an intermediate state after recovery had no chain record: a create
        killed between making the row and its chain's first record (nothing was made for
        it: it goes), or one whose state the hypervisor knows (its host's report decides)."""

        def stuck(session: Session) -> list[dict[str, Any]]:
            rows = session.scalars(
                select(VmInstanceVO).where(VmInstanceVO.state.in_(st.INTERMEDIATE))
            )
            return [vm.to_inventory() for vm in rows]

        for vm in await self.node.db.run(stuck):
            if vm["state"] == st.STARTING and not vm["hostUuid"] and not vm["rootVolumeUuid"]:
                log.warning("VM %s was never made (interrupted create): removing it", vm["name"])
                await forget_vm(self.node, vm["uuid"])
                continue
            host_uuid = vm["hostUuid"] or vm["lastHostUuid"]
            reported = "Stopped"
            if host_uuid is not None:
                try:
                    agent = await self.node.plugin(HostPlugin).agent_of(host_uuid)
                    states = (await agent.send(kvm.VmSyncCmd())).states
                    reported = states.get(vm["uuid"], "Stopped")
                except Exception as exc:
                    log.warning("cannot ask host %s about VM %s: %s", host_uuid, vm["name"], exc)
                    continue
            log.warning("VM %s was left %s: its host reports %s", vm["name"], vm["state"], reported)
            await self.reconcile(vm["uuid"], reported, host_uuid)

    async def reconcile(self, vm_uuid: str, reported: str, host_uuid: str | None = None) -> None:
        """Make the DB say what the hypervisor says (a report from ``host_uuid``, or a sync).

        A VM that stops outside the project gives its capacity back and loses what its
        start prepared (its DHCP entry…), as a stop through the API does; one started
        outside takes them again, on the host that reports it.
        """
        event = st.REPORTED.get(reported)
        if event is None or self._busy(vm_uuid):
            return

        def apply(session: Session) -> tuple[str, str, dict[str, Any]] | None:
            vm = session.get(VmInstanceVO, vm_uuid)
            if vm is None or vm.state in (st.CREATED, st.DESTROYED, st.EXPUNGING):
                return None
            old = vm.state
            try:
                new = st.next_state(old, event)
            except OperationError:
                log.warning("VM %s is %s; ignoring the report %s", vm.name, old, reported)
                return None
            if new == old:
                return None
            if old in HOLDING_STATES and new not in HOLDING_STATES and vm.host_uuid:
                return_capacity(session, vm.host_uuid, vm.cpu_num, vm.memory_size)
            if old not in HOLDING_STATES and new in HOLDING_STATES:
                vm.host_uuid = vm.host_uuid or host_uuid or vm.last_host_uuid
                if vm.host_uuid:  # it runs whether or not the host had room: count it
                    take_capacity(session, vm.host_uuid, vm.cpu_num, vm.memory_size)
            vm.state = new
            if new == st.STOPPED and vm.host_uuid is not None:
                vm.last_host_uuid, vm.host_uuid = vm.host_uuid, None
            session.flush()
            return old, new, vm.to_inventory()

        changed = await self.node.db.run(apply)
        if changed is None:
            return
        old, new, inventory = changed
        log.info("VM %s changed outside the project: %s -> %s", inventory["name"], old, new)
        self._state_changed(old, inventory)
        if old in HOLDING_STATES and new not in HOLDING_STATES:
            await self._release_resources(inventory)
        elif old not in HOLDING_STATES and new in HOLDING_STATES:
            await self._instantiate_resources(inventory)

    async def _release_resources(self, vm: dict[str, Any]) -> None:
        """What a stop through the API releases (VmReleaseResourceFlow), for a VM that
        stopped outside the project.  A failure is logged: the VM is off already."""
        spec = await spec_from_row(self.node, vm)
        # extensions() takes type[T]: mypy refuses an abstract class there (core.kernel.extensions)
        for ext in reversed(self.node.registry.extensions(PreVmInstantiateResourceExtensionPoint)):
            try:
                await ext.pre_release_vm_resource(spec)
            except Exception as exc:
                log.warning("cannot release %s of VM %s: %s", type(ext).__name__, spec.name, exc)

    async def _instantiate_resources(self, vm: dict[str, Any]) -> None:
        """What a start through the API prepares, for a VM started outside the project."""
        spec = await spec_from_row(self.node, vm)
        spec.dest_host_uuid = vm["hostUuid"]
        # extensions() takes type[T]: mypy refuses an abstract class there (core.kernel.extensions)
        for ext in self.node.registry.extensions(PreVmInstantiateResourceExtensionPoint):
            try:
                await ext.pre_instantiate_vm_resource(spec)
            except Exception as exc:
                log.warning("cannot prepare %s of VM %s: %s", type(ext).__name__, spec.name, exc)

    async def _on_state_report(self, body: dict[str, Any]) -> None:
        report = kvm.VmStateReport.model_validate(body)
        await self.reconcile(report.vm_uuid, report.vm_state, report.host_uuid or None)

    # -- create ------------------------------------------------------------------------

    @handles(CreateVmInstance)
    async def create(self, msg: CreateVmInstance) -> dict[str, Any]:
        tags = self.node.plugin(TagPlugin)
        static_ips = (
            await self.node.db.run(
                lambda s: check_vm_networks(s, msg.l3_network_uuids, msg.system_tags)
            )
            if msg.l3_network_uuids
            else {}
        )

        # Created, and at once Starting unless the VM is only to be created: one write.
        state = (
            st.CREATED if msg.strategy == "JustCreate" else st.next_state(st.CREATED, "starting")
        )

        max_data_disks = self.node.plugin(GlobalConfigPlugin).value("kvm", DATA_VOLUME_MAX_NUM.name)

        def create_row(session: Session) -> tuple[dict[str, Any], VmInstanceSpec]:
            offering = session.execute(_OFFERING, {"offering": msg.instance_offering_uuid}).one()
            image = ready_image(session, msg.image_uuid)
            data_disks = data_disk_sizes(session, msg.data_disk_offering_uuids, max_data_disks)
            row = session.execute(
                _NEW_VM,
                {
                    "uuid": new_uuid(),
                    "name": msg.name,
                    "description": msg.description,
                    "instance_offering_uuid": msg.instance_offering_uuid,
                    "image_uuid": image.uuid,
                    "cpu_num": offering.cpu_num,
                    "memory_size": offering.memory_size,
                    "platform": image.platform,
                    "state": state,
                    "default_l3_network_uuid": (
                        msg.l3_network_uuids[0] if msg.l3_network_uuids else None
                    ),
                },
            ).one()
            vm = VmInstanceVO.inventory_of(row)
            tags.create_tags_from_message(session, msg, VmInstanceVO.resource_type, vm["uuid"])
            spec = VmInstanceSpec(
                vm_uuid=vm["uuid"],
                name=vm["name"],
                cpu_num=vm["cpuNum"],
                memory_size=vm["memorySize"],
                image_uuid=image.uuid,
                host_uuid=msg.host_uuid,
                cluster_uuid=msg.cluster_uuid,
                zone_uuid=msg.zone_uuid,
                disk_size=image.size,
                data_disk_sizes=data_disks,
                data_disk_offering_uuids=list(msg.data_disk_offering_uuids),
                l3_network_uuids=list(msg.l3_network_uuids),
                static_ips=static_ips,
            )
            return vm, spec

        inventory, spec = await self.node.db.run(create_row)
        name_subject(spec.vm_uuid, spec.name)  # the operation is about this VM, even if it fails
        if msg.strategy == "JustCreate":
            return inventory
        self._state_changed(st.CREATED, inventory)
        self._creating.add(spec.vm_uuid)
        try:
            return await self._instantiate(msg, spec)
        finally:
            self._creating.discard(spec.vm_uuid)

    async def _instantiate(self, msg: CreateVmInstance, spec: VmInstanceSpec) -> dict[str, Any]:
        """The createVm chain: the VM ends Running, or (failed) without its row."""
        data = CreateVmData(spec=spec).bind(self.node)
        # FlowChain.start is typed for dict data (core.kernel.flow); it takes the chain's FlowData
        outcome = await self.node.chain(CREATE_CHAIN).start(data)  # type: ignore[arg-type]
        if not outcome.succeeded:
            await forget_vm(self.node, spec.vm_uuid)  # gone already unless the chain never ran
            outcome.raise_for_error(f"cannot create VM {msg.name}")
        inventory = data.running_inventory
        if inventory is None:
            db = self.node.db
            assert db is not None  # the node runs
            inventory = await db.run(lambda s: _vm(s, spec.vm_uuid).to_inventory())
        if msg.strategy == "CreateStopped":
            inventory = await self._stop(inventory, "cold", 60)
        return inventory

    # -- life cycle -----------------------------------------------------------------------

    async def _load(self, vm_uuid: str, operation: str) -> dict[str, Any]:
        vm = await self.node.db.run(lambda s: _vm(s, vm_uuid).to_inventory())
        st.check_operation(vm["name"], vm["state"], operation)
        return vm

    async def _run(self, chain: str, vm: dict[str, Any], **fields: Any) -> VmOperationData:
        """Run a life-cycle chain; its data on success, a clear error on failure."""
        data = VmOperationData(vm=vm, **fields).bind(self.node)
        # FlowChain.start is typed for dict data (core.kernel.flow); it takes the chain's FlowData
        outcome = await self.node.chain(chain).start(data)  # type: ignore[arg-type]
        outcome.raise_for_error(f"cannot {chain.removesuffix('Vm')} VM {vm['name']}")
        return data

    async def _operate(
        self, vm: dict[str, Any], chain: str, start_event: str, done_event: str, **fields: Any
    ) -> dict[str, Any]:
        """The chain takes the VM through ``start_event`` to ``done_event``; on failure it
        is back in its old state (VmTransitionFlow's rollback)."""
        await self._run(chain, vm, start_event=start_event, done_event=done_event, **fields)
        return await self.node.db.run(lambda s: _vm(s, vm["uuid"]).to_inventory())

    async def restore_state(self, vm: dict[str, Any]) -> None:
        """Put back the state and host of inventory ``vm`` (taken before an operation)."""

        def restore(session: Session) -> tuple[str, dict[str, Any]] | None:
            row = session.get(VmInstanceVO, vm["uuid"])
            if row is None:
                return None
            old = row.state
            row.state, row.host_uuid = vm["state"], vm["hostUuid"]
            session.flush()
            return old, row.to_inventory()

        changed = await self.node.db.run(restore)
        if changed is not None:
            self._state_changed(*changed)

    @handles(StartVmInstance)
    async def start_vm(self, msg: StartVmInstance) -> dict[str, Any]:
        vm = await self._load(msg.uuid, "start")
        return await self._operate(vm, "startVm", "starting", "running")

    async def _stop(
        self, vm: dict[str, Any], stop_type: kvm.StopType, timeout: int
    ) -> dict[str, Any]:
        return await self._operate(
            vm, "stopVm", "stopping", "stopped", stop_type=stop_type, stop_timeout=timeout
        )

    @handles(StopVmInstance)
    async def stop_vm(self, msg: StopVmInstance) -> dict[str, Any]:
        vm = await self._load(msg.uuid, "stop")
        if vm["state"] == st.STOPPED:
            return vm
        # msg.type is one of the param's valid values, checked by the bus.
        return await self._stop(vm, cast(kvm.StopType, msg.type), msg.stop_timeout)

    @handles(RebootVmInstance)
    async def reboot(self, msg: RebootVmInstance) -> dict[str, Any]:
        vm = await self._load(msg.uuid, "reboot")
        return await self._operate(vm, "rebootVm", "rebooting", "running")

    @handles(PauseVmInstance)
    async def pause(self, msg: PauseVmInstance) -> dict[str, Any]:
        vm = await self._load(msg.uuid, "pause")
        return await self._operate(vm, "pauseVm", "pausing", "paused")

    @handles(ResumeVmInstance)
    async def resume(self, msg: ResumeVmInstance) -> dict[str, Any]:
        vm = await self._load(msg.uuid, "resume")
        return await self._operate(vm, "resumeVm", "resuming", "running")

    @handles(DestroyVmInstance)
    async def destroy(self, msg: DestroyVmInstance) -> dict[str, Any] | None:
        vm = await self._load(msg.uuid, "destroy")
        if vm["uuid"] in self._creating:
            # Its create chain (no per-VM queue) may be starting the domain right now: a
            # destroy could not know the domain is gone when it says so.
            raise OperationError(
                ErrorCode(
                    SysErrors.INVALID_STATE,
                    f"cannot destroy VM {vm['name']}: it is being created",
                    "destroy it once CreateVmInstance has answered (a failed create leaves no VM)",
                )
            )
        inventory = await self._operate(vm, "destroyVm", "destroying", "destroyed")
        policy = self.node.plugin(GlobalConfigPlugin).value(
            global_config.CATEGORY, global_config.DELETION_POLICY.name
        )
        if policy == "Direct":
            try:
                await self._expunge(inventory)
            except OperationError as exc:
                raise OperationError(
                    ErrorCode(
                        SysErrors.OPERATION_ERROR,
                        f"VM {vm['name']} is destroyed but not expunged (vm.deletionPolicy "
                        "is Direct); it keeps its NICs and volume",
                        "call ExpungeVmInstance once the host can remove what is left",
                        cause=exc.error,
                    )
                ) from None
            return None
        return inventory

    @handles(RecoverVmInstance)
    async def recover(self, msg: RecoverVmInstance) -> dict[str, Any]:
        vm = await self._load(msg.uuid, "recover")
        return await self.change_state(vm["uuid"], "stopped")

    @handles(ExpungeVmInstance)
    async def expunge(self, msg: ExpungeVmInstance) -> None:
        vm = await self._load(msg.uuid, "expunge")
        await self._expunge(vm)

    async def _expunge(self, vm: dict[str, Any]) -> None:
        await self._run("expungeVm", vm)  # its last step forgets the row

    # -- sizes: offering, volumes (code in core.vm.change_offering, core.volume.resize) ------

    @handles(ChangeInstanceOffering)
    async def change_offering(self, msg: ChangeInstanceOffering) -> dict[str, Any]:
        return await self.node.db.run(
            lambda s: change_instance_offering(s, msg.vm_instance_uuid, msg.instance_offering_uuid)
        )

    @handles(ResizeRootVolume)
    async def resize_root_volume(self, msg: ResizeRootVolume) -> dict[str, Any]:
        return await resize.resize_volume(self.node, msg.uuid, msg.size, "Root")

    @handles(ResizeDataVolume)
    async def resize_data_volume(self, msg: ResizeDataVolume) -> dict[str, Any]:
        return await resize.resize_volume(self.node, msg.uuid, msg.size, "Data")

    def add_local_api_routes(self, app: web.Application) -> None:
        """``/v1/console/{vmUuid}``: a VM's serial console for clients of the node's socket."""
        add_console_routes(app, self.node)

    @handles(GetVmConsoleAddress)
    async def console(self, msg: GetVmConsoleAddress) -> dict[str, Any]:
        vm = await self._load(msg.uuid, "console")
        agent = await self.node.plugin(HostPlugin).agent_of(vm["hostUuid"])
        answer = await agent.send(kvm.VmConsoleCmd(vm_uuid=vm["uuid"]))
        return {
            "vmUuid": vm["uuid"],
            "hostUuid": vm["hostUuid"],
            "protocol": "serial",
            "pty": answer.pty,
            "consoleLogPath": answer.console_log_path,
        }


class VmSyncOnHostConnectFlow(NoRollbackFlow):
    """Last step of a host connect: every VM of the host takes the state the agent reports
    (a VM the agent does not know is Stopped)."""

    async def run(self, data: HostConnectData) -> None:  # type: ignore[override]
        node, host_uuid = data.node, data.host_uuid
        states = (await (await data.agent()).send(kvm.VmSyncCmd())).states
        vms = await node.db.run(
            lambda s: list(
                s.scalars(select(VmInstanceVO.uuid).where(VmInstanceVO.host_uuid == host_uuid))
            )
        )
        plugin = node.plugin(VmPlugin)
        for vm_uuid in vms:
            await plugin.reconcile(vm_uuid, states.get(vm_uuid, "Stopped"), host_uuid)


_VM_STATE = select(_vms.c.state, _vms.c.host_uuid).where(_vms.c.uuid == bindparam("vm"))
_NEW_VM = insert(_vms).returning(*VmInstanceVO.inventory_columns())
_SET_VM = (
    update(_vms).where(_vms.c.uuid == bindparam("vm")).returning(*VmInstanceVO.inventory_columns())
)
"""Sets the columns given with the statement's parameters (besides ``vm``)."""
_OFFERING = select(_offerings.c.cpu_num, _offerings.c.memory_size).where(
    _offerings.c.uuid == bindparam("offering")
)


def _vm(session: Session, uuid: str) -> VmInstanceVO:
    vm = session.get(VmInstanceVO, uuid)
    if vm is None:
        raise not_found("VmInstanceVO", uuid)
    return vm

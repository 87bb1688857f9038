"""The life-cycle chains of a VM (ZStack's start, stop, reboot, pause, resume,
destroy and expunge work flows), each declared under its own name.

They run over :class:`VmOperationData`: the VM row as read before the chain, and the
state-machine events around it.  Each chain but expunge begins with
:class:`VmTransitionFlow` (the intermediate state; its rollback puts the old state back)
and ends with :class:`VmSettleStateFlow` (the final state), so a chain that ended, failed
or was taken up after a crash leaves the row in a state that is not intermediate.

Start, reboot, pause and resume roll back when interrupted.  Stop, destroy and expunge
are resumable (:data:`RESUMABLE`): once the hypervisor was asked to stop a domain there
is no way back, so recovery runs them on; their steps are idempotent, and what is not
(capacity given back) is written down with its change.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from contracts import kvm
from core.allocator.flows import shortage_notes
from core.host.capacity import HOLDING_STATES, reserve_capacity, return_capacity
from core.host.models import HostVO
from core.host.plugin import HostPlugin
from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow, checkpointer
from core.kernel.flow_data import FlowData
from core.kernel.rest import AgentClient
from core.kvm.extension_points import KVMStartVmExtensionPoint, before_start_vm
from core.network.l3.nics import agent_nics, delete_nics
from core.snapshot.spi import expunge_snapshots
from core.storage.capacity import return_primary_capacity
from core.storage.models import PrimaryStorageVO
from core.vm.create_flows import (
    VmInstantiateResourcePostFlow,
    VmInstantiateResourcePreFlow,
    console_log_path,
    forget_vm,
    spec_of,
)
from core.vm.extension_points import PreVmInstantiateResourceExtensionPoint
from core.vm.models import VmInstanceVO
from core.vm.spec import VmInstanceSpec, human_size
from core.volume.models import VolumeVO

log = logging.getLogger(__name__)


class VmOperationData(FlowData):
    """What a VM life-cycle chain's flows share."""

    vm: dict[str, Any]
    """The VM's inventory as read before the chain (its old state and host)."""
    spec: VmInstanceSpec | None = None
    """Read from the row and NICs when a flow first needs it (``spec_of``)."""
    start_event: str | None = None
    """The state-machine event that puts the VM in its intermediate state."""
    done_event: str | None = None
    """The event of the final state."""
    host: dict[str, Any] | None = None
    """Start: ``{uuid}`` of the host capacity is reserved on."""
    capacity_returned: bool = False
    """Stop, destroy: the VM's CPU and memory went back to its host."""
    stop_type: kvm.StopType = "grace"
    stop_timeout: int = 60

    def hosts(self) -> list[str]:
        found = [self.vm.get("hostUuid"), self.vm.get("lastHostUuid")]
        if self.host is not None:
            found.append(self.host["uuid"])
        return list(dict.fromkeys(h for h in found if h))


async def _agent(data: VmOperationData, host_uuid: str) -> AgentClient:
    return await data.node.plugin(HostPlugin).agent_of(host_uuid)


# The flows' methods take VmOperationData where Flow's are typed for dict[str, Any] (the
# typing of core.kernel.flow predates FlowData), hence their ignore[override].


class VmTransitionFlow(Flow):
    """The VM's intermediate state (Starting, Stopping…); the rollback puts back the
    state and host the VM had before the chain."""

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        from core.vm.plugin import VmPlugin

        if data.start_event is not None:
            await data.node.plugin(VmPlugin).change_state(data.vm["uuid"], data.start_event)

    async def rollback(self, data: VmOperationData) -> None:  # type: ignore[override]
        from core.vm.plugin import VmPlugin

        await data.node.plugin(VmPlugin).restore_state(data.vm)


class VmSettleStateFlow(NoRollbackFlow):
    """The final state (with the host a start reserved on)."""

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        from core.vm.plugin import VmPlugin

        if data.done_event is None:
            return
        columns = {} if data.host is None else {"host_uuid": data.host["uuid"]}
        await data.node.plugin(VmPlugin).change_state(data.vm["uuid"], data.done_event, **columns)


class VmAllocateHostForStoppedVmFlow(Flow):
    """Reserve capacity on the host that holds the VM's root volume (its last host)."""

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm = data.vm
        host_uuid = vm["hostUuid"] or vm["lastHostUuid"]
        if host_uuid is None:
            raise operr(f"VM {vm['name']} has never run on a host; its volume has no home")
        save = checkpointer()

        def reserve(session: Session) -> bool:
            if not reserve_capacity(session, host_uuid, vm["cpuNum"], vm["memorySize"]):
                return False
            _set_host(session, vm["uuid"], host_uuid)  # counted by a reconnect's recompute
            data.host = {"uuid": host_uuid}
            save(session.connection())
            return True

        if not await data.node.db.run(reserve):
            host = await data.node.db.run(lambda s: _inventory(s, HostVO, host_uuid))
            name = host["name"] if host else f"[uuid:{host_uuid}]"
            notes = (
                ""
                if host is None
                else shortage_notes(data.node, [host], vm["cpuNum"], vm["memorySize"])
            )
            raise operr(
                f"host {name} of VM {vm['name']} has not {vm['cpuNum']} CPU(s) and "
                f"{human_size(vm['memorySize'])} of memory free" + (f": {notes}" if notes else "")
            )

    async def rollback(self, data: VmOperationData) -> None:  # type: ignore[override]
        host, vm = data.host, data.vm
        if host is None:
            return
        save = checkpointer()

        def give_back(session: Session) -> None:
            return_capacity(session, host["uuid"], vm["cpuNum"], vm["memorySize"])
            _set_host(session, vm["uuid"], vm["hostUuid"])
            data.host = None
            save(session.connection())

        await data.node.db.run(give_back)


class VmStartOnHypervisorFlow(Flow):
    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm = data.vm

        def root_volume(session: Session) -> tuple[dict[str, Any], str]:
            volume = session.get(VolumeVO, vm["rootVolumeUuid"])
            assert volume is not None and volume.primary_storage_uuid is not None
            storage = session.get(PrimaryStorageVO, volume.primary_storage_uuid)
            assert storage is not None
            return volume.to_inventory(), console_log_path(storage.url, vm["uuid"])

        volume, console = await data.node.db.run(root_volume)
        spec = await spec_of(data)
        assert data.host is not None
        cmd = kvm.StartVmCmd(
            vm_uuid=vm["uuid"],
            vm_name=vm["name"],
            cpu_num=vm["cpuNum"],
            memory_size=vm["memorySize"],
            root_volume=kvm.VolumeTO(install_path=volume["installPath"], format=volume["format"]),
            nics=agent_nics(data.node.registry, spec.nics),
            console_log_path=console,
            timeout=120,
        )
        cmd = await before_start_vm(
            data.node.registry.extensions(KVMStartVmExtensionPoint), spec, cmd
        )
        await (await _agent(data, data.host["uuid"])).send(cmd, timeout=300)

    async def rollback(self, data: VmOperationData) -> None:  # type: ignore[override]
        # Stopping a domain that is not running succeeds: no need to know how far run got.
        if data.host is None:
            return
        await (await _agent(data, data.host["uuid"])).send(
            kvm.StopVmCmd(vm_uuid=data.vm["uuid"], type="force", timeout=30), timeout=300
        )


class VmStopOnHypervisorFlow(NoRollbackFlow):
    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm = data.vm
        await (await _agent(data, vm["hostUuid"])).send(
            kvm.StopVmCmd(vm_uuid=vm["uuid"], type=data.stop_type, timeout=data.stop_timeout),
            timeout=data.stop_timeout + 120,
        )


class VmReturnHostFlow(NoRollbackFlow):
    """Give the VM's CPU and memory back to its host (once: written down with it)."""

    def skip(self, data: VmOperationData) -> bool:  # type: ignore[override]
        vm = data.vm
        return vm["hostUuid"] is None or vm["state"] not in HOLDING_STATES

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm = data.vm
        if data.capacity_returned:
            return
        save = checkpointer()

        def give_back(session: Session) -> None:
            return_capacity(session, vm["hostUuid"], vm["cpuNum"], vm["memorySize"])
            # The row stops naming the host with it: a reconnect's recompute, which counts
            # the rows that name a host, then agrees with the counters whatever happens next.
            row = session.get(VmInstanceVO, vm["uuid"])
            if row is not None and row.host_uuid == vm["hostUuid"]:
                row.last_host_uuid, row.host_uuid = row.host_uuid, None
            data.capacity_returned = True
            save(session.connection())

        await data.node.db.run(give_back)


class VmRebootOnHypervisorFlow(NoRollbackFlow):
    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm = data.vm
        await (await _agent(data, vm["hostUuid"])).send(
            kvm.RebootVmCmd(vm_uuid=vm["uuid"], timeout=60), timeout=300
        )


class VmPauseOnHypervisorFlow(NoRollbackFlow):
    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm = data.vm
        await (await _agent(data, vm["hostUuid"])).send(kvm.PauseVmCmd(vm_uuid=vm["uuid"]))


class VmResumeOnHypervisorFlow(NoRollbackFlow):
    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm = data.vm
        await (await _agent(data, vm["hostUuid"])).send(kvm.ResumeVmCmd(vm_uuid=vm["uuid"]))


class VmDestroyOnHypervisorFlow(NoRollbackFlow):
    """Power off and undefine the domain (on the host it last ran on)."""

    def skip(self, data: VmOperationData) -> bool:  # type: ignore[override]
        vm = data.vm
        return (vm["hostUuid"] or vm["lastHostUuid"]) is None

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm = data.vm
        await (await _agent(data, vm["hostUuid"] or vm["lastHostUuid"])).send(
            kvm.DestroyVmCmd(vm_uuid=vm["uuid"]), timeout=300
        )


class VmReleaseResourceFlow(NoRollbackFlow):
    """Every PreVmInstantiateResourceExtensionPoint releases what it prepared (the DHCP
    entry, ...) once the domain is off.  A release that fails is logged, not fatal: the
    VM is already off, and the provider's next full re-sync drops what is left."""

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        spec = await spec_of(data)
        # extensions() takes type[T]: mypy refuses an abstract class there (core.kernel.extensions)
        for ext in reversed(data.node.registry.extensions(PreVmInstantiateResourceExtensionPoint)):
            try:
                await ext.pre_release_vm_resource(spec)
            except Exception as exc:
                log.warning("cannot release %s of VM %s: %s", type(ext).__name__, spec.name, exc)


class VmExpungeNicFlow(NoRollbackFlow):
    """Delete the VM's NICs; their addresses go back to their L3 networks."""

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm_uuid = data.vm["uuid"]
        await data.node.db.run(lambda s: delete_nics(s, vm_uuid))


class VmExpungeConsoleLogFlow(NoRollbackFlow):
    """Delete the VM's serial console log on the host it last ran on (it sits beside the
    root volume, on the same primary storage)."""

    def skip(self, data: VmOperationData) -> bool:  # type: ignore[override]
        vm = data.vm
        return vm["rootVolumeUuid"] is None or (vm["hostUuid"] or vm["lastHostUuid"]) is None

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm, node = data.vm, data.node

        def storage_url(session: Session) -> str | None:
            volume = session.get(VolumeVO, vm["rootVolumeUuid"])
            if volume is None or volume.primary_storage_uuid is None:
                return None
            storage = session.get(PrimaryStorageVO, volume.primary_storage_uuid)
            return None if storage is None else storage.url

        url = await node.db.run(storage_url)
        if url is None:
            return
        await (await _agent(data, vm["hostUuid"] or vm["lastHostUuid"])).send(
            kvm.ExpungeVmCmd(vm_uuid=vm["uuid"], console_log_path=console_log_path(url, vm["uuid"]))
        )


class VmExpungeRootVolumeFlow(NoRollbackFlow):
    """Delete the root volume's file and its snapshots' (core.snapshot.spi), then their
    rows; its primary storage gets the room back."""

    def skip(self, data: VmOperationData) -> bool:  # type: ignore[override]
        return data.vm["rootVolumeUuid"] is None

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        vm, node = data.vm, data.node
        volume = await node.db.run(lambda s: _inventory(s, VolumeVO, vm["rootVolumeUuid"]))
        if volume is None:
            return
        host_uuid = vm["hostUuid"] or vm["lastHostUuid"]
        if volume["installPath"] and host_uuid:
            agent = await _agent(data, host_uuid)
            await agent.send(kvm.DeleteVolumeCmd(install_path=volume["installPath"]))
            # Its snapshots' files (the chain below the active file) and rows go with it.
            storage = await node.db.run(
                lambda s: _inventory(s, PrimaryStorageVO, volume["primaryStorageUuid"])
            )
            await expunge_snapshots(
                node, agent, volume["uuid"], storage["url"] if storage is not None else ""
            )

        def forget(session: Session) -> None:
            row = session.get(VolumeVO, volume["uuid"])
            if row is not None:
                session.delete(row)
            if (
                volume["primaryStorageUuid"]
                and session.get(PrimaryStorageVO, volume["primaryStorageUuid"]) is not None
            ):
                return_primary_capacity(session, volume["primaryStorageUuid"], int(volume["size"]))

        await node.db.run(forget)


def _set_host(session: Session, vm_uuid: str, host_uuid: str | None) -> None:
    row = session.get(VmInstanceVO, vm_uuid)
    if row is not None:
        row.host_uuid = host_uuid


def _inventory(session: Session, model: Any, uuid: str) -> dict[str, Any] | None:
    row = session.get(model, uuid)
    return None if row is None else row.to_inventory()


def _paths(*classes: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__name__}" for cls in classes]


class VmExpungeRowFlow(NoRollbackFlow):
    """The VM's row and tags go last, once everything it held is gone."""

    async def run(self, data: VmOperationData) -> None:  # type: ignore[override]
        await forget_vm(data.node, data.vm["uuid"])


def _around(*classes: type) -> list[str]:
    return _paths(VmTransitionFlow, *classes, VmSettleStateFlow)


CHAINS: dict[str, list[str]] = {
    "startVm": _around(
        VmAllocateHostForStoppedVmFlow,
        VmInstantiateResourcePreFlow,
        VmStartOnHypervisorFlow,
        VmInstantiateResourcePostFlow,
    ),
    "stopVm": _around(VmStopOnHypervisorFlow, VmReturnHostFlow, VmReleaseResourceFlow),
    "rebootVm": _around(VmRebootOnHypervisorFlow),
    "pauseVm": _around(VmPauseOnHypervisorFlow),
    "resumeVm": _around(VmResumeOnHypervisorFlow),
    "destroyVm": _around(VmDestroyOnHypervisorFlow, VmReturnHostFlow, VmReleaseResourceFlow),
    # The NICs (and their addresses) go only once the host confirmed the domain is gone
    # (VM_EXPUNGE refuses while it exists) and the volume file is deleted: an expunge
    # that fails on the host keeps the VM whole, its IP not handed out again.
    "expungeVm": _paths(
        VmExpungeConsoleLogFlow, VmExpungeRootVolumeFlow, VmExpungeNicFlow, VmExpungeRowFlow
    ),
}
RESUMABLE = frozenset({"stopVm", "destroyVm", "expungeVm"})
"""Chains run on, not rolled back, after a crash (see the module's docstring)."""

"""The life-cycle chains of a VM (ZStack's start, stop, reboot, pause, resume,
destroy and expunge work flows), each declared under its own name.

Data keys: ``node``, ``vm`` (the VM row as a dict, read before the chain),
``spec``; stop takes ``stop_type`` and ``stop_timeout``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from agent import protocol
from core.allocator.flows import shortage_notes
from core.host.capacity import HOLDING_STATES, reserve_capacity, return_capacity
from core.host.models import HostVO
from core.host.plugin import HostPlugin
from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow
from core.network.l3.nics import agent_nics, delete_nics
from core.storage.capacity import return_primary_capacity
from core.storage.models import PrimaryStorageVO
from core.vm.create_flows import (
    VmInstantiateResourcePostFlow,
    VmInstantiateResourcePreFlow,
    console_log_path,
    spec_of,
)
from core.vm.extension_points import PreVmInstantiateResourceExtensionPoint
from core.vm.spec import human_size
from core.volume.models import VolumeVO

log = logging.getLogger(__name__)


async def _agent(data: dict[str, Any], host_uuid: str) -> Any:
    return await data["node"].plugin(HostPlugin).agent_of(host_uuid)


class VmAllocateHostForStoppedVmFlow(Flow):
    """Reserve capacity on the host that holds the VM's root volume (its last host)."""

    async def run(self, data: dict[str, Any]) -> None:
        vm = data["vm"]
        host_uuid = vm["hostUuid"] or vm["lastHostUuid"]
        if host_uuid is None:
            raise operr(f"VM {vm['name']} has never run on a host; its volume has no home")
        taken = await data["node"].db.run(
            lambda s: reserve_capacity(s, host_uuid, vm["cpuNum"], vm["memorySize"])
        )
        if not taken:
            host = await data["node"].db.run(lambda s: _inventory(s, HostVO, host_uuid))
            name = host["name"] if host else f"[uuid:{host_uuid}]"
            notes = (
                ""
                if host is None
                else shortage_notes(data["node"], [host], vm["cpuNum"], vm["memorySize"])
            )
            raise operr(
                f"host {name} of VM {vm['name']} has not {vm['cpuNum']} CPU(s) and "
                f"{human_size(vm['memorySize'])} of memory free" + (f": {notes}" if notes else "")
            )
        data["host"] = {"uuid": host_uuid}

    async def rollback(self, data: dict[str, Any]) -> None:
        host, vm = data.pop("host", None), data["vm"]
        if host is not None:
            await data["node"].db.run(
                lambda s: return_capacity(s, host["uuid"], vm["cpuNum"], vm["memorySize"])
            )


class VmStartOnHypervisorFlow(Flow):
    async def run(self, data: dict[str, Any]) -> None:
        vm = data["vm"]

        def root_volume(session: Session) -> tuple[dict[str, Any], str]:
            volume = session.get(VolumeVO, vm["rootVolumeUuid"])
            assert volume is not None and volume.primary_storage_uuid is not None
            storage = session.get(PrimaryStorageVO, volume.primary_storage_uuid)
            assert storage is not None
            return volume.to_inventory(), console_log_path(storage.url, vm["uuid"])

        volume, console = await data["node"].db.run(root_volume)
        spec = await spec_of(data)
        data["on_hypervisor"] = True
        await (await _agent(data, data["host"]["uuid"])).call_async(
            protocol.VM_START,
            {
                "vmUuid": vm["uuid"],
                "vmName": vm["name"],
                "cpuNum": vm["cpuNum"],
                "memorySize": vm["memorySize"],
                "rootVolume": {"installPath": volume["installPath"], "format": volume["format"]},
                "nics": agent_nics(spec.nics),
                "consoleLogPath": console,
                "timeout": 120,
            },
            timeout=300,
        )

    async def rollback(self, data: dict[str, Any]) -> None:
        if data.pop("on_hypervisor", False):
            await (await _agent(data, data["host"]["uuid"])).call_async(
                protocol.VM_STOP,
                {"vmUuid": data["vm"]["uuid"], "type": "force", "timeout": 30},
                timeout=300,
            )


class VmStopOnHypervisorFlow(NoRollbackFlow):
    async def run(self, data: dict[str, Any]) -> None:
        vm = data["vm"]
        await (await _agent(data, vm["hostUuid"])).call_async(
            protocol.VM_STOP,
            {
                "vmUuid": vm["uuid"],
                "type": data.get("stop_type", "grace"),
                "timeout": data.get("stop_timeout", 60),
            },
            timeout=data.get("stop_timeout", 60) + 120,
        )


class VmReturnHostFlow(NoRollbackFlow):
    """Give the VM's CPU and memory back to its host."""

    def skip(self, data: dict[str, Any]) -> bool:
        vm = data["vm"]
        return vm["hostUuid"] is None or vm["state"] not in HOLDING_STATES

    async def run(self, data: dict[str, Any]) -> None:
        vm = data["vm"]
        await data["node"].db.run(
            lambda s: return_capacity(s, vm["hostUuid"], vm["cpuNum"], vm["memorySize"])
        )


class VmRebootOnHypervisorFlow(NoRollbackFlow):
    async def run(self, data: dict[str, Any]) -> None:
        vm = data["vm"]
        await (await _agent(data, vm["hostUuid"])).call_async(
            protocol.VM_REBOOT, {"vmUuid": vm["uuid"], "timeout": 60}, timeout=300
        )


class VmPauseOnHypervisorFlow(NoRollbackFlow):
    async def run(self, data: dict[str, Any]) -> None:
        vm = data["vm"]
        await (await _agent(data, vm["hostUuid"])).call(protocol.VM_PAUSE, {"vmUuid": vm["uuid"]})


class VmResumeOnHypervisorFlow(NoRollbackFlow):
    async def run(self, data: dict[str, Any]) -> None:
        vm = data["vm"]
        await (await _agent(data, vm["hostUuid"])).call(protocol.VM_RESUME, {"vmUuid": vm["uuid"]})


class VmDestroyOnHypervisorFlow(NoRollbackFlow):
    """Power off and undefine the domain (on the host it last ran on)."""

    def skip(self, data: dict[str, Any]) -> bool:
        vm = data["vm"]
        return (vm["hostUuid"] or vm["lastHostUuid"]) is None

    async def run(self, data: dict[str, Any]) -> None:
        vm = data["vm"]
        await (await _agent(data, vm["hostUuid"] or vm["lastHostUuid"])).call_async(
            protocol.VM_DESTROY, {"vmUuid": vm["uuid"]}, timeout=300
        )


class VmReleaseResourceFlow(NoRollbackFlow):
    """Every PreVmInstantiateResourceExtensionPoint releases what it prepared (the DHCP
    entry, ...) once the domain is off.  A release that fails is logged, not fatal: the
    VM is already off, and the provider's next full re-sync drops what is left."""

    async def run(self, data: dict[str, Any]) -> None:
        spec = await spec_of(data)
        for ext in reversed(
            data["node"].registry.extensions(PreVmInstantiateResourceExtensionPoint)
        ):
            try:
                await ext.pre_release_vm_resource(spec)
            except Exception as exc:
                log.warning("cannot release %s of VM %s: %s", type(ext).__name__, spec.name, exc)


class VmExpungeNicFlow(NoRollbackFlow):
    """Delete the VM's NICs; their addresses go back to their L3 networks."""

    async def run(self, data: dict[str, Any]) -> None:
        vm_uuid = data["vm"]["uuid"]
        await data["node"].db.run(lambda s: delete_nics(s, vm_uuid))


class VmExpungeConsoleLogFlow(NoRollbackFlow):
    """Delete the VM's serial console log on the host it last ran on (it sits beside the
    root volume, on the same primary storage)."""

    def skip(self, data: dict[str, Any]) -> bool:
        vm = data["vm"]
        return vm["rootVolumeUuid"] is None or (vm["hostUuid"] or vm["lastHostUuid"]) is None

    async def run(self, data: dict[str, Any]) -> None:
        vm, node = data["vm"], data["node"]

        def storage_url(session: Session) -> str | None:
            volume = session.get(VolumeVO, vm["rootVolumeUuid"])
            if volume is None or volume.primary_storage_uuid is None:
                return None
            storage = session.get(PrimaryStorageVO, volume.primary_storage_uuid)
            return None if storage is None else storage.url

        url = await node.db.run(storage_url)
        if url is None:
            return
        await (await _agent(data, vm["hostUuid"] or vm["lastHostUuid"])).call(
            protocol.VM_EXPUNGE,
            {"vmUuid": vm["uuid"], "consoleLogPath": console_log_path(url, vm["uuid"])},
        )


class VmExpungeRootVolumeFlow(NoRollbackFlow):
    """Delete the root volume's file and row; its primary storage gets the room back."""

    def skip(self, data: dict[str, Any]) -> bool:
        return data["vm"]["rootVolumeUuid"] is None

    async def run(self, data: dict[str, Any]) -> None:
        vm, node = data["vm"], data["node"]
        volume = await node.db.run(lambda s: _inventory(s, VolumeVO, vm["rootVolumeUuid"]))
        if volume is None:
            return
        host_uuid = vm["hostUuid"] or vm["lastHostUuid"]
        if volume["installPath"] and host_uuid:
            await (await _agent(data, host_uuid)).call(
                protocol.VOLUME_DELETE, {"installPath": volume["installPath"]}
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


def _inventory(session: Session, model: Any, uuid: str) -> dict[str, Any] | None:
    row = session.get(model, uuid)
    return None if row is None else row.to_inventory()


def _paths(*classes: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__name__}" for cls in classes]


CHAINS: dict[str, list[str]] = {
    "startVm": _paths(
        VmAllocateHostForStoppedVmFlow,
        VmInstantiateResourcePreFlow,
        VmStartOnHypervisorFlow,
        VmInstantiateResourcePostFlow,
    ),
    "stopVm": _paths(VmStopOnHypervisorFlow, VmReturnHostFlow, VmReleaseResourceFlow),
    "rebootVm": _paths(VmRebootOnHypervisorFlow),
    "pauseVm": _paths(VmPauseOnHypervisorFlow),
    "resumeVm": _paths(VmResumeOnHypervisorFlow),
    "destroyVm": _paths(VmDestroyOnHypervisorFlow, VmReturnHostFlow, VmReleaseResourceFlow),
    "expungeVm": _paths(VmExpungeNicFlow, VmExpungeConsoleLogFlow, VmExpungeRootVolumeFlow),
}

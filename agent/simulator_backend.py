"""A backend without libvirt, for tests and demo labs: VMs are in-memory records.

The VM state machine and its reports match the libvirt backend's (start, stop,
reboot, pause, resume, destroy; every change reported), so the core's
integration tests exercise the real HTTP and async-callback protocol.  Nothing
sleeps.  Volumes and images are real files made with ``qemu-img`` (a start
checks that the root volume exists, as libvirt would).  The simulator's own path
:data:`SIM_SET_VM_STATE` (agent.plugins.simulator) changes a VM's state "from outside"
(what ``virsh destroy`` is on a real host).  A VM's console is agent.simulator_console's
line editor (echo, and each line appended to the console log).  Bridges, host NAT and appliances are
agent.network.simulated: the real commands' checks over in-memory state, with
real virtual-router agents started ``--simulate`` (and stopped at close).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from agent import images, volume_chain
from agent.backend import (
    Backend,
    Capacity,
    DataVolumeSpec,
    HostFacts,
    SnapshotResult,
    VmConsole,
    VmSpec,
    VolumeOp,
    domain_name,
)
from agent.console import ConsoleStream
from agent.lab import default_lab_dir
from agent.lab_inventory import (
    BRIDGE,
    DOMAIN,
    FILE,
    HOST_NAT,
    NAMESPACE,
    TAP,
    HostObject,
    LabFinder,
    Removal,
    remove_path,
)
from agent.network.simulated import SimulatedNetwork
from agent.simulator_console import SimulatedConsole
from agent.storage import LiveDisk, LocalFileStorage
from agentkit.errors import AgentError
from contracts.names import namespace_name, short_id

log = logging.getLogger(__name__)

DEFAULT_CPU_NUM = 8
DEFAULT_MEMORY = 32 * 1024**3
SIM_SET_VM_STATE = "/simulator/vm/setstate"
"""{vmUuid, state} -> {vmUuid, state}: simulate a change made outside the agent."""

ACTIVE = ("Running", "Paused")


@dataclass
class SimDomain:
    spec: VmSpec
    state: str = "Stopped"


class SimulatorBackend(LocalFileStorage, Backend):
    hypervisor_type = "Simulator"

    def __init__(
        self,
        cpu_num: int = DEFAULT_CPU_NUM,
        total_memory: int = DEFAULT_MEMORY,
        used_memory: int = 0,
        data_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.network = SimulatedNetwork(data_dir)
        if cpu_num < 1 or total_memory < 1 or not 0 <= used_memory <= total_memory:
            raise ValueError("the simulated host needs CPUs and memory")
        self.cpu_num = cpu_num
        self.total_memory = total_memory
        self.used_memory = used_memory
        self.domains: dict[str, SimDomain] = {}

    async def close(self) -> None:
        """Close the open consoles; stop the appliance agents this simulated host started."""
        await self.consoles.close_all()
        await self.network.close()

    # -- host ------------------------------------------------------------------
    async def connect(self, host_uuid: str, report_url: str) -> HostFacts:
        try:
            qemu_img = await images.qemu_img_version()
        except AgentError:
            qemu_img = ""
        return HostFacts(
            hostname=socket.gethostname(),
            libvirt_version="0.0.0",
            qemu_img_version=qemu_img,
            cpu_num=self.cpu_num,
            cpu_sockets=1,
            cpu_model_name="Simulated CPU",
            cpu_flags=("fpu", "sse2", "lm", "nx", "vmx"),
            total_memory=self.total_memory,
            acceleration="tcg",
            hypervisor_type=self.hypervisor_type,
        )

    async def ping(self) -> None:
        return None

    async def capacity(self) -> Capacity:
        return Capacity(
            cpu_num=self.cpu_num,
            total_memory=self.total_memory,
            used_memory=self.used_memory,
            free_memory=self.total_memory - self.used_memory,
        )

    # -- VMs -------------------------------------------------------------------
    def _set(self, vm_uuid: str, state: str) -> None:
        domain = self.domains[vm_uuid]
        if domain.state != state:
            domain.state = state
            self._console_follows(vm_uuid, state)
            self._report(vm_uuid, state)

    def _console_follows(self, vm_uuid: str, state: str) -> None:
        console = self.consoles.get(vm_uuid)
        if isinstance(console, SimulatedConsole):
            if state in ACTIVE:
                console.set_running(state == "Running")
            else:
                console.end(f"the console of VM {vm_uuid} closed (VM {state})")

    def _get(self, vm_uuid: str) -> SimDomain:
        domain = self.domains.get(vm_uuid)
        if domain is None:
            raise AgentError(f"VM {vm_uuid} has no domain {domain_name(vm_uuid)} on this host")
        return domain

    async def vm_start(self, spec: VmSpec) -> str:
        existing = self.domains.get(spec.vm_uuid)
        if existing is not None and existing.state in ACTIVE:
            return existing.state
        if not os.path.isfile(spec.root_volume_path):
            raise AgentError(
                f"cannot start VM {spec.vm_uuid}: root volume {spec.root_volume_path} "
                "does not exist"
            )
        self.domains[spec.vm_uuid] = SimDomain(spec, existing.state if existing else "Stopped")
        self._set(spec.vm_uuid, "Running")
        self._write_console(spec)
        return "Running"

    def _write_console(self, spec: VmSpec) -> None:
        """Like a real boot's, start a console log (its directory made, as the libvirt
        backend does for virtlogd) with one line, so a console viewer has history."""
        path = spec.console_log_path
        if path:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "a") as f:
                    f.write(f"{time.strftime('%F %T')} simulated VM {spec.vm_uuid} started\n")
            except OSError as exc:
                log.warning("cannot write the console log %s: %s", path, exc)

    async def vm_stop(self, vm_uuid: str, stop_type: str, timeout: float) -> str:
        if vm_uuid in self.domains:
            self._set(vm_uuid, "Stopped")
        return "Stopped"

    async def vm_reboot(self, vm_uuid: str, timeout: float) -> str:
        domain = self._get(vm_uuid)
        self._set(vm_uuid, "Stopped")
        return await self.vm_start(domain.spec)

    async def vm_pause(self, vm_uuid: str) -> str:
        domain = self._get(vm_uuid)
        if domain.state not in ACTIVE:
            raise AgentError(f"VM {vm_uuid} is {domain.state}; only a running VM can be paused")
        self._set(vm_uuid, "Paused")
        return "Paused"

    async def vm_resume(self, vm_uuid: str) -> str:
        domain = self._get(vm_uuid)
        if domain.state not in ACTIVE:
            raise AgentError(f"VM {vm_uuid} is {domain.state}; only a paused VM can be resumed")
        self._set(vm_uuid, "Running")
        return "Running"

    async def vm_destroy(self, vm_uuid: str) -> None:
        if vm_uuid in self.domains:
            self._set(vm_uuid, "Stopped")
            del self.domains[vm_uuid]

    async def vm_sync(self) -> dict[str, str]:
        return {vm_uuid: d.state for vm_uuid, d in self.domains.items()}

    async def vm_console(self, vm_uuid: str) -> VmConsole:
        domain = self._get(vm_uuid)
        if domain.state not in ACTIVE:
            raise AgentError(f"VM {vm_uuid} is {domain.state}; its console has no pty")
        return VmConsole(pty="", console_log_path=domain.spec.console_log_path)

    async def vm_console_open(self, vm_uuid: str) -> ConsoleStream:
        domain = self._get(vm_uuid)
        if domain.state not in ACTIVE:
            raise AgentError(f"VM {vm_uuid} is {domain.state}; its console cannot be opened")

        async def opener() -> ConsoleStream:
            running = domain.state == "Running"
            return SimulatedConsole(vm_uuid, domain.spec.console_log_path, running)

        return await self.consoles.open(vm_uuid, opener)

    # -- data volumes (recorded: a simulated VM has no QEMU to plug them into) ------------
    async def vm_attach_volume(self, vm_uuid: str, volume: DataVolumeSpec) -> None:
        domain = self.domains.get(vm_uuid)
        if domain is None or domain.state not in ACTIVE:
            return
        attached = {v.target: v for v in domain.spec.data_volumes}
        there = attached.get(volume.target)
        if there is not None:
            if there.install_path == volume.install_path:
                return
            raise AgentError(
                f"VM {vm_uuid} has {there.install_path} at {volume.target}, not "
                f"{volume.install_path}: refused"
            )
        if not os.path.isfile(volume.install_path):
            raise AgentError(f"data volume {volume.install_path} does not exist")
        volumes = (*domain.spec.data_volumes, volume)
        domain.spec = dataclasses.replace(domain.spec, data_volumes=volumes)

    async def vm_detach_volume(self, vm_uuid: str, volume: DataVolumeSpec, timeout: float) -> None:
        domain = self.domains.get(vm_uuid)
        if domain is None or domain.state not in ACTIVE:
            return
        volumes = tuple(v for v in domain.spec.data_volumes if v.target != volume.target)
        domain.spec = dataclasses.replace(domain.spec, data_volumes=volumes)

    # -- a simulated domain's disk, "live" --------------------------------------------
    # No QEMU holds a simulated domain's files: what libvirt would do live is done with
    # qemu-img, and the domain's disk moves as libvirt would move it, so a demo lab
    # snapshots, pulls and grows a running VM's volume as a real host does.

    def _simulated_disk(self, op: VolumeOp) -> SimDomain | None:
        """The active domain whose disk ``op`` names, if its active file is ``op``'s."""
        domain = self.domains.get(op.vm_uuid) if op.vm_uuid else None
        if domain is None or domain.state not in ACTIVE:
            return None
        return domain if self._disk_path(domain, op.target) == op.install_path else None

    @staticmethod
    def _disk_path(domain: SimDomain, target: str) -> str | None:
        if target == "vda":
            return domain.spec.root_volume_path
        return next((v.install_path for v in domain.spec.data_volumes if v.target == target), None)

    @staticmethod
    def _move_disk(domain: SimDomain, target: str, path: str) -> None:
        if target == "vda":
            domain.spec = dataclasses.replace(domain.spec, root_volume_path=path)
            return
        volumes = tuple(
            dataclasses.replace(v, install_path=path) if v.target == target else v
            for v in domain.spec.data_volumes
        )
        domain.spec = dataclasses.replace(domain.spec, data_volumes=volumes)

    async def volume_snapshot(
        self, op: VolumeOp, new_install_path: str, full: bool
    ) -> SnapshotResult:
        domain = self.domains.get(op.vm_uuid) if op.vm_uuid else None
        if domain is not None and self._disk_path(domain, op.target) == new_install_path:
            return await self._snapshot_result(op.install_path, new_install_path)  # a repeat
        if self._simulated_disk(op) is None:
            return await super().volume_snapshot(op, new_install_path, full)
        assert domain is not None
        await volume_chain.snapshot(op.install_path, new_install_path, op.storage_path, full)
        self._move_disk(domain, op.target, new_install_path)
        return await self._snapshot_result(op.install_path, new_install_path)

    async def volume_rebase(self, op: VolumeOp, backing_file: str) -> str:
        if self._simulated_disk(op) is None:
            return await super().volume_rebase(op, backing_file)
        return await volume_chain.rebase(op.install_path, backing_file, op.storage_path)

    async def volume_resize(self, op: VolumeOp, size: int) -> int:
        if self._simulated_disk(op) is None:
            return await super().volume_resize(op, size)
        return await volume_chain.resize(op.install_path, size, op.storage_path)

    async def _running_disks(self) -> list[LiveDisk]:
        """The files of the active simulated domains (their active files only: nothing
        follows a simulated disk's chain)."""
        disks = []
        for vm_uuid, domain in self.domains.items():
            if domain.state in ACTIVE:
                disks.append(LiveDisk(vm_uuid, "vda", (domain.spec.root_volume_path,)))
                disks += [
                    LiveDisk(vm_uuid, v.target, (v.install_path,)) for v in domain.spec.data_volumes
                ]
        return disks

    # -- reconciliation ------------------------------------------------------------
    def _lab_finder(self) -> LabFinder:
        return LabFinder(self.lab_dir or default_lab_dir(self.network.data_dir), self.network.lab)

    def _simulated_routers(self) -> set[str]:
        """Appliances this simulated host has: known, or with a directory (after a restart)."""
        known = set(self.network.appliances)
        directory = self.network.appliances_dir
        if directory.is_dir():
            known.update(
                p.name for p in directory.iterdir() if self.network.paths(p.name).spec.exists()
            )
        return known

    async def lab_inventory(self, storage_paths: list[str]) -> list[HostObject]:
        """The simulated objects (domains and their taps while active, bridges, host NAT,
        routers as namespaces) and the lab's files under ``storage_paths``."""
        objects = [HostObject(DOMAIN, domain_name(u), u) for u in sorted(self.domains)]
        for d in self.domains.values():
            if d.state in ACTIVE:
                objects += [
                    HostObject(TAP, n.device_name, n.device_name, n.bridge_name)
                    for n in d.spec.nics
                    if n.device_name
                ]
        for uuid in sorted(self._simulated_routers()):
            objects.append(HostObject(NAMESPACE, namespace_name(uuid), short_id(uuid)))
        for entry in sorted(self.network.host_nat):
            name = f"{entry.bridge_name} {entry.gateway.with_prefixlen}"
            objects.append(HostObject(HOST_NAT, name, entry.bridge_name))
        objects += [HostObject(BRIDGE, b, b) for b in sorted(self.network.bridges)]
        finder = self._lab_finder()
        objects += await asyncio.to_thread(finder.files, storage_paths)
        return objects

    async def lab_remove(self, objects: list[tuple[str, str]], storage_paths: list[str]) -> Removal:
        present = {(o.kind, o.name): o for o in await self.lab_inventory(storage_paths)}
        result = Removal()
        for kind, name in objects:
            obj = present.get((kind, name))
            if obj is None:
                result.refused.append((HostObject(kind, name), f"no {kind} {name} of this lab"))
                continue
            try:
                await self._remove_simulated(obj)
            except Exception as exc:
                result.failures.append((obj, str(exc)))
                continue
            result.removed.append(obj)
        return result

    async def _remove_simulated(self, obj: HostObject) -> None:
        if obj.kind == DOMAIN:
            await self.vm_destroy(obj.ref)
        elif obj.kind == TAP:
            for d in self.domains.values():
                nics = tuple(n for n in d.spec.nics if n.device_name != obj.name)
                d.spec = dataclasses.replace(d.spec, nics=nics)
        elif obj.kind == NAMESPACE:
            for uuid in self._simulated_routers():
                if short_id(uuid) == obj.ref:
                    await self.network.appliance_destroy(uuid)
        elif obj.kind == HOST_NAT:
            self.network.host_nat = {
                e
                for e in self.network.host_nat
                if f"{e.bridge_name} {e.gateway.with_prefixlen}" != obj.name
            }
        elif obj.kind == BRIDGE:
            self.network.bridges.pop(obj.name, None)
        elif obj.kind == FILE:
            await asyncio.to_thread(remove_path, Path(obj.name))

    # -- simulation ------------------------------------------------------------
    def set_state(self, vm_uuid: str, state: str) -> None:
        """Change a VM's state as if from outside the agent, and report it."""
        self._get(vm_uuid)
        self._set(vm_uuid, state)

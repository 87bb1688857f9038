"""Agents killed around each of their commands (issue 13, point 7), on the real host.

For every command of the KVM host agent (contracts.kvm) and of the virtual-router agent
(contracts.virtual_router), before and after the agent runs it: the agent is started with
the test-only fault hook (agentkit.fault, ``ZSL_AGENT_FAULT=<path>:before|after``) and the
command is sent as the node sends it, through the node's own AgentClient.  The call must
fail with an error saying the agent went away (never by its timeout); then the agent is
started again without the fault, the same command is sent again and must succeed, nothing
may exist twice (a domain's QEMU, a router's agent or dnsmasq, a half-written file), and
after the command's undo nothing of the case is left on the host (host objects as
tests/host_leaks.py lists them, restricted to this case's names).

The command lists come from the protocol modules: a command added there without a case
here fails :func:`test_every_command_has_a_case`.  A virtual router's agent inherits the
fault from the host agent that starts it (APPLIANCE_CREATE), as any child does; it is
started again as the node does after a router's agent died: APPLIANCE_CREATE from a host
agent without the fault.  Everything made here is named ``zsl…`` with random parts or lives
in one directory under /var/tmp, and is removed at the end even when a case failed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.guest_image import build as guest_image
from agent.network.appliance import namespace_pids
from agentkit.fault import FAULT_ENV
from agentkit.procs import alive
from contracts import kvm
from contracts import virtual_router as vr
from contracts.envelope import command_paths
from contracts.names import namespace_name, veth_prefix
from core.kernel.errors import OperationError, SysErrors
from core.kernel.rest import AgentClient, RestFacade
from tests import host_leaks
from tests.agent.net_helpers import free_subnet
from tests.system.net_lab import IMAGE, kill_all, sh, virsh, wait_for, why_not_libvirt

pytestmark = pytest.mark.system
MiB = 1024**2
WHEN = ("before", "after")
CALL_TIMEOUT = 240.0
"""Far longer than an agent's death takes to notice: a call that fails by this timeout
instead of by the agent's death is a failure of the test."""


if why_not_libvirt("links, namespaces, nftables, libvirt"):
    pytest.skip(why_not_libvirt("links, namespaces, nftables, libvirt"), allow_module_level=True)


KVM_COMMANDS = sorted(command_paths(kvm))
VR_COMMANDS = sorted(command_paths(vr))


# -- one case's names and the lab ------------------------------------------------------------
@dataclass
class Names:
    """The host objects one case may make, all with random names."""

    root: Path
    hex: str = field(default_factory=lambda: secrets.token_hex(4))
    vm_uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    appliance_uuid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.guest_bridge = f"zslbr-c{self.hex}"
        self.public_bridge = f"zslbr-d{self.hex}"
        self.tap = f"zslc{self.hex}0"
        self.volume = str(self.root / "ps" / f"vm-{self.vm_uuid}" / "root.qcow2")
        self.volume_top = str(self.root / "ps" / f"vm-{self.vm_uuid}" / "top.qcow2")
        """The root volume's new active file once a snapshot froze ``volume``."""
        self.data_volume = str(self.root / "ps" / "datavolumes" / f"vol-{self.vm_uuid}" / "d.qcow2")
        self.console_log = str(self.root / "logs" / f"{self.vm_uuid}.log")
        self.image = str(self.root / "ps" / "imagecache" / f"{self.hex}.qcow2")
        self.storage = str(self.root / f"ps-{self.hex}")
        self.guest_net, self.public_net = free_subnet(), free_subnet()
        self.guest_mac = "52:54:00:c0:" + ":".join(self.hex[i : i + 2] for i in (0, 2))
        self.public_mac = "52:54:00:c1:" + ":".join(self.hex[i : i + 2] for i in (0, 2))
        self.vm_mac = "52:54:00:c2:" + ":".join(self.hex[i : i + 2] for i in (0, 2))

    @property
    def marks(self) -> list[str]:
        """What names a host object of this case: any object naming one of these."""
        return [
            self.hex,
            self.vm_uuid,
            self.appliance_uuid,
            namespace_name(self.appliance_uuid),
            veth_prefix(self.appliance_uuid),
        ]

    def owns(self, obj: host_leaks.HostObject) -> bool:
        text = f"{obj.kind} {obj.name} {obj.detail} {obj.note}"
        return any(mark in text for mark in self.marks)


class Lab:
    """The KVM agent of this test's lab, started and stopped by the test, and the node's
    side of the calls: a RestFacade for callbacks and an AgentClient per agent start."""

    def __init__(self, root: Path, rest: RestFacade) -> None:
        self.root = root
        self.rest = rest
        self.agent_dir = root / "agent"
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.client: AgentClient | None = None
        self.router: AgentClient | None = None
        self.router_pid = 0
        self.fault = ""

    @property
    def agent(self) -> AgentClient:
        assert self.client is not None
        return self.client

    @property
    def vr(self) -> AgentClient:
        assert self.router is not None, "the case made no appliance"
        return self.router

    async def start(self, fault: str = "") -> None:
        env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
        if fault:
            env[FAULT_ENV] = fault
        self.fault = fault
        self.port = _free_port()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.main",
            "--backend",
            "libvirt",
            "--acceleration",
            "tcg",
            "--data-dir",
            str(self.agent_dir),
            "--lab-dir",
            str(self.root),
            "--port",
            str(self.port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        # Not a ping: the fault may be at /host/ping.
        await wait_for(self._listening, "the agent to listen", 30)
        token = (self.agent_dir / kvm.TOKEN_FILE).read_text().strip()
        await self._close_clients()
        self.client = AgentClient(f"http://127.0.0.1:{self.port}", token, self.rest, "the agent")

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"the agent exited with {self.proc.returncode} at start")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    async def stop(self) -> None:
        """SIGTERM (an agent killed by its fault is only reaped); its appliances stay."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self.client, self.router):
            if client is not None:
                await client.close()
        self.client = self.router = None

    async def open_router(self, answer: dict[str, Any]) -> None:
        """The router agent's client, as the node opens it from APPLIANCE_CREATE's answer."""
        if self.router is not None:
            await self.router.close()
        token = Path(answer["tokenFile"]).read_text().strip()
        self.router_pid = int(answer["agentPid"])
        self.router = AgentClient(
            "http://virtual-router",
            token,
            self.rest,
            "the virtual router",
            unix_socket=answer["socketPath"],
        )

    async def killed(self, path: str) -> None:
        """The agent the fault is in (the router's for a router command) died of SIGKILL."""
        if path in VR_COMMANDS:
            await wait_for(lambda: not alive(self.router_pid), "the router agent to die", 30)
            return
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), 30)
        assert code == -signal.SIGKILL, f"the agent ended with {code}, not by its fault"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the node's side of each command ---------------------------------------------------------
Step = Callable[[Lab, Names], Awaitable[Any]]


async def nothing(_lab: Lab, _n: Names) -> None:
    return None


def vm_body(n: Names) -> dict[str, Any]:
    return {
        "vmUuid": n.vm_uuid,
        "vmName": f"crash-{n.hex}",
        "cpuNum": 1,
        "memorySize": 128 * MiB,
        "rootVolume": {"installPath": n.volume, "format": "qcow2"},
        "nics": [{"mac": n.vm_mac, "bridgeName": n.guest_bridge, "deviceName": n.tap}],
        "consoleLogPath": n.console_log,
        "acceleration": "tcg",
        "timeout": 30,
    }


async def bridge(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.BRIDGE_CREATE, {"bridgeName": n.guest_bridge})


async def bridge_gone(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.BRIDGE_DELETE, {"bridgeName": n.guest_bridge})


async def bridge_removed_as_orphan(lab: Lab, n: Names) -> Any:
    body = {"objects": [{"kind": "bridge", "name": n.guest_bridge}], "storagePaths": [n.storage]}
    return await lab.agent.call(kvm.LAB_REMOVE, body, timeout=60)


async def volume(lab: Lab, n: Names) -> None:
    base = str(lab.root / "ps" / "imagecache" / "base.qcow2")
    await lab.agent.call(
        kvm.VOLUME_CREATE,
        {"installPath": n.volume, "backingFile": base, "format": "qcow2", "size": 0},
        timeout=120,
    )


async def volume_gone(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.VOLUME_DELETE, {"installPath": n.volume})


async def start_vm(lab: Lab, n: Names) -> Any:
    return await lab.agent.call_async(kvm.VM_START, vm_body(n), timeout=CALL_TIMEOUT)


async def vm_ready(lab: Lab, n: Names) -> None:
    await bridge(lab, n)
    await volume(lab, n)


async def running_vm(lab: Lab, n: Names) -> None:
    await vm_ready(lab, n)
    await start_vm(lab, n)


async def destroy_vm(lab: Lab, n: Names) -> None:
    await lab.agent.call_async(kvm.VM_DESTROY, {"vmUuid": n.vm_uuid}, timeout=CALL_TIMEOUT)


async def expunge_vm(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.VM_EXPUNGE, {"vmUuid": n.vm_uuid, "consoleLogPath": n.console_log})


async def vm_gone(lab: Lab, n: Names) -> None:
    """What the node does when a VM goes for good: destroy, expunge, its volume, the net."""
    await destroy_vm(lab, n)
    await expunge_vm(lab, n)
    await volume_gone(lab, n)
    await bridge_gone(lab, n)


async def expunged_vm_gone(lab: Lab, n: Names) -> None:
    await volume_gone(lab, n)
    await bridge_gone(lab, n)


async def pause_vm(lab: Lab, n: Names) -> Any:
    return await lab.agent.call(kvm.VM_PAUSE, {"vmUuid": n.vm_uuid})


async def paused_vm(lab: Lab, n: Names) -> None:
    await running_vm(lab, n)
    await pause_vm(lab, n)


async def destroyed_vm(lab: Lab, n: Names) -> None:
    await running_vm(lab, n)
    await destroy_vm(lab, n)


def hostnat_body(n: Names) -> dict[str, Any]:
    return {"bridgeName": n.guest_bridge, "gatewayCidr": f"{n.guest_net[1]}/24"}


async def hostnat(lab: Lab, n: Names) -> Any:
    return await lab.agent.call(kvm.HOSTNAT_SET, hostnat_body(n))


async def hostnat_gone(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.HOSTNAT_REMOVE, hostnat_body(n))
    await bridge_gone(lab, n)


async def hostnat_ready(lab: Lab, n: Names) -> None:
    await bridge(lab, n)
    await hostnat(lab, n)


async def download(lab: Lab, n: Names) -> Any:
    return await lab.agent.call_async(
        kvm.IMAGE_DOWNLOAD,
        {"url": str(IMAGE), "installPath": n.image, "checksum": "", "taskUuid": n.hex},
        timeout=CALL_TIMEOUT,
        cancellable=True,
    )


async def image_gone(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.FILE_DELETE, {"path": n.image})


async def two_bridges(lab: Lab, n: Names) -> None:
    for name in (n.guest_bridge, n.public_bridge):
        await lab.agent.call(kvm.BRIDGE_CREATE, {"bridgeName": name})


def appliance_body(n: Names) -> dict[str, Any]:
    return {
        "applianceUuid": n.appliance_uuid,
        "nics": [
            {
                "bridgeName": n.guest_bridge,
                "mac": n.guest_mac,
                "ip": str(n.guest_net[1]),
                "prefixLength": 24,
                "role": "guest",
            },
            {
                "bridgeName": n.public_bridge,
                "mac": n.public_mac,
                "ip": str(n.public_net[10]),
                "prefixLength": 24,
                "role": "public",
            },
        ],
        "defaultGateway": str(n.public_net[1]),
    }


async def create_appliance(lab: Lab, n: Names) -> Any:
    answer = await lab.agent.call(kvm.APPLIANCE_CREATE, appliance_body(n), timeout=90)
    await lab.open_router(answer)
    return answer


async def appliance(lab: Lab, n: Names) -> None:
    await two_bridges(lab, n)
    await create_appliance(lab, n)


async def appliance_gone(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.APPLIANCE_DESTROY, {"applianceUuid": n.appliance_uuid}, timeout=90)
    await bridges_gone(lab, n)


async def bridges_gone(lab: Lab, n: Names) -> None:
    for name in (n.guest_bridge, n.public_bridge):
        await lab.agent.call(kvm.BRIDGE_DELETE, {"bridgeName": name})


def dhcp_entry(n: Names) -> dict[str, Any]:
    return {
        "ip": str(n.guest_net[20]),
        "mac": n.vm_mac,
        "netmask": "255.255.255.0",
        "gateway": str(n.guest_net[1]),
        "hostname": f"crash-{n.hex}",
        "dnsDomain": "",
        "dns": [str(n.guest_net[1])],
        "isDefaultL3Network": True,
        "vrNicMac": n.guest_mac,
    }


def dns_body(n: Names) -> dict[str, Any]:
    return {"dns": [{"dnsAddress": str(n.public_net[1]), "nicMac": n.guest_mac}]}


def snat_body(n: Names) -> dict[str, Any]:
    return {
        "snats": [
            {
                "privateNicMac": n.guest_mac,
                "privateNicIp": str(n.guest_net[1]),
                "snatNetmask": "255.255.255.0",
                "publicNicMac": n.public_mac,
                "publicIp": str(n.public_net[10]),
            }
        ]
    }


def vr_step(path: str, body: Callable[[Names], dict[str, Any]]) -> Step:
    async def step(lab: Lab, n: Names) -> Any:
        return await lab.vr.call(path, body(n))

    return step


def kvm_step(path: str, body: Callable[[Names], dict[str, Any]]) -> Step:
    async def step(lab: Lab, n: Names) -> Any:
        return await lab.agent.call(path, body(n), timeout=60)

    return step


# -- data volumes and snapshots ----------------------------------------------------------------
def disk(n: Names) -> dict[str, Any]:
    return {"uuid": n.vm_uuid, "installPath": n.data_volume, "format": "qcow2", "deviceId": 1}


def storage_path(n: Names) -> str:
    return str(n.root / "ps")


async def data_volume(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.VOLUME_CREATE, {"installPath": n.data_volume, "size": 16 * MiB})


async def data_volume_gone(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.VOLUME_DELETE, {"installPath": n.data_volume})


async def booted(lab: Lab, n: Names) -> None:
    """The guest's shell runs (its kernel answers ACPI, so a disk can be unplugged)."""
    log = Path(n.console_log)
    for _ in range(600):
        if log.exists() and b"built-in shell" in log.read_bytes():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the guest of {n.vm_uuid} did not come up")


async def attach(lab: Lab, n: Names) -> Any:
    body = {"vmUuid": n.vm_uuid, "volume": disk(n)}
    return await lab.agent.call(kvm.VM_ATTACH_VOLUME, body, timeout=60)


async def detach(lab: Lab, n: Names) -> Any:
    body = {"vmUuid": n.vm_uuid, "volume": disk(n), "timeout": 30}
    return await lab.agent.call(kvm.VM_DETACH_VOLUME, body, timeout=90)


async def snapshot(lab: Lab, n: Names) -> Any:
    body = {"storagePath": storage_path(n), "installPath": n.volume, "newInstallPath": n.volume_top}
    return await lab.agent.call(kvm.VOLUME_SNAPSHOT, body, timeout=60)


async def snapshot_gone(lab: Lab, n: Names) -> None:
    await lab.agent.call(kvm.VOLUME_DELETE, {"installPath": n.volume_top})
    await volume_gone(lab, n)


def volume_step(path: str, extra: Callable[[Names], dict[str, Any]]) -> Step:
    """A command on the root volume's file (or, with ``installPath`` in ``extra``, another)."""
    return kvm_step(
        path, lambda n: {"storagePath": storage_path(n), "installPath": n.volume, **extra(n)}
    )


async def export(lab: Lab, n: Names) -> Any:
    body = {"storagePath": storage_path(n), "installPath": n.volume, "targetPath": n.image}
    return await lab.agent.call_async(kvm.VOLUME_EXPORT, body, timeout=CALL_TIMEOUT)


def then(*steps: Step) -> Step:
    async def step(lab: Lab, n: Names) -> None:
        for one in steps:
            await one(lab, n)

    return step


add_dhcp = vr_step(vr.ADD_DHCP, lambda n: {"rebuild": False, "dhcpEntryList": [dhcp_entry(n)]})
remove_dhcp = vr_step(vr.REMOVE_DHCP, lambda n: {"dhcpEntryList": [dhcp_entry(n)]})
set_dns = vr_step(vr.SET_DNS, dns_body)
remove_dns = vr_step(vr.REMOVE_DNS, dns_body)
set_snat = vr_step(vr.SET_SNAT, snat_body)
remove_snat = vr_step(vr.REMOVE_SNAT, snat_body)
no_snat = vr_step(vr.SYNC_SNAT, lambda _n: {"snats": []})


@dataclass(frozen=True)
class Case:
    """A command as the node sends it: what must exist first, the command, and what the
    node does to undo it (and to take away what ``setup`` made)."""

    send: Step
    setup: Step = nothing
    undo: Step = nothing


CASES: dict[str, Case] = {
    kvm.HOST_CONNECT: Case(
        kvm_step(kvm.HOST_CONNECT, lambda _n: {"hostUuid": "crash-host", "reportUrl": ""})
    ),
    kvm.HOST_PING: Case(kvm_step(kvm.HOST_PING, lambda _n: {"hostUuid": "crash-host"})),
    kvm.HOST_CAPACITY: Case(kvm_step(kvm.HOST_CAPACITY, lambda _n: {})),
    kvm.VM_START: Case(start_vm, vm_ready, vm_gone),
    kvm.VM_STOP: Case(
        lambda lab, n: lab.agent.call_async(
            kvm.VM_STOP, {"vmUuid": n.vm_uuid, "type": "cold", "timeout": 5}, timeout=CALL_TIMEOUT
        ),
        running_vm,
        vm_gone,
    ),
    kvm.VM_REBOOT: Case(
        lambda lab, n: lab.agent.call_async(
            kvm.VM_REBOOT, {"vmUuid": n.vm_uuid, "timeout": 2}, timeout=CALL_TIMEOUT
        ),
        running_vm,
        vm_gone,
    ),
    kvm.VM_PAUSE: Case(pause_vm, running_vm, vm_gone),
    kvm.VM_RESUME: Case(
        kvm_step(kvm.VM_RESUME, lambda n: {"vmUuid": n.vm_uuid}), paused_vm, vm_gone
    ),
    kvm.VM_DESTROY: Case(destroy_vm, running_vm, then(expunge_vm, expunged_vm_gone)),
    kvm.VM_EXPUNGE: Case(expunge_vm, destroyed_vm, expunged_vm_gone),
    kvm.VM_SYNC: Case(kvm_step(kvm.VM_SYNC, lambda _n: {})),
    kvm.VM_CONSOLE: Case(
        kvm_step(kvm.VM_CONSOLE, lambda n: {"vmUuid": n.vm_uuid}), running_vm, vm_gone
    ),
    kvm.VM_ATTACH_VOLUME: Case(
        attach, then(running_vm, data_volume), then(vm_gone, data_volume_gone)
    ),
    kvm.VM_DETACH_VOLUME: Case(
        detach, then(running_vm, data_volume, booted, attach), then(vm_gone, data_volume_gone)
    ),
    kvm.VOLUME_SNAPSHOT: Case(snapshot, volume, snapshot_gone),
    kvm.VOLUME_REBASE: Case(
        volume_step(
            kvm.VOLUME_REBASE,
            lambda n: {
                "installPath": n.volume_top,
                "backingFile": str(n.root / "ps" / "imagecache" / "base.qcow2"),
            },
        ),
        then(volume, snapshot),
        snapshot_gone,
    ),
    kvm.VOLUME_RESIZE: Case(
        volume_step(kvm.VOLUME_RESIZE, lambda _n: {"size": 1024 * MiB}), volume, volume_gone
    ),
    kvm.VOLUME_CHAIN: Case(
        kvm_step(
            kvm.VOLUME_CHAIN,
            lambda n: {"storagePath": storage_path(n), "installPaths": [n.volume]},
        ),
        volume,
        volume_gone,
    ),
    kvm.VOLUME_EXPORT: Case(export, volume, then(image_gone, volume_gone)),
    kvm.VOLUME_CREATE: Case(volume, undo=volume_gone),
    kvm.VOLUME_DELETE: Case(volume_gone, volume),
    kvm.IMAGE_DOWNLOAD: Case(download, undo=image_gone),
    kvm.IMAGE_INFO: Case(
        kvm_step(
            kvm.IMAGE_INFO,
            lambda n: {"installPath": str(n.root / "ps" / "imagecache" / "base.qcow2")},
        )
    ),
    kvm.FILE_DELETE: Case(image_gone, download),
    kvm.STORAGE_INIT: Case(kvm_step(kvm.STORAGE_INIT, lambda n: {"path": n.storage})),
    kvm.BRIDGE_CREATE: Case(bridge, undo=bridge_gone),
    kvm.BRIDGE_DELETE: Case(bridge_gone, bridge),
    kvm.BRIDGE_CHECK: Case(
        kvm_step(kvm.BRIDGE_CHECK, lambda n: {"bridgeNames": [n.guest_bridge]}), bridge, bridge_gone
    ),
    kvm.HOSTNAT_SET: Case(hostnat, bridge, hostnat_gone),
    kvm.HOSTNAT_REMOVE: Case(
        kvm_step(kvm.HOSTNAT_REMOVE, hostnat_body), hostnat_ready, bridge_gone
    ),
    kvm.HOST_ROUTES: Case(kvm_step(kvm.HOST_ROUTES, lambda _n: {})),
    kvm.LAB_INVENTORY: Case(kvm_step(kvm.LAB_INVENTORY, lambda n: {"storagePaths": [n.storage]})),
    kvm.LAB_REMOVE: Case(bridge_removed_as_orphan, bridge, bridge_gone),
    kvm.APPLIANCE_CREATE: Case(create_appliance, two_bridges, appliance_gone),
    kvm.APPLIANCE_DESTROY: Case(
        kvm_step(kvm.APPLIANCE_DESTROY, lambda n: {"applianceUuid": n.appliance_uuid}),
        appliance,
        bridges_gone,
    ),
    kvm.APPLIANCE_CHECK: Case(
        kvm_step(kvm.APPLIANCE_CHECK, lambda n: {"applianceUuid": n.appliance_uuid}),
        appliance,
        appliance_gone,
    ),
    vr.INIT: Case(
        vr_step(vr.INIT, lambda n: {"uuid": n.appliance_uuid}), appliance, appliance_gone
    ),
    vr.PING: Case(vr_step(vr.PING, lambda _n: {}), appliance, appliance_gone),
    vr.ADD_DHCP: Case(add_dhcp, appliance, then(remove_dhcp, appliance_gone)),
    vr.REMOVE_DHCP: Case(remove_dhcp, then(appliance, add_dhcp), appliance_gone),
    vr.SET_DNS: Case(set_dns, appliance, then(remove_dns, appliance_gone)),
    vr.REMOVE_DNS: Case(remove_dns, then(appliance, set_dns), appliance_gone),
    vr.SET_SNAT: Case(set_snat, appliance, then(remove_snat, appliance_gone)),
    vr.REMOVE_SNAT: Case(remove_snat, then(appliance, set_snat), appliance_gone),
    vr.SYNC_SNAT: Case(vr_step(vr.SYNC_SNAT, snat_body), appliance, then(no_snat, appliance_gone)),
}


# -- what is on the host ---------------------------------------------------------------------
def objects(n: Names) -> set[host_leaks.HostObject]:
    """This case's host objects (the lab agent's own log and token aside)."""
    keep = {str(n.root / "agent" / name) for name in ("agent.log", kvm.TOKEN_FILE)}
    return {
        obj
        for obj in host_leaks.snapshot(str(n.root))
        if n.owns(obj) and not (obj.kind == "path" and obj.name in keep)
    }


def copies(n: Names) -> list[str]:
    """What exists twice (or half-made) of this case: QEMU processes of its domain, router
    agents or dnsmasq processes of its appliance, in-progress files."""
    found = objects(n)
    qemu = [o for o in found if o.kind == "process" and f"guest=zsl-{n.vm_uuid}" in o.detail]
    agents = [o for o in found if o.kind == "process" and "virtual_router.main" in o.detail]
    dnsmasq = [o for o in found if o.kind == "process" and "dnsmasq" in o.detail.split()[0]]
    half = [o for o in found if o.kind == "path" and o.name.endswith((".part", ".creating"))]
    twice = [group for group in (qemu, agents, dnsmasq) if len(group) > 1]
    return [str(o) for group in [*twice, half] for o in group]


async def leaks(n: Names, before: set[host_leaks.HostObject]) -> list[str]:
    """This case's objects that were not there before it, after a few seconds to go."""
    for _ in range(40):
        left = objects(n) - before
        if not left:
            return []
        await asyncio.sleep(0.25)
    return sorted(str(o) for o in left)


def by_hand(n: Names) -> None:
    """Whatever a failed case left: its domain, namespace (and processes), links, rules."""
    name = f"zsl-{n.vm_uuid}"
    if name in virsh("list", "--all", "--name").split():
        virsh("destroy", name)
        virsh("undefine", name)
    ns = namespace_name(n.appliance_uuid)
    if ns in sh("ip", "netns", "list", check=False).split():
        kill_all(namespace_pids(ns))
        sh("ip", "netns", "del", ns, check=False)
    for link in sh("ip", "-o", "link", check=False).splitlines():
        ifname = link.split(":", 2)[1].strip().split("@", 1)[0] if ":" in link else ""
        if n.hex in ifname or ifname.startswith(veth_prefix(n.appliance_uuid)):
            sh("ip", "link", "del", ifname, check=False)


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """The lab's directory (QEMU must traverse it: not pytest's 0700 tmp), with a cached
    image on its primary storage."""
    guest_image.main(["--output", str(IMAGE)])  # builds only if missing or stale
    path = Path(tempfile.mkdtemp(prefix="zsl-agentcrash-", dir="/var/tmp"))
    path.chmod(0o755)
    cache = path / "ps" / "imagecache"
    cache.mkdir(parents=True)
    shutil.copyfile(IMAGE, cache / "base.qcow2")
    try:
        yield path
    finally:
        kill_all(_processes_under(path))
        shutil.rmtree(path, ignore_errors=True)


def _processes_under(path: Path) -> list[int]:
    found = []
    for obj in host_leaks.processes(str(path)):
        if host_leaks.mentions(obj.detail, str(path)):
            found.append(int(obj.name))
    return found


@pytest.fixture
async def lab(root: Path) -> AsyncIterator[Lab]:
    rest = RestFacade("127.0.0.1", 0)
    await rest.start()
    lab = Lab(root, rest)
    try:
        yield lab
    finally:
        await lab.stop()
        await rest.stop()


# -- the tests ---------------------------------------------------------------------------------
def test_every_command_has_a_case() -> None:
    assert sorted(CASES) == sorted(KVM_COMMANDS + VR_COMMANDS)


async def restart(lab: Lab, path: str, n: Names) -> None:
    """Start the agent again without the fault; a router's agent as the node does it when
    one died (APPLIANCE_CREATE makes what is missing, a dead agent included)."""
    await lab.stop()
    await lab.start()
    if path in VR_COMMANDS:
        await create_appliance(lab, n)


@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("path", KVM_COMMANDS + VR_COMMANDS)
async def test_an_agent_killed_at_a_command(lab: Lab, root: Path, path: str, when: str) -> None:
    case = CASES[path]
    n = Names(root)
    before = objects(n)
    try:
        await lab.start(fault=f"{path}:{when}")
        await case.setup(lab, n)
        with pytest.raises(OperationError) as failed:
            await case.send(lab, n)
        # Failed because the agent died, said so, and not by the call's timeout.
        assert failed.value.error.code != SysErrors.TIMEOUT, failed.value
        assert any(
            words in str(failed.value) for words in ("went away", "cannot call", "cannot reach")
        ), failed.value
        await lab.killed(path)

        await restart(lab, path, n)
        await case.send(lab, n)  # the same command again: done once, whatever the first did
        assert copies(n) == []
        await case.undo(lab, n)
        await lab.stop()
        assert await leaks(n, before) == []
    finally:
        await lab.stop()
        by_hand(n)


@pytest.fixture
async def slow_image() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """An http URL serving the tiny guest image: its first MiB at once, the rest only once
    the event is set (a download in progress for as long as the test likes)."""
    data = IMAGE.read_bytes()
    release = asyncio.Event()

    async def serve(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await response.prepare(request)
        await response.write(data[:MiB])
        await release.wait()
        await response.write(data[MiB:])
        return response

    app = web.Application()
    app.router.add_get("/tiny.qcow2", serve)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/tiny.qcow2", release
    finally:
        release.set()
        await runner.cleanup()


def in_progress(n: Names) -> list[Path]:
    """The files beside the download's target that are not it (what it writes first)."""
    target = Path(n.image)
    return list(target.parent.glob(f".{target.name}.*"))


def downloading(n: Names) -> bool:
    """Whether at least a MiB of the download was written."""
    return any(path.stat().st_size >= MiB for path in in_progress(n))


async def test_an_agent_killed_during_a_download_fails_the_call_and_leaves_nothing(
    lab: Lab, root: Path, slow_image: tuple[str, asyncio.Event]
) -> None:
    """SIGKILL from outside while a download runs: the node's call fails as soon as its
    watch sees the agent gone (not after its timeout); the next agent's download of the
    same target overwrites what the dead one left, and a delete leaves nothing."""
    url, release = slow_image
    n = Names(root)
    before = objects(n)
    body = {"url": url, "installPath": n.image, "checksum": "", "stallTimeout": 600}
    try:
        await lab.start()
        call = asyncio.ensure_future(
            lab.agent.call_async(kvm.IMAGE_DOWNLOAD, body, timeout=CALL_TIMEOUT)
        )
        await wait_for(lambda: downloading(n), "the download to be under way", 30)
        assert lab.proc is not None
        lab.proc.kill()
        with pytest.raises(OperationError, match="went away during /image/download") as failed:
            await call
        assert failed.value.error.code != SysErrors.TIMEOUT
        assert downloading(n) and not Path(n.image).exists()  # never mistaken for an image

        await lab.start()
        release.set()
        answer = await lab.agent.call_async(kvm.IMAGE_DOWNLOAD, body, timeout=CALL_TIMEOUT)
        assert answer["format"] == "qcow2" and Path(n.image).read_bytes() == IMAGE.read_bytes()
        assert copies(n) == []
        await image_gone(lab, n)
        await lab.stop()
        assert await leaks(n, before) == []
    finally:
        await lab.stop()
        for left in in_progress(n):
            left.unlink(missing_ok=True)


async def test_a_download_the_agent_died_in_is_removed_by_the_nodes_undo(
    lab: Lab, root: Path, slow_image: tuple[str, asyncio.Event]
) -> None:
    """The node's rollback of a download whose agent died is FILE_DELETE of the target: it
    takes what the dead download left too."""
    url, _release = slow_image
    n = Names(root)
    before = objects(n)
    body = {"url": url, "installPath": n.image, "checksum": "", "stallTimeout": 600}
    try:
        await lab.start()
        call = asyncio.ensure_future(
            lab.agent.call_async(kvm.IMAGE_DOWNLOAD, body, timeout=CALL_TIMEOUT)
        )
        await wait_for(lambda: downloading(n), "the download to be under way", 30)
        assert lab.proc is not None
        lab.proc.kill()
        with pytest.raises(OperationError, match="went away"):
            await call
        await lab.start()
        await image_gone(lab, n)
        await lab.stop()
        assert await leaks(n, before) == []
    finally:
        await lab.stop()
        for left in in_progress(n):
            left.unlink(missing_ok=True)

"""Destroy and expunge never lie (issue 13, point 5), on the real host with libvirt.

DestroyVmInstance (each vm.deletionPolicy) and ExpungeVmInstance succeed only when the
domain is gone and what the VM held is free.  When they cannot know that (the host's KVM
agent is dead, the host is Disconnected, the agent answers but libvirt cannot remove the
domain) they fail with an error naming the host and what was not done, and the VM keeps
its state, its host, its NIC and IP (no new VM gets that address), its capacity, its
volume and every row.  Once the agent is back the same call succeeds and leaves nothing:
no domain, tap, volume file, console log, IP or capacity.  A domain removed by hand
(virsh destroy and undefine) is no obstacle: destroy and expunge succeed and leave
nothing.

One node serves every case (a VM each; the image cache and networks are kept).  The
host's ping tracker is slowed down so that a killed agent stays dead until the test
brings it back (ReconnectHost starts the agent of this machine's host again).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from contracts.names import tap_name
from core.host.plugin import HostPlugin
from core.host.port_holder import port_holder
from core.network.l3.models import UsedIpVO
from core.vm.plugin import VmPlugin
from core.volume.models import VolumeVO
from tests.conftest import ok
from tests.system.net_lab import Lab, MiB, alive, running_node, sh, virsh, wait_for, why_not_libvirt

pytestmark = [pytest.mark.system, pytest.mark.asyncio(loop_scope="module")]
POLICIES = ("Direct", "Delay", "Never")
OFFERING_MEMORY = 256 * MiB
"""What a VM of running_node's offering (1 CPU) holds on the host."""


if why_not_libvirt("libvirt, links"):
    pytest.skip(why_not_libvirt("libvirt, links"), allow_module_level=True)


@dataclass
class Scene:
    """The lab, the L3 network the VMs are on and the host they run on."""

    lab: Lab
    l3_uuid: str
    host: dict[str, Any]

    @property
    def node(self) -> Any:
        return self.lab.node

    async def create_vm(self, name: str) -> dict[str, Any]:
        vm = await ok(
            self.node,
            "CreateVmInstance",
            name=name,
            instanceOfferingUuid=self.lab.instance_offering_uuid,
            imageUuid=self.lab.image_uuid,
            l3NetworkUuids=[self.l3_uuid],
        )
        self.lab.owned.vm_uuids.add(vm["uuid"])
        assert vm["state"] == "Running"
        return dict(vm)

    async def policy(self, value: str) -> None:
        await ok(self.node, "UpdateGlobalConfig", category="vm", name="deletionPolicy", value=value)

    # -- the host's agent --------------------------------------------------------------

    def agent_pid(self) -> int | None:
        holder = port_holder(self.host["agentPort"])
        return None if holder is None else holder.pid

    async def kill_agent(self) -> None:
        pid = self.agent_pid()
        assert pid is not None, "the host's agent does not run"
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: not alive(pid), "the agent to die", 10)

    async def agent_back(self) -> None:
        host = await ok(self.node, "ReconnectHost", uuid=self.host["uuid"])
        assert host["status"] == "Connected"

    @property
    def agent_named(self) -> str:
        """How errors name the host's agent."""
        return f"host {self.host['name']} ({self.host['managementIp']}:{self.host['agentPort']})"

    async def host_now(self) -> dict[str, Any]:
        [host] = await ok(self.node, "QueryHost", conditions=[f"uuid={self.host['uuid']}"])
        return dict(host)

    # -- what a VM holds ---------------------------------------------------------------

    async def held(self, vm: dict[str, Any]) -> dict[str, Any]:
        """Everything of ``vm`` in the database and on the host."""
        node = self.node
        rows = await ok(node, "QueryVmInstance", conditions=[f"uuid={vm['uuid']}"])
        nics = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
        root = select(VolumeVO.install_path).where(VolumeVO.uuid == vm["rootVolumeUuid"])
        volumes = await node.db.run(lambda s: list(s.scalars(root)))
        ip = select(UsedIpVO.ip).where(UsedIpVO.l3_network_uuid == self.l3_uuid)
        used = await node.db.run(lambda s: list(s.scalars(ip.where(UsedIpVO.ip == vm["ip"]))))
        host = await self.host_now()
        name = f"zsl-{vm['uuid']}"
        return {
            "vm": [(r["state"], r["hostUuid"]) for r in rows],
            "nics": [(n["ip"], n["mac"]) for n in nics],
            "usedIps": used,
            "capacity": (host["availableCpuCapacity"], host["availableMemoryCapacity"]),
            "volumes": volumes,
            "files": sorted(str(p) for p in self.files(vm)),
            "domain": virsh("domstate", name).strip() if name in domains() else None,
            "tap": tap_exists(tap_name(vm["uuid"], 0)),
        }

    def files(self, vm: dict[str, Any]) -> list[Path]:
        storage = self.node.data_dir / "primary-storage"
        return [
            *(storage / "rootvolumes" / f"vm-{vm['uuid']}").rglob("*"),
            *(storage / "consoles").glob(f"{vm['uuid']}*"),
        ]


def domains() -> list[str]:
    return virsh("list", "--all", "--name").split()


def tap_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True).returncode == 0


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``path`` cannot be removed (chattr +i) until the block ends."""
    sh("chattr", "+i", str(path))
    try:
        yield
    finally:
        sh("chattr", "-i", str(path), check=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scene() -> AsyncIterator[Scene]:
    async with running_node("destroy") as lab:
        node = lab.node
        # A killed agent stays dead until the test brings it back.
        await ok(node, "UpdateGlobalConfig", category="host", name="ping.interval", value="86400")
        tags = await ok(node, "QuerySystemTag", conditions=["tag=hostNat"])
        [host] = await ok(node, "QueryHost")
        yield Scene(lab, tags[0]["resourceUuid"], dict(host))


def _without(held: dict[str, Any]) -> tuple[int, int]:
    """The host's free capacity without the VM that holds ``held``."""
    cpu, memory = held["capacity"]
    return cpu + 1, memory + OFFERING_MEMORY


async def _running(scene: Scene, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new running VM (with its IP) and what it holds."""
    vm = await scene.create_vm(name)
    [nic] = await ok(scene.node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    vm["ip"] = nic["ip"]
    held = await scene.held(vm)
    assert held["domain"] == "running" and held["tap"] and held["usedIps"] == [nic["ip"]]
    assert held["files"], held
    return vm, held


async def _fails(scene: Scene, api: str, vm: dict[str, Any], *words: str) -> str:
    reply = await scene.node.call(api, {"uuid": vm["uuid"]})
    assert not reply.success, f"{api} succeeded: {reply.to_dict()}"
    text = str(reply.error)
    for word in words:
        assert word in text, text
    return text


async def _gone(scene: Scene, vm: dict[str, Any], free: tuple[int, int]) -> None:
    held = await scene.held(vm)
    assert held == {
        "vm": [],
        "nics": [],
        "usedIps": [],
        "capacity": free,
        "volumes": [],
        "files": [],
        "domain": None,
        "tap": False,
    }


async def test_destroy_with_the_agent_dead_fails_and_keeps_everything(scene: Scene) -> None:
    """Each policy: the call fails naming the host and the domain destroy; nothing moved.
    Back: Direct destroys and expunges for good."""
    vm, held = await _running(scene, "dead-agent")
    free = _without(held)
    await scene.kill_agent()
    try:
        for policy in POLICIES:
            await scene.policy(policy)
            await _fails(scene, "DestroyVmInstance", vm, "/vm/destroy", scene.agent_named)
            assert await scene.held(vm) == held, policy
    finally:
        await scene.agent_back()
    # The address is still the VM's: a new VM gets another one.
    other, _ = await _running(scene, "neighbour")
    assert other["ip"] != vm["ip"]
    await scene.policy("Direct")
    await ok(scene.node, "DestroyVmInstance", uuid=vm["uuid"])
    free_after = (free[0] - 1, free[1] - OFFERING_MEMORY)  # the neighbour runs
    await _gone(scene, vm, free_after)
    await ok(scene.node, "DestroyVmInstance", uuid=other["uuid"])
    await _gone(scene, other, free)


async def test_an_unknown_vm_on_a_disconnected_host_is_not_destroyed_blind(scene: Scene) -> None:
    """A VM the host reported Unknown, its host marked Disconnected (its agent dead and
    cannot start again): the destroy fails and the VM stays as it was.  Back, the VM is
    destroyed (Never: kept Destroyed, its IP still its own); then the expunge, with the
    agent dead again, fails and loses nothing; with the agent back it leaves nothing."""
    vm, held = await _running(scene, "unknown")
    free = _without(held)
    await scene.node.plugin(VmPlugin).reconcile(vm["uuid"], "Unknown", scene.host["uuid"])
    held["vm"] = [("Unknown", scene.host["uuid"])]
    assert await scene.held(vm) == held
    await scene.kill_agent()
    try:
        # The next ping cannot start it again (it cannot open its log): Disconnected.
        with immutable(scene.node.data_dir / "agent" / "agent.log"):
            await scene.node.plugin(HostPlugin).ping(scene.host["uuid"])
        assert (await scene.host_now())["status"] == "Disconnected"
        await scene.policy("Never")
        await _fails(scene, "DestroyVmInstance", vm, "/vm/destroy", scene.agent_named)
        assert await scene.held(vm) == held
    finally:
        await scene.agent_back()

    async def running() -> bool:
        return (await scene.held(vm))["vm"] == [("Running", scene.host["uuid"])]

    await wait_for(running, "the reconnect to find the VM Running", 30)
    await ok(scene.node, "DestroyVmInstance", uuid=vm["uuid"])
    destroyed = await scene.held(vm)
    assert destroyed == {
        **held,
        "vm": [("Destroyed", None)],
        "capacity": free,
        "domain": None,
        "tap": False,
    }
    await scene.kill_agent()
    try:
        await _fails(scene, "ExpungeVmInstance", vm, scene.agent_named)
        assert await scene.held(vm) == destroyed
    finally:
        await scene.agent_back()
    await ok(scene.node, "ExpungeVmInstance", uuid=vm["uuid"])
    await _gone(scene, vm, free)


async def test_a_domain_removed_by_hand_is_destroyed_and_expunged(scene: Scene) -> None:
    """virsh destroy and undefine behind the node's back: the destroy (Delay) and the
    expunge succeed, and nothing is left."""
    vm, held = await _running(scene, "by-hand")
    free = _without(held)
    virsh("destroy", f"zsl-{vm['uuid']}")
    virsh("undefine", f"zsl-{vm['uuid']}")
    await scene.policy("Delay")
    await ok(scene.node, "DestroyVmInstance", uuid=vm["uuid"])
    assert await scene.held(vm) == {
        **held,
        "vm": [("Destroyed", None)],
        "capacity": free,
        "domain": None,
        "tap": False,
    }
    await ok(scene.node, "ExpungeVmInstance", uuid=vm["uuid"])
    await _gone(scene, vm, free)


async def test_what_the_host_cannot_remove_fails_the_destroy(scene: Scene) -> None:
    """The agent answers, but libvirt cannot undefine the domain (its definition file
    cannot be removed): the destroy fails naming the host and libvirt's reason, and the VM
    keeps its state, IP, capacity and volume (libvirt powered the domain off: the agent's
    report of it comes while the destroy runs, and the destroy decides the state).  Then
    (Direct) the domain goes but the volume file cannot: the call fails, the VM stays
    Destroyed with its NIC, IP and volume.  Once the file can go, the expunge leaves
    nothing."""
    vm, held = await _running(scene, "stuck")
    free = _without(held)
    definition = Path("/etc/libvirt/qemu") / f"zsl-{vm['uuid']}.xml"
    assert definition.exists()
    await scene.policy("Direct")
    with immutable(definition):
        text = await _fails(scene, "DestroyVmInstance", vm, "/vm/destroy", scene.agent_named)
        assert "cannot undefine" in text
        assert await scene.held(vm) == {**held, "domain": "shut off", "tap": False}
    [volume] = held["volumes"]
    with immutable(Path(volume)):
        await _fails(
            scene,
            "DestroyVmInstance",
            vm,
            "/volume/delete",
            scene.agent_named,
            "destroyed but not expunged",
        )
        assert await scene.held(vm) == {
            **held,
            "vm": [("Destroyed", None)],
            "capacity": free,
            "domain": None,
            "tap": False,
            "files": [f for f in held["files"] if "/consoles/" not in f],
        }
    await ok(scene.node, "ExpungeVmInstance", uuid=vm["uuid"])
    await _gone(scene, vm, free)

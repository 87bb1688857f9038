"""The libvirt backend on libvirt's test driver (test:///default): unit tests only.

Each connection to test:///default is a fresh, private host with one domain named
``test`` - which is not ours, so the agent must never list, change or report it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import libvirt
import pytest

from agent.acceleration import FixedAcceleration
from agent.backend import DataVolumeSpec, VmSpec
from agent.libvirt_backend import LibvirtBackend, domain_state, event_state
from agentkit.errors import AgentError
from tests.agent.crafted_images import craft, host_secret
from tests.agent.helpers import wait_until

TEST_URI = "test:///default"


class Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[str, str]] = []

    def __call__(self, vm_uuid: str, state: str) -> None:
        self.reports.append((vm_uuid, state))

    def states(self, vm_uuid: str) -> list[str]:
        return [s for u, s in self.reports if u == vm_uuid]

    async def wait(self, vm_uuid: str, states: list[str]) -> None:
        await wait_until(
            lambda: self.states(vm_uuid) == states,
            5,
            f"reports {states} for {vm_uuid} (got {self.states(vm_uuid)})",
        )


@pytest.fixture
async def backend() -> AsyncIterator[LibvirtBackend]:
    b = LibvirtBackend(TEST_URI, probe=FixedAcceleration("tcg"))
    await b.start()
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def reports(backend: LibvirtBackend) -> Recorder:
    recorder = Recorder()
    backend.set_state_listener(recorder)
    return recorder


def vm(vm_uuid: str, tmp_path: Path) -> VmSpec:
    """A VM with a blank qcow2 root volume (the agent checks its header before a start)."""
    root = tmp_path / f"{vm_uuid}.qcow2"
    if not root.exists():
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(root), "1M"], check=True)
    return VmSpec(
        vm_uuid=vm_uuid,
        vm_name="t",
        cpu_num=1,
        memory_size=64 * 1024**2,
        root_volume_path=str(root),
    )


async def raw_conn(backend: LibvirtBackend) -> libvirt.virConnect:
    return await asyncio.to_thread(backend._ensure_conn)


def test_event_and_state_mapping() -> None:
    assert event_state(libvirt.VIR_DOMAIN_EVENT_STARTED, 0) == "Running"
    assert event_state(libvirt.VIR_DOMAIN_EVENT_RESUMED, 0) == "Running"
    assert event_state(libvirt.VIR_DOMAIN_EVENT_SUSPENDED, 0) == "Paused"
    assert event_state(libvirt.VIR_DOMAIN_EVENT_STOPPED, 0) == "Stopped"
    assert event_state(libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, 0) == "Stopped"
    assert event_state(libvirt.VIR_DOMAIN_EVENT_CRASHED, 0) == "Crashed"
    stopped_crashed = libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED
    assert event_state(libvirt.VIR_DOMAIN_EVENT_STOPPED, stopped_crashed) == "Crashed"
    assert event_state(libvirt.VIR_DOMAIN_EVENT_DEFINED, 0) is None
    assert domain_state(libvirt.VIR_DOMAIN_RUNNING, 0) == "Running"
    assert domain_state(libvirt.VIR_DOMAIN_PAUSED, 0) == "Paused"
    assert domain_state(libvirt.VIR_DOMAIN_SHUTOFF, 0) == "Stopped"
    assert domain_state(libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_CRASHED) == "Crashed"
    assert domain_state(libvirt.VIR_DOMAIN_CRASHED, 0) == "Crashed"
    assert domain_state(libvirt.VIR_DOMAIN_NOSTATE, 0) == "Unknown"


async def test_host_facts_and_capacity(backend: LibvirtBackend) -> None:
    facts = await backend.connect("h", "")
    number = libvirt.getVersion()
    expected = f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
    assert facts.libvirt_version == expected
    assert facts.qemu_img_version[0].isdigit()
    assert facts.cpu_num == 16  # the test driver's fake host
    assert facts.acceleration == "tcg"
    assert facts.hypervisor_type == "KVM"
    assert facts.total_memory > 0 and facts.cpu_flags
    capacity = await backend.capacity()
    assert capacity.total_memory == capacity.used_memory + capacity.free_memory
    await backend.ping()


async def test_a_root_volume_naming_a_host_file_is_not_started(
    backend: LibvirtBackend, tmp_path: Path
) -> None:
    secret = host_secret(tmp_path / "host")
    for case, reason in (
        ("backing file", r"the backing file '.*/secret\.txt', which is not a disk image"),
        ("external data file", r"with an external data file \('.*/data\.bin'\)"),
    ):
        crafted = craft(case, tmp_path / "crafted", secret)
        spec = dataclasses.replace(vm("r1", tmp_path), root_volume_path=str(crafted.path))
        with pytest.raises(AgentError, match=reason):
            await backend.vm_start(spec)
        assert await backend.vm_sync() == {}  # not even defined


async def test_a_data_volume_outside_its_storage_or_naming_a_host_file_is_not_started(
    backend: LibvirtBackend, tmp_path: Path
) -> None:
    secret = host_secret(tmp_path / "host")
    volumes = tmp_path / "ps" / "datavolumes" / f"vol-{'a' * 32}"
    volumes.mkdir(parents=True)
    hostile = volumes / "hostile.qcow2"
    backing = ["-u", "-F", "raw", "-b", str(secret)]
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", *backing, str(hostile), "1M"], check=True
    )
    stray = tmp_path / "stray.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(stray), "1M"], check=True)
    for path, reason in (
        (hostile, "not a regular file under the primary storage"),
        (stray, "not in a primary storage's datavolumes/ directory"),
    ):
        volume = DataVolumeSpec("a" * 32, str(path), 1)
        spec = dataclasses.replace(vm("d1", tmp_path), data_volumes=(volume,))
        with pytest.raises(AgentError, match=reason):
            await backend.vm_start(spec)
        assert await backend.vm_sync() == {}  # not even defined


async def test_life_cycle_with_reports(
    backend: LibvirtBackend, reports: Recorder, tmp_path: Path
) -> None:
    spec = vm("a1", tmp_path)
    assert await backend.vm_start(spec) == "Running"
    await reports.wait("a1", ["Running"])
    assert await backend.vm_start(spec) == "Running"  # idempotent
    assert await backend.vm_pause("a1") == "Paused"
    assert await backend.vm_pause("a1") == "Paused"
    assert await backend.vm_resume("a1") == "Running"
    assert await backend.vm_stop("a1", "grace", 2) == "Stopped"
    assert await backend.vm_sync() == {"a1": "Stopped"}
    assert await backend.vm_stop("a1", "cold", 1) == "Stopped"  # already stopped
    with pytest.raises(AgentError, match="only a running VM can be paused"):
        await backend.vm_pause("a1")
    assert await backend.vm_reboot("a1", 1) == "Running"
    assert await backend.vm_stop("a1", "force", 1) == "Stopped"
    await reports.wait("a1", ["Running", "Paused", "Running", "Stopped", "Running", "Stopped"])
    await backend.vm_destroy("a1")
    assert await backend.vm_sync() == {}
    await backend.vm_destroy("a1")  # gone already: fine
    assert await backend.vm_stop("a1", "grace", 1) == "Stopped"
    with pytest.raises(AgentError, match="no domain zsl-a1"):
        await backend.vm_pause("a1")


async def test_destroy_of_a_running_vm_reports_stopped(
    backend: LibvirtBackend, reports: Recorder, tmp_path: Path
) -> None:
    await backend.vm_start(vm("b1", tmp_path))
    await backend.vm_destroy("b1")
    await reports.wait("b1", ["Running", "Stopped"])
    conn = await raw_conn(backend)
    assert "zsl-b1" not in [d.name() for d in conn.listAllDomains(0)]


async def test_other_domains_are_invisible(
    backend: LibvirtBackend, reports: Recorder, tmp_path: Path
) -> None:
    conn = await raw_conn(backend)
    other = conn.lookupByName("test")  # the test driver's own, running domain
    await backend.vm_start(vm("c1", tmp_path))
    await asyncio.to_thread(other.suspend)
    await asyncio.to_thread(other.resume)
    await asyncio.to_thread(other.destroy)
    assert await backend.vm_sync() == {"c1": "Running"}
    await backend.vm_stop("c1", "cold", 1)
    await reports.wait("c1", ["Running", "Stopped"])
    assert [u for u, _ in reports.reports] == ["c1", "c1"]
    assert other.isActive() == 0 and other.isPersistent() == 1  # untouched by the agent


async def test_a_change_from_outside_is_reported(
    backend: LibvirtBackend, reports: Recorder, tmp_path: Path
) -> None:
    await backend.vm_start(vm("d1", tmp_path))
    conn = await raw_conn(backend)
    dom = conn.lookupByName("zsl-d1")
    await asyncio.to_thread(dom.destroy)
    await reports.wait("d1", ["Running", "Stopped"])


async def test_console_needs_a_running_vm(backend: LibvirtBackend, tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="no domain"):
        await backend.vm_console("e1")
    await backend.vm_start(vm("e1", tmp_path))
    await backend.vm_stop("e1", "cold", 1)
    with pytest.raises(AgentError, match="Stopped; its console has no pty"):
        await backend.vm_console("e1")


async def test_reconnects_after_the_connection_is_lost(
    backend: LibvirtBackend, reports: Recorder, tmp_path: Path
) -> None:
    old = await raw_conn(backend)
    await asyncio.to_thread(old.close)
    backend._on_closed(libvirt.VIR_CONNECT_CLOSE_REASON_EOF)  # what the close callback does
    await wait_until(lambda: backend._conn is not None and backend._conn is not old, 5, "reconnect")
    # Events flow on the new connection.
    await backend.vm_start(vm("f1", tmp_path))
    await reports.wait("f1", ["Running"])
    await backend.ping()


async def test_unreachable_libvirt_is_a_clear_error() -> None:
    b = LibvirtBackend("test:///no/such/file.xml", probe=FixedAcceleration("tcg"))
    await b.start()  # keeps trying in the background instead of failing the agent
    try:
        with pytest.raises(AgentError, match="cannot connect to libvirt at test:///no/such"):
            await b.ping()
    finally:
        await b.close()

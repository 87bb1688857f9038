"""The real agent process over qemu:///system: host facts, a TCG VM's whole life, reports.

Everything made here is named ``zsl-<random uuid>`` (domain) or lives in one temp
directory, and is removed in ``finally``; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import libvirt
import pytest

from agent.acceleration import AccelerationProbe
from agent.host_facts import format_libvirt_version, read_cpuinfo
from contracts.kvm import DOMAIN_PREFIX, TOKEN_FILE
from tests.agent.helpers import AgentCaller, CoreStub, wait_until
from tests.agent.test_main import AGENT_BIN, free_port

pytestmark = pytest.mark.system

URI = "qemu:///system"


def _libvirt_available() -> str:
    if os.geteuid() != 0:
        return "needs root"
    try:
        libvirt.open(URI).close()
    except libvirt.libvirtError as exc:
        return f"no libvirtd on {URI} ({exc}); run `make services`"
    return ""


_why_not = _libvirt_available()
if _why_not:
    pytest.skip(_why_not, allow_module_level=True)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory QEMU (user libvirt-qemu) can traverse, unlike pytest's 0700 tmp dirs."""
    path = Path(tempfile.mkdtemp(prefix="zsl-agent-system-", dir="/var/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def agent(workdir: Path, core: CoreStub) -> AsyncIterator[AgentCaller]:
    data_dir = workdir / "agent"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(AGENT_BIN),
        "--backend",
        "libvirt",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    caller: AgentCaller | None = None
    try:
        log = data_dir / "agent.log"
        await wait_until(
            lambda: log.exists() and "listening" in log.read_text(), 30, "the agent to listen"
        )
        token = (data_dir / TOKEN_FILE).read_text().strip()
        caller = AgentCaller(f"http://127.0.0.1:{port}", token, core)
        yield caller
    finally:
        if caller is not None:
            await caller.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def remove_domain(name: str) -> None:
    """Best-effort cleanup of a domain this test made (only ever a zsl- one)."""
    assert name.startswith(DOMAIN_PREFIX)
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        conn.close()
        return
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    conn.close()


def domain_exists(name: str) -> bool:
    conn = libvirt.open(URI)
    try:
        conn.lookupByName(name)
        return True
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def domain_type(name: str) -> str:
    conn = libvirt.open(URI)
    try:
        return ET.fromstring(conn.lookupByName(name).XMLDesc(0)).get("type", "")
    finally:
        conn.close()


async def test_host_connect_reports_versions_flags_capacity_and_acceleration(
    agent: AgentCaller, core: CoreStub
) -> None:
    facts = await agent.ok("/host/connect", {"hostUuid": "host-s", "reportUrl": core.report_url})
    conn = libvirt.open(URI)
    try:
        assert facts["libvirtVersion"] == format_libvirt_version(conn.getLibVersion())
        assert facts["cpuNum"] == conn.getInfo()[2]
    finally:
        conn.close()
    qemu_img = subprocess.run(["qemu-img", "--version"], capture_output=True, text=True).stdout
    assert re.match(r"\d+\.\d+", facts["qemuImgVersion"])
    assert f"version {facts['qemuImgVersion']}" in qemu_img
    assert facts["cpuFlags"] == list(read_cpuinfo()[1])
    assert facts["hypervisorType"] == "KVM"
    assert facts["totalMemory"] > 256 * 1024**2
    assert facts["acceleration"] in ("kvm", "tcg")
    direct = await AccelerationProbe().result()
    assert facts["acceleration"] == direct.acceleration, direct.reason

    capacity = await agent.ok("/host/capacity")
    assert capacity["totalMemory"] == capacity["usedMemory"] + capacity["freeMemory"]
    assert 0 < capacity["usedMemory"] < capacity["totalMemory"]
    assert (await agent.ok("/host/ping"))["hostUuid"] == "host-s"


async def test_a_vm_life_on_qemu_system(agent: AgentCaller, core: CoreStub, workdir: Path) -> None:
    vm = uuid.uuid4().hex
    name = DOMAIN_PREFIX + vm
    facts = await agent.ok("/host/connect", {"hostUuid": "host-s", "reportUrl": core.report_url})
    base = workdir / "images" / "blank.qcow2"
    root = workdir / "volumes" / f"{vm}.qcow2"
    console_log = workdir / "logs" / f"{vm}.log"
    base.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    try:
        created = await agent.ok(
            "/volume/create", {"installPath": str(root), "backingFile": str(base), "size": 0}
        )
        assert created["size"] == 64 * 1024**2

        # Start: the answer comes through the callback, the state through a report.
        start = {
            "vmUuid": vm,
            "vmName": "agent system test",
            "cpuNum": 1,
            "memorySize": 128 * 1024**2,
            "rootVolume": {"installPath": str(root), "format": "qcow2"},
            "nics": [],
            "consoleLogPath": str(console_log),
            "timeout": 60,
        }
        answer = await agent.ok_async("/vm/start", start, timeout=120)
        assert answer["state"] == "Running"
        await core.wait_for_state(vm, "Running")
        assert domain_type(name) == ("kvm" if facts["acceleration"] == "kvm" else "qemu")
        assert (await agent.ok_async("/vm/start", start))["state"] == "Running"  # idempotent

        console = await agent.ok("/vm/console", {"vmUuid": vm})
        assert console["pty"].startswith("/dev/pts/") and os.path.exists(console["pty"])
        assert console["consoleLogPath"] == str(console_log)
        await wait_until(console_log.exists, 10, "the console log file")

        assert (await agent.ok("/vm/pause", {"vmUuid": vm}))["state"] == "Paused"
        await core.wait_for_state(vm, "Paused")
        assert (await agent.ok("/vm/resume", {"vmUuid": vm}))["state"] == "Running"
        await wait_until(lambda: core.vm_states(vm)[-1:] == ["Running"], 10, "Running again")

        # No OS answers ACPI: grace stops fall back to destroy after their timeout.
        reports_before = len(core.vm_states(vm))
        answer = await agent.ok_async("/vm/reboot", {"vmUuid": vm, "timeout": 1})
        assert answer["state"] == "Running"
        await wait_until(
            lambda: core.vm_states(vm)[reports_before:] == ["Stopped", "Running"],
            10,
            f"Stopped, Running after the reboot (got {core.vm_states(vm)})",
        )
        answer = await agent.ok_async("/vm/stop", {"vmUuid": vm, "type": "grace", "timeout": 1})
        assert answer["state"] == "Stopped"
        await wait_until(lambda: core.vm_states(vm)[-1:] == ["Stopped"], 10, "Stopped")
        assert (await agent.ok("/vm/vmsync"))["states"][vm] == "Stopped"
        assert domain_exists(name)  # a stop keeps the definition

        assert (await agent.ok_async("/vm/start", start, timeout=120))["state"] == "Running"
        await wait_until(lambda: core.vm_states(vm)[-1:] == ["Running"], 10, "Running")

        # A change made outside the project is reported within seconds.
        subprocess.run(
            ["virsh", "-c", URI, "destroy", name], check=True, capture_output=True, timeout=30
        )
        await wait_until(lambda: core.vm_states(vm)[-1:] == ["Stopped"], 10, "the outside stop")
        states = (await agent.ok("/vm/vmsync"))["states"]
        assert states[vm] == "Stopped"
        assert all(not k.startswith(DOMAIN_PREFIX) for k in states)  # uuids, not domain names

        await agent.ok_async("/vm/destroy", {"vmUuid": vm})
        assert not domain_exists(name)
        assert vm not in (await agent.ok("/vm/vmsync"))["states"]
        await agent.ok_async("/vm/destroy", {"vmUuid": vm})  # already gone: fine

        await agent.ok("/volume/delete", {"installPath": str(root)})
        assert not root.exists()
        await agent.ok("/file/delete", {"path": str(base)})
        assert not base.exists()
    finally:
        remove_domain(name)

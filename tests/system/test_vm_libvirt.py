"""The whole VM life cycle on qemu:///system with the tiny guest image."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.guest_image import build as guest_image
from core.host.local_agent import free_port
from core.kernel.node import ManagementNode
from tests.conftest import load_props, ok, write_config
from tests.system.cleanup import api_teardown, by_hand
from tests.system.net_lab import virsh, wait_for

pytestmark = pytest.mark.system
MiB = 1024**2
REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "build" / "tiny-guest.qcow2"


@pytest.fixture
async def node() -> AsyncIterator[ManagementNode]:
    guest_image.main(["--output", str(IMAGE)])  # builds only if missing or stale
    # QEMU runs as libvirt-qemu: the storage must sit where it can reach (not pytest's 0700 dir).
    root = Path(tempfile.mkdtemp(prefix="zsl-test-vm-", dir="/var/tmp"))
    root.chmod(0o755)
    # The layout `make run` makes: first-start bootstrap, storage under the data dir.
    props = load_props(
        write_config(root, f'[agent]\nport = {free_port()}\n[bootstrap]\nlocal_host = "kvm"\n')
    )
    node = ManagementNode(props, serve_socket=False)
    try:
        await node.start()
        yield node
    finally:
        try:
            if node.running:
                await api_teardown(node)
        finally:
            by_hand(root)  # the local KVM agent outlives nodes by design
            shutil.rmtree(root, ignore_errors=True)


async def test_vm_life_cycle_on_libvirt(node: ManagementNode) -> None:
    [host] = await ok(node, "QueryHost")
    assert host["status"] == "Connected" and host["hypervisorType"] == "KVM"
    [ps] = await ok(node, "QueryPrimaryStorage")
    assert ps["url"] == str(node.data_dir / "primary-storage")
    image = await ok(node, "AddImage", name="tiny", url=str(IMAGE))
    offering = await ok(node, "CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=256 * MiB)
    free = (host["availableCpuCapacity"], host["availableMemoryCapacity"])

    async def capacity() -> tuple[int, int]:
        [h] = await ok(node, "QueryHost")
        return h["availableCpuCapacity"], h["availableMemoryCapacity"]

    async def state(uuid: str) -> str:
        [vm] = await ok(node, "QueryVmInstance", conditions=[f"uuid={uuid}"])
        return str(vm["state"])

    vm = await ok(
        node,
        "CreateVmInstance",
        name="tiny-1",
        instanceOfferingUuid=offering["uuid"],
        imageUuid=image["uuid"],
    )
    assert vm["state"] == "Running"
    assert virsh("domstate", f"zsl-{vm['uuid']}").strip() == "running"
    console = await ok(node, "GetVmConsoleAddress", uuid=vm["uuid"])
    assert console["pty"].startswith("/dev/pts/")
    log = Path(console["consoleLogPath"])

    def boots() -> int:
        return log.read_text(errors="replace").count("TINY-GUEST up") if log.exists() else 0

    await wait_for(boots, "TINY-GUEST up on the serial console")
    assert await capacity() == (free[0] - 1, free[1] - 256 * MiB)

    for api, expected in (
        ("StopVmInstance", "Stopped"),
        ("StartVmInstance", "Running"),
        ("RebootVmInstance", "Running"),
        ("PauseVmInstance", "Paused"),
        ("ResumeVmInstance", "Running"),
    ):
        if api == "RebootVmInstance":  # a guest still booting ignores ACPI: a 60 s wait
            seen = boots()
            await wait_for(lambda n=seen: boots() > n, "the guest up again after its start")
        assert (await ok(node, api, uuid=vm["uuid"]))["state"] == expected, api

    # Killed outside the project: reported Stopped within seconds, capacity returned.
    virsh("destroy", f"zsl-{vm['uuid']}")

    async def stopped() -> bool:
        return await state(vm["uuid"]) == "Stopped"

    await wait_for(stopped, "the VM reported Stopped", timeout=20)
    assert await capacity() == free

    await ok(node, "StartVmInstance", uuid=vm["uuid"])
    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    assert (await ok(node, "RecoverVmInstance", uuid=vm["uuid"]))["state"] == "Stopped"
    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])
    assert f"zsl-{vm['uuid']}" not in virsh("list", "--all", "--name")
    assert not list((node.data_dir / "primary-storage" / "rootvolumes").rglob("*.qcow2"))
    assert await capacity() == free
    assert await ok(node, "QueryVmInstance") == []


def read_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    """Read a byte of ``path`` (or list it, for a directory) as the user nobody."""
    command = ["ls", str(path)] if path.is_dir() else ["head", "-c", "1", str(path)]
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *command],
        capture_output=True,
        text=True,
    )


def assert_private(*paths: Path) -> None:
    """Root reads each path, nobody cannot (a file or a directory's listing)."""
    for path in paths:
        assert path.exists(), path
        denied = read_as_nobody(path)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, (
            path,
            oct(path.stat().st_mode),
            denied,
        )


async def test_disks_are_for_root_and_qemu_only(node: ManagementNode) -> None:
    """Root volumes, the image cache they share and the backup storage copy are unreadable
    by other local users, with the VMs running, stopped and started again (libvirt's DAC
    driver gives QEMU the disks it opens)."""
    image = await ok(node, "AddImage", name="tiny", url=str(IMAGE))
    offering = await ok(node, "CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=256 * MiB)
    vms = [
        await ok(
            node,
            "CreateVmInstance",
            name=f"private-{n}",
            instanceOfferingUuid=offering["uuid"],
            imageUuid=image["uuid"],
        )
        for n in (1, 2)
    ]

    async def boots(vm: dict[str, Any], times: int) -> None:
        console = await ok(node, "GetVmConsoleAddress", uuid=vm["uuid"])
        log = Path(console["consoleLogPath"])

        async def booted() -> bool:
            return log.exists() and log.read_text(errors="replace").count("TINY-GUEST up") >= times

        await wait_for(booted, f"{vm['name']} booted {times} time(s)")

    for vm in vms:
        await boots(vm, 1)
    storage = node.data_dir / "primary-storage"
    roots = [next((storage / "rootvolumes" / f"vm-{vm['uuid']}").glob("*.qcow2")) for vm in vms]
    cache = storage / "imagecache" / f"{image['uuid']}.qcow2"
    copy = Path(image["backupStorageRefs"][0]["installPath"])
    disks = [*roots, cache, copy]
    directories = [storage, storage / "imagecache", storage / "rootvolumes", copy.parent]
    assert_private(*disks, *directories)

    await ok(node, "StopVmInstance", uuid=vms[0]["uuid"])
    assert_private(*disks, *directories)
    assert (await ok(node, "StartVmInstance", uuid=vms[0]["uuid"]))["state"] == "Running"
    await boots(vms[0], 2)
    assert_private(*disks, *directories)
    for vm in vms:
        await ok(node, "StopVmInstance", uuid=vm["uuid"])
    assert_private(*disks, *directories)


async def test_expunge_leaves_no_console_log_and_no_volume_directory(node: ManagementNode) -> None:
    image = await ok(node, "AddImage", name="tiny", url=str(IMAGE))
    offering = await ok(node, "CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=256 * MiB)
    vm = await ok(
        node,
        "CreateVmInstance",
        name="leftovers",
        instanceOfferingUuid=offering["uuid"],
        imageUuid=image["uuid"],
    )
    console = await ok(node, "GetVmConsoleAddress", uuid=vm["uuid"])
    log = Path(console["consoleLogPath"])
    storage = node.data_dir / "primary-storage"
    directory = storage / "rootvolumes" / f"vm-{vm['uuid']}"
    assert log.parent == storage / "consoles"

    async def logged() -> bool:
        return log.exists()

    await wait_for(logged, "virtlogd to write the console log")
    assert directory.is_dir()
    await ok(node, "StopVmInstance", uuid=vm["uuid"], type="cold")  # not booted: no ACPI yet
    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])
    assert not log.exists() and not list(log.parent.glob(f"{log.name}.*"))
    assert not directory.exists()
    assert (storage / "rootvolumes").is_dir() and (storage / "consoles").is_dir()


async def test_a_vm_destroyed_outside_loses_its_dhcp_entry(node: ManagementNode) -> None:
    image = await ok(node, "AddImage", name="tiny", url=str(IMAGE))
    offering = await ok(node, "CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=256 * MiB)
    [private] = await ok(node, "QueryL3Network", conditions=["name=private"])
    vm = await ok(
        node,
        "CreateVmInstance",
        name="outside",
        instanceOfferingUuid=offering["uuid"],
        imageUuid=image["uuid"],
        l3NetworkUuids=[private["uuid"]],
    )
    [nic] = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    [router] = await ok(node, "QueryVirtualRouterVm")
    conf = (Path(router["agentTokenFile"]).parent / "dnsmasq.conf").read_text()
    [hosts_file] = [
        Path(line.split("=", 1)[1])
        for line in conf.splitlines()
        if line.startswith("dhcp-hostsfile=")
    ]

    def served() -> str:
        try:
            return hosts_file.read_text()
        except FileNotFoundError:  # none yet, or none any more
            return ""

    async def entry_there() -> bool:
        return nic["mac"] in served()

    await wait_for(entry_there, "the VM's DHCP entry served", timeout=30)

    virsh("destroy", f"zsl-{vm['uuid']}")  # the core did not ask for it

    async def stopped() -> bool:
        [row] = await ok(node, "QueryVmInstance", conditions=[f"uuid={vm['uuid']}"])
        return row["state"] == "Stopped"

    await wait_for(stopped, "the VM reported Stopped", timeout=30)

    async def entry_gone() -> bool:
        return nic["mac"] not in served()

    await wait_for(entry_gone, "the DHCP entry removed", timeout=10)

"""The node service on kvm labs on the real host, driven as a user would (``zcli`` and
``zstack-lite`` subprocesses, no ztui): first calls on a fresh lab, a VM stopped behind the
node's back, a stale agent of another lab on the agent port.  Every lab is reset at the end."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.guest_image import build as guest_image
from core.host.local_agent import LocalAgent, free_port
from core.host.port_holder import port_holder
from tests.service_lab import ServiceLab, service_lab

pytestmark = pytest.mark.system
IMAGE = Path(__file__).resolve().parents[2] / "build" / "tiny-guest.qcow2"
KVM_LAB = '[bootstrap]\nlocal_host = "kvm"\n'


def wait_until(check: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


@pytest.fixture
def lab_root() -> Iterator[Path]:
    guest_image.main(["--output", str(IMAGE)])  # builds only if missing or stale
    # QEMU runs as libvirt-qemu: the storage must sit where it can reach (not pytest's 0700).
    root = Path(tempfile.mkdtemp(prefix="zsl-test-svc-", dir="/var/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def kvm_lab(lab_root: Path) -> Iterator[ServiceLab]:
    lab = service_lab(lab_root, KVM_LAB)
    try:
        yield lab
    finally:
        lab.reset()


def first_vm(lab: ServiceLab) -> dict[str, Any]:
    """QueryHost, AddImage, CreateVmInstance on the default private network."""
    [host] = lab.ok("QueryHost")
    assert host["status"] == "Connected" and host["hypervisorType"] == "KVM"
    image = lab.ok("AddImage", "name=tiny", f"url={IMAGE}")
    [offering] = lab.ok("QueryInstanceOffering", "name=small")
    [l3] = lab.ok("QueryL3Network", "name=private")
    return lab.ok(
        "CreateVmInstance",
        "name=vm1",
        f"instanceOfferingUuid={offering['uuid']}",
        f"imageUuid={image['uuid']}",
        f"l3NetworkUuids={l3['uuid']}",
    )


def virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True
    ).stdout


# Three fresh kvm labs (about 15 s each); the simulator twin in tests/core/daemon runs ten.
@pytest.mark.parametrize("run", range(3))
def test_first_calls_on_a_fresh_kvm_lab_succeed_first_try(lab_root: Path, run: int) -> None:
    lab = service_lab(lab_root / f"run{run}", KVM_LAB)
    try:
        vm = first_vm(lab)
        assert vm["state"] == "Running"
        assert vm["uuid"] in virsh("list", "--name")
    finally:
        lab.reset()


def test_a_vm_destroyed_behind_the_node_is_reported_stopped(kvm_lab: ServiceLab) -> None:
    vm = first_vm(kvm_lab)
    virsh("destroy", f"zsl-{vm['uuid']}")
    destroyed = time.monotonic()

    def stopped() -> bool:
        [now] = kvm_lab.ok("QueryVmInstance", f"uuid={vm['uuid']}")
        return now["state"] == "Stopped"

    wait_until(stopped, "the VM to be reported Stopped", timeout=10)
    assert time.monotonic() - destroyed <= 10


def test_a_stale_agent_on_the_agent_port_is_named_and_outlived(lab_root: Path) -> None:
    port = free_port()
    other = lab_root / "other-lab"
    stale = LocalAgent(other / "agent", port, "simulator", other)
    lab = service_lab(lab_root / "lab", KVM_LAB + f"[agent]\nport = {port}\n")
    try:
        import asyncio

        asyncio.run(stale.ensure_running())
        holder = port_holder(port)
        assert holder is not None and holder.pid is not None
        started = lab.service("start")
        assert started.rc == 0, started.err  # the node runs, with a problem
        status = lab.service("status")
        assert status.rc == 0, status.err
        assert f"port {port} is held by pid {holder.pid}" in status.out
        assert f"agent.main --data-dir {other / 'agent'}" in status.out
        assert f"kill {holder.pid}" in status.out
        stale.stop()

        def up() -> bool:
            hosts = lab.service("status", "--json").json()["hosts"]
            return bool(hosts) and hosts[0]["status"] == "Connected"

        wait_until(up, "the lab to come up", timeout=180)  # no restart of the node
        wait_until(lambda: lab.ok("QueryL3Network", "name=private"), "the private network", 120)
        assert lab.service("status", "--json").json()["problems"] == []
    finally:
        stale.stop()
        lab.reset()

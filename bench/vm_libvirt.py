"""The API's cost over libvirt: CreateVmInstance and StartVmInstance vs plain ``virsh``.

Run: ``.venv/bin/python bench/vm_libvirt.py`` (or ``make bench-vm-libvirt``; needs root,
libvirtd and ``build/tiny-guest.qcow2``, which ``make guest-image`` builds).

A management node runs in this process on a data dir under /var/tmp (QEMU runs as
libvirt-qemu and must reach the storage) with the local KVM host on its real agent,
local backup and primary storage, the tiny guest image (AddImage) and a 1-CPU,
256-MiB offering.  One VM is created first, not counted: it puts the image in the
primary storage's cache and gives the domain XML for the by-hand side.  Then, in
the same run and rounds interleaved (the order flips every round):

(1) create: (a) CreateVmInstance (InstantStart), from the call to its reply
    (Running); (b) by hand, the XML of the first VM (``virsh dumpxml --inactive``)
    with a new name, uuid, console log and a fresh qcow2 overlay of the same
    cached image: ``virsh define`` + ``virsh start`` until ``virsh domstate`` says
    running.  The overlay's ``qemu-img create`` is timed apart (the API makes its
    overlay inside its time).
(2) start: (a) StartVmInstance of a VM stopped with StopVmInstance, until its
    reply; (b) ``virsh start`` of a defined, shut-off domain until ``virsh
    domstate`` says running.

Each VM or domain is powered off again before the next measurement (StopVmInstance
type=cold vs ``virsh destroy``, timed too but with no target), so guests booting in
the background do not slow later rounds.  Medians and the ratio API / virsh are
printed with the targets, never asserted.  Every domain
and file made here is removed at the end, and the agent this run started is
stopped, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from agent.guest_image import build as guest_image
from core.host.local_agent import free_port
from core.kernel import properties
from core.kernel.node import ManagementNode

MiB = 1024**2
REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "build" / "tiny-guest.qcow2"
URI = "qemu:///system"
ROUNDS = 5
VM_MEMORY = 256 * MiB
RATIO_TARGET = 1.3


class BenchError(RuntimeError):
    pass


async def ok(node: ManagementNode, api: str, **params: Any) -> Any:
    reply = await node.call(api, params)
    if not reply.success:
        raise BenchError(f"{api} failed: {reply.error}")
    return reply.inventory if reply.inventories is None else reply.inventories


def virsh(*args: str, check: bool = True) -> str:
    done = subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise BenchError(f"virsh {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def virsh_running(name: str, timeout: float = 60.0) -> None:
    """Poll ``virsh domstate`` until it says running."""
    deadline = time.monotonic() + timeout
    while virsh("domstate", name).strip() != "running":
        if time.monotonic() > deadline:
            raise BenchError(f"domain {name} is not running after {timeout:g}s")
        time.sleep(0.01)


def by_hand_xml(xml: str, name: str, disk: Path, console_log: Path) -> str:
    """The API's domain XML with a new name, uuid, title, root disk and console log."""
    out, n = re.subn(r"<name>[^<]*</name>", f"<name>{name}</name>", xml, count=1)
    out, u = re.subn(r"<uuid>[^<]*</uuid>", f"<uuid>{uuid.uuid4()}</uuid>", out, count=1)
    out = re.sub(r"<title>[^<]*</title>", f"<title>{name}</title>", out, count=1)
    out, d = re.subn(r"<source file='[^']*'", f"<source file='{disk}'", out)
    out, c = re.subn(r"<log file='[^']*'", f"<log file='{console_log}'", out)
    if (n, u, d) != (1, 1, 1) or not c:
        raise BenchError(f"unexpected domain XML (name {n}, uuid {u}, disk {d}, log {c}):\n{xml}")
    return out


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def stop_agent(data_dir: Path) -> None:
    """SIGTERM the detached KVM agent this run's node started (found by its data dir)."""
    found = subprocess.run(
        ["pgrep", "-f", f"agent.main --data-dir {data_dir}/agent"],
        capture_output=True,
        text=True,
    ).stdout.split()
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)


class Lab:
    """The node, its lab and everything made on libvirt, to clean up at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node: ManagementNode | None = None
        self.domains: list[str] = []  # by-hand domains
        self.vm_uuids: list[str] = []  # VMs the API made
        self.offering = ""
        self.image = ""
        self.cache = ""  # the image's cached copy on the primary storage
        self.xml = ""  # the first VM's inactive domain XML

    async def start(self) -> ManagementNode:
        port = free_port()
        config = self.root / "config.toml"
        config.write_text(f'[core]\ndata_dir = "{self.root / "data"}"\n[agent]\nport = {port}\n')
        self.node = ManagementNode(properties.load(config, env={}), serve_socket=False)
        await self.node.start()
        node = self.node
        zone = await ok(node, "CreateZone", name="bench")
        cluster = await ok(node, "CreateCluster", name="kvm", zoneUuid=zone["uuid"])
        host = await ok(
            node, "AddKVMHost", name="local", clusterUuid=cluster["uuid"], agentPort=port
        )
        await ok(
            node, "AddLocalBackupStorage", name="bs", zoneUuid=zone["uuid"], url=f"{self.root}/bs"
        )
        ps = await ok(
            node, "AddLocalPrimaryStorage", name="ps", zoneUuid=zone["uuid"], url=f"{self.root}/ps"
        )
        await ok(
            node,
            "AttachPrimaryStorageToCluster",
            primaryStorageUuid=ps["uuid"],
            clusterUuid=cluster["uuid"],
        )
        self.image = (await ok(node, "AddImage", name="tiny", url=str(IMAGE)))["uuid"]
        self.offering = (
            await ok(node, "CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=VM_MEMORY)
        )["uuid"]
        print(
            f"host {host['name']}: {host['cpuNum']} CPUs, "
            f"{host['totalPhysicalMemory'] // MiB} MiB, acceleration {host.get('acceleration')}"
        )
        return node

    async def api_create(self, name: str) -> tuple[float, str]:
        assert self.node is not None
        t0 = time.perf_counter()
        vm = await ok(
            self.node,
            "CreateVmInstance",
            name=name,
            instanceOfferingUuid=self.offering,
            imageUuid=self.image,
        )
        elapsed = time.perf_counter() - t0
        self.vm_uuids.append(vm["uuid"])
        if vm["state"] != "Running":
            raise BenchError(f"CreateVmInstance answered {vm['state']}, not Running")
        return elapsed, vm["uuid"]

    async def api_start(self, vm_uuid: str) -> float:
        assert self.node is not None
        t0 = time.perf_counter()
        vm = await ok(self.node, "StartVmInstance", uuid=vm_uuid)
        elapsed = time.perf_counter() - t0
        if vm["state"] != "Running":
            raise BenchError(f"StartVmInstance answered {vm['state']}, not Running")
        return elapsed

    async def api_stop(self, vm_uuid: str) -> float:
        assert self.node is not None
        t0 = time.perf_counter()
        await ok(self.node, "StopVmInstance", uuid=vm_uuid, type="cold")
        return time.perf_counter() - t0

    def learn_xml(self, vm_uuid: str) -> None:
        self.xml = virsh("dumpxml", "--inactive", f"zsl-{vm_uuid}")
        [cache] = (self.root / "ps" / "imagecache").glob(f"{self.image}.*")
        self.cache = str(cache)

    def hand_overlay(self, name: str) -> tuple[float, Path]:
        disk = self.root / "by-hand" / f"{name}.qcow2"
        t0 = time.perf_counter()
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", self.cache, str(disk)],
            check=True,
        )
        return time.perf_counter() - t0, disk

    def hand_create(self, name: str, disk: Path) -> float:
        xml_file = self.root / "by-hand" / f"{name}.xml"
        log = self.root / "ps" / "consoles" / f"{name}.log"
        xml_file.write_text(by_hand_xml(self.xml, name, disk, log))
        t0 = time.perf_counter()
        virsh("define", str(xml_file))
        self.domains.append(name)
        virsh("start", name)
        virsh_running(name)
        return time.perf_counter() - t0

    def hand_start(self, name: str) -> float:
        t0 = time.perf_counter()
        virsh("start", name)
        virsh_running(name)
        return time.perf_counter() - t0

    @staticmethod
    def hand_stop(name: str) -> float:
        t0 = time.perf_counter()
        virsh("destroy", name)
        return time.perf_counter() - t0

    async def close(self) -> None:
        uuids = list(self.vm_uuids)
        if self.node is not None:
            try:
                uuids += [vm["uuid"] for vm in await ok(self.node, "QueryVmInstance")]
            except Exception as exc:
                print(f"warning: cannot list the VMs: {exc}", file=sys.stderr)
            await self.node.stop()
        for name in [f"zsl-{u}" for u in dict.fromkeys(uuids)] + self.domains:
            virsh("destroy", name, check=False)
            virsh("undefine", name, check=False)
        stop_agent(self.root / "data")


async def run(lab: Lab) -> None:
    await lab.start()
    # Not counted: caches the image on the primary storage, gives the domain XML,
    # and warms libvirt and QEMU up on both sides.
    _, first = await lab.api_create("warm-up")
    lab.learn_xml(first)
    await lab.api_stop(first)
    (lab.root / "by-hand").mkdir(mode=0o755)
    warm = f"zsl-bench-{uuid.uuid4().hex[:12]}"
    _, disk = lab.hand_overlay(warm)
    lab.hand_create(warm, disk)
    lab.hand_stop(warm)

    create: dict[str, list[float]] = {"api": [], "virsh": [], "overlay": []}
    start: dict[str, list[float]] = {"api": [], "virsh": []}
    stop: dict[str, list[float]] = {"api": [], "virsh": []}
    vms: list[str] = []
    domains: list[str] = []
    for i in range(ROUNDS):
        name = f"zsl-bench-{uuid.uuid4().hex[:12]}"
        order = ("api", "virsh") if i % 2 == 0 else ("virsh", "api")
        for side in order:
            if side == "api":
                elapsed, vm_uuid = await lab.api_create(f"bench-{i + 1}")
                create["api"].append(elapsed)
                vms.append(vm_uuid)
                stop["api"].append(await lab.api_stop(vm_uuid))
            else:
                made, disk = lab.hand_overlay(name)
                create["overlay"].append(made)
                create["virsh"].append(lab.hand_create(name, disk))
                domains.append(name)
                stop["virsh"].append(lab.hand_stop(name))
        print(
            f"  create round {i + 1}: API {create['api'][-1] * 1e3:.0f} ms, "
            f"virsh {create['virsh'][-1] * 1e3:.0f} ms "
            f"(+ qemu-img create {create['overlay'][-1] * 1e3:.0f} ms)"
        )
    for i, (vm_uuid, name) in enumerate(zip(vms, domains, strict=True)):
        order = ("api", "virsh") if i % 2 == 0 else ("virsh", "api")
        for side in order:
            if side == "api":
                start["api"].append(await lab.api_start(vm_uuid))
                stop["api"].append(await lab.api_stop(vm_uuid))
            else:
                start["virsh"].append(lab.hand_start(name))
                stop["virsh"].append(lab.hand_stop(name))
        print(
            f"  start round {i + 1}: API {start['api'][-1] * 1e3:.0f} ms, "
            f"virsh {start['virsh'][-1] * 1e3:.0f} ms"
        )
    print()

    create_api, create_virsh = median_ms(create["api"]), median_ms(create["virsh"])
    overlay = median_ms(create["overlay"])
    start_api, start_virsh = median_ms(start["api"]), median_ms(start["virsh"])
    stop_api, stop_virsh = median_ms(stop["api"]), median_ms(stop["virsh"])
    header = f"{'operation':<40} {'API ms':>8} {'virsh ms':>9} {'API/virsh':>10}"
    print(f"medians of {ROUNDS} rounds (stops: of {2 * ROUNDS}, no target)")
    print(header)
    print("-" * len(header))
    rows = (
        ("create: CreateVmInstance vs define+start", create_api, create_virsh),
        ("  same, virsh side + qemu-img overlay", create_api, create_virsh + overlay),
        ("start: StartVmInstance vs virsh start", start_api, start_virsh),
        ("stop: StopVmInstance cold vs destroy", stop_api, stop_virsh),
    )
    for label, api, by_hand in rows:
        print(f"{label:<40} {api:>8.0f} {by_hand:>9.0f} {api / by_hand:>9.2f}x")
    print()
    for label, api, by_hand in (rows[0], rows[2]):
        ratio = api / by_hand
        print(
            f"target: {label.split(':')[0]} API/virsh <= {RATIO_TARGET}x: "
            f"{'HOLDS' if ratio <= RATIO_TARGET else 'MISSED'} ({ratio:.2f}x)"
        )


L = TypeVar("L", bound="Lab")


async def on_libvirt(
    title: str, prefix: str, make_lab: Callable[[Path], L], run: Callable[[L], Awaitable[None]]
) -> int:
    """Run a benchmark on a lab of ``make_lab`` in a fresh directory (removed afterwards,
    whatever happens), after the tiny guest image is built and the versions printed."""
    logging.basicConfig(level=logging.ERROR)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if guest_image.main(["--output", str(IMAGE)]) != 0:  # builds only if missing or stale
        return 1
    version = virsh("version", "--daemon").strip().splitlines()
    print(
        f"{title} on {URI}: Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        + "; ".join(line.strip() for line in version if "Running" in line or "daemon" in line)
    )
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    root.chmod(0o755)  # QEMU (libvirt-qemu) must reach the volumes beneath
    lab = make_lab(root)
    try:
        await run(lab)
    finally:
        try:
            await lab.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return 0


async def main() -> int:
    return await on_libvirt("VM benchmark", "zsl-bench-vm-", Lab, run)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

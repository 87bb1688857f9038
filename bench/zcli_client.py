"""The client path: ``zcli QueryVmInstance`` against a running node with 1,000 VMs.

Run: ``.venv/bin/python bench/zcli_client.py`` (or ``make bench-zcli``).

A simulator lab is built on a temporary data dir through the node service (the
``zstack-lite`` command, as a user would start it): a zone, a Simulator cluster
and host, local storage, an offering, an image and ``VMS`` VMs.  Then, side by
side in one run, whole commands are timed from fork to exit, ``ROUNDS`` times
each, interleaved so that the machine's noise falls on all of them alike:

(a) ``zcli QueryVmInstance`` (every VM, printed as JSON) against the running node;
(b) ``virsh -c qemu:///system list --all`` (when libvirtd answers): the floor a
    command-line VM manager sets on this machine;
(c) the in-process call, as ``zcli`` made it before the node was a service: a
    process that starts a node on the data dir, makes the same call and stops
    the node (timed with the service stopped, interleaved with (b) again).

Targets (printed as HOLDS/MISSED, never asserted): (a) median under 150 ms, and
at least 4x faster than (c).  Everything is removed at the end, whatever happens.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.daemon.node_socket import NodeSocket

VMS = 1000
ROUNDS = 15
MEDIAN_TARGET_MS = 150.0
SPEEDUP_TARGET = 4.0
BIN = Path(sys.executable).parent
MiB = 1024**2
GiB = 1024**3

IN_PROCESS = """
import asyncio, json, sys
from core.kernel.node import ManagementNode
from core.kernel.properties import load

async def main():
    node = ManagementNode(load(sys.argv[1]))
    await node.start()
    try:
        reply = await node.call("QueryVmInstance", {"limit": 1_000_000})
        print(json.dumps(reply.to_dict(), indent=2, default=str))
    finally:
        await node.stop()

asyncio.run(main())
"""


def call(sock: NodeSocket, api: str, **params: Any) -> Any:
    _status, reply = sock.post(f"/v1/api/{api}", params)
    if not reply.get("success"):
        raise RuntimeError(f"{api} failed: {reply.get('error')}")
    return reply.get("inventory", reply.get("inventories"))


def build_lab(root: Path, env: dict[str, str]) -> None:
    subprocess.run([str(BIN / "zstack-lite"), "start"], env=env, check=True)
    sock = NodeSocket(root / "data" / "node.sock")
    zone = call(sock, "CreateZone", name="bench")
    cluster = call(
        sock, "CreateCluster", name="sim", zoneUuid=zone["uuid"], hypervisorType="Simulator"
    )
    call(
        sock,
        "AddSimulatorHost",
        name="sim",
        clusterUuid=cluster["uuid"],
        cpuNum=1024,
        memorySize=1024 * GiB,
    )
    call(sock, "AddLocalBackupStorage", name="bs", zoneUuid=zone["uuid"], url=str(root / "bs"))
    ps = call(
        sock, "AddLocalPrimaryStorage", name="ps", zoneUuid=zone["uuid"], url=str(root / "ps")
    )
    call(
        sock,
        "AttachPrimaryStorageToCluster",
        primaryStorageUuid=ps["uuid"],
        clusterUuid=cluster["uuid"],
    )
    offering = call(sock, "CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=16 * MiB)
    image_file = root / "image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image_file), "1M"], check=True)
    image = call(sock, "AddImage", name="img", url=str(image_file))

    def create(i: int) -> None:
        call(
            sock,
            "CreateVmInstance",
            name=f"vm{i:04d}",
            instanceOfferingUuid=offering["uuid"],
            imageUuid=image["uuid"],
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(VMS)))
    count = NodeSocket(root / "data" / "node.sock").post(
        "/v1/api/QueryVmInstance", {"count": True}
    )[1]["total"]
    assert count == VMS, count


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def virsh_answers() -> bool:
    try:
        return (
            subprocess.run(
                ["virsh", "-c", "qemu:///system", "version"], capture_output=True, timeout=10
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def report(name: str, samples: list[float]) -> float:
    median = statistics.median(samples) * 1000
    print(
        f"  {name:<44} median {median:8.1f} ms   min {min(samples) * 1000:8.1f} ms   "
        f"max {max(samples) * 1000:8.1f} ms"
    )
    return median


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="zsl-bench-zcli-"))
    config = root / "config.toml"
    config.write_text(f'[core]\ndata_dir = "{root / "data"}"\nlog_level = "WARNING"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_LITE_")}
    env["ZSTACK_LITE_CONFIG"] = str(config)
    zcli = [str(BIN / "zcli"), "QueryVmInstance", "limit=1000000"]
    virsh = ["virsh", "-c", "qemu:///system", "list", "--all"]
    in_process = [sys.executable, "-c", IN_PROCESS, str(config)]
    with_virsh = virsh_answers()
    try:
        print(f"building a simulator lab with {VMS} VMs in {root} ...", flush=True)
        started = time.perf_counter()
        build_lab(root, env)
        print(f"  built in {time.perf_counter() - started:.1f} s\n")
        service: list[float] = []
        floor: list[float] = []
        for _ in range(ROUNDS):
            service.append(timed(zcli, env))
            if with_virsh:
                floor.append(timed(virsh, env))
        subprocess.run(
            [str(BIN / "zstack-lite"), "stop"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        old: list[float] = []
        floor_again: list[float] = []
        for _ in range(max(3, ROUNDS // 3)):
            old.append(timed(in_process, env))
            if with_virsh:
                floor_again.append(timed(virsh, env))
        print(f"whole commands, {ROUNDS} runs each (fork to exit), {VMS} VMs in the reply:")
        zcli_ms = report("(a) zcli QueryVmInstance (node service)", service)
        if with_virsh:
            virsh_ms = report("(b) virsh list --all", floor)
            report("(b) virsh list --all (during (c))", floor_again)
        old_ms = report("(c) in-process node: start, call, stop", old)
        print()
        if with_virsh:
            print(f"  (a) / (b): {zcli_ms / virsh_ms:.1f}x virsh's time")
        speedup = old_ms / zcli_ms
        print(f"  (c) / (a): zcli through the service is {speedup:.1f}x faster")
        holds = zcli_ms < MEDIAN_TARGET_MS
        print(f"  target median < {MEDIAN_TARGET_MS:g} ms: {'HOLDS' if holds else 'MISSED'}")
        holds = speedup >= SPEEDUP_TARGET
        print(f"  target >= {SPEEDUP_TARGET:g}x faster than (c): {'HOLDS' if holds else 'MISSED'}")
        return 0
    finally:
        subprocess.run([str(BIN / "zstack-lite"), "reset", "--yes"], env=env, capture_output=True)
        subprocess.run([str(BIN / "zstack-lite"), "stop"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

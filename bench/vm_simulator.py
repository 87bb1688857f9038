"""CreateVmInstance throughput and QueryVmInstance latency on a simulator lab.

Run: ``.venv/bin/python bench/vm_simulator.py`` (or ``make bench-vm-simulator``).

A management node runs in this process on a temporary data dir with the shipped
database (SQLite, WAL), as ``zcli``/``ztui`` would run it.  The lab is built
through the public API: a zone, a Simulator cluster with ``HOSTS`` simulator
hosts (agents are child processes of the node), local backup and primary
storage, a 1-CPU/16-MiB offering and a 1-MiB qcow2 image added with AddImage.
The hosts are sized so that capacity never runs out (the allocator takes the
first host that has room, so in practice every VM lands on the first one).

(1) CreateVmInstance (InstantStart) with 1, 10 and 100 concurrent callers, each
    caller creating VMs one after the other until its slice's quota is used;
    throughput is VMs created / wall time, latency is per call, from the call to
    its reply.  The first VM (image cached on the primary storage) is made before,
    and not counted.  Each round is cut in four slices, run with durable chains
    (the node's flow journal on, as the product runs) and with the journal off
    (the same chains, in memory only), in the order durable, off, off, durable so
    that a database growing as it goes favours neither; the journal is switched by
    setting ``node.flow_journal`` between slices (each chain takes it when it is
    built).  CPU ms/VM is the node process's CPU time (event loop and database
    thread) per VM: what bounds throughput, and the figure other load on the
    machine moves least.  The durability target (durable at least 80% of the
    journal off's throughput) is on the 100-caller round.
(2) QueryVmInstance with every VM in the database: a page of Running VMs
    (``limit=100``), a full ``count=true``, and one unpaged query of them all.
(3) Against the code before durable chains (``BASELINE``, the commit before them):
    the 100-caller round in processes of their own (``bench/create_round.py``), the
    working tree's and the baseline's taking turns (ABBAAB), so that both see the same
    machine; the median of each is compared.  The baseline's files come from
    ``git archive`` (``bench/baseline_tree.py``); ``--baseline REV`` picks another
    revision and ``--baseline none`` skips the comparison.

Every call must succeed (the run stops otherwise); targets are printed, never
asserted.  The node is stopped (its simulator agents with it) and the data dir
removed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy
from baseline_tree import NoBaseline, baseline_env, baseline_tree

from core.kernel import properties
from core.kernel.node import ManagementNode

MiB = 1024**2
GiB = 1024**3

HOSTS = 2
HOST_CPUS = 1024  # x cpu.overProvisioning.ratio (10): 10,240 vCPUs per host
HOST_MEMORY = 1024 * GiB
VM_MEMORY = 16 * MiB  # the smallest offering allowed
IMAGE_SIZE = 1 * MiB  # virtual size: what each root volume reserves on the primary storage
ROUNDS = ((1, 100), (10, 400), (100, 1500))  # (concurrent callers, VMs created)
SLICES = (True, False, False, True)  # durable or not: each round's quarters, in order
QUERY_REPEATS = 100
FULL_QUERY_REPEATS = 10
UNPAGED = 1_000_000  # the largest limit a query takes

BASELINE = "75710e429477cfaca11ec81ef2007e4e66f9701b"  # the commit before durable chains
BASELINE_ROUND = (100, 600)  # (callers, VMs) of each process
BASELINE_ORDER = "ABBAAB"  # A: the working tree, B: the baseline

THROUGHPUT_TARGET = 200.0  # VMs/s with 100 callers
DURABLE_TARGET = 0.8  # durable create throughput / journal off, and / the baseline's
QUERY_TARGET_MS = 50.0


class ApiFailed(RuntimeError):
    pass


async def ok(node: ManagementNode, api: str, **params: Any) -> Any:
    reply = await node.call(api, params)
    if not reply.success:
        raise ApiFailed(f"{api} failed: {reply.error}")
    return reply.inventory if reply.inventories is None else reply.inventories


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


class DbCounter:
    """Counts the node's database transactions (``Database.run`` and ``run_core``)."""

    def __init__(self, node: ManagementNode) -> None:
        assert node.db is not None
        self.count = 0
        for name in ("run", "run_core"):
            setattr(node.db, name, self._counted(getattr(node.db, name)))

    def _counted(self, run: Callable[[Any], Any]) -> Callable[[Any], Any]:
        async def counted(fn: Callable[[Any], Any]) -> Any:
            self.count += 1
            return await run(fn)

        return counted


@dataclass
class Measured:
    """Creates of one kind (durable or not) in a round, summed over its slices."""

    vms: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    transactions: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(
        self, vms: int, wall: float, cpu: float, latencies: list[float], transactions: int
    ) -> None:
        self.vms += vms
        self.wall += wall
        self.cpu += cpu
        self.latencies += latencies
        self.transactions += transactions

    @property
    def rate(self) -> float:
        return self.vms / self.wall


def node_cpu() -> float:
    """CPU seconds of this process (the node: event loop and database thread; the
    simulator agents are child processes and not counted)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rows_rate(rows: list[tuple[int, bool, Measured]], callers: int, durable: bool) -> float:
    return next(m.rate for c, d, m in rows if c == callers and d is durable)


# --------------------------------------------------------------------------
# the lab
# --------------------------------------------------------------------------


async def make_lab(node: ManagementNode, root: Path) -> tuple[str, str]:
    """Zone, cluster, hosts, storage, offering and image; (offering uuid, image uuid)."""
    zone = await ok(node, "CreateZone", name="bench")
    cluster = await ok(
        node, "CreateCluster", name="sim", zoneUuid=zone["uuid"], hypervisorType="Simulator"
    )
    await asyncio.gather(
        *(
            ok(
                node,
                "AddSimulatorHost",
                name=f"sim-{i}",
                clusterUuid=cluster["uuid"],
                cpuNum=HOST_CPUS,
                memorySize=HOST_MEMORY,
            )
            for i in range(1, HOSTS + 1)
        )
    )
    await ok(node, "AddLocalBackupStorage", name="bs", zoneUuid=zone["uuid"], url=str(root / "bs"))
    ps = await ok(
        node, "AddLocalPrimaryStorage", name="ps", zoneUuid=zone["uuid"], url=str(root / "ps")
    )
    await ok(
        node,
        "AttachPrimaryStorageToCluster",
        primaryStorageUuid=ps["uuid"],
        clusterUuid=cluster["uuid"],
    )
    offering = await ok(node, "CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=VM_MEMORY)
    source = root / "base.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(source), str(IMAGE_SIZE)], check=True
    )
    image = await ok(node, "AddImage", name="base", url=str(source), format="qcow2")
    return offering["uuid"], image["uuid"]


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------


async def create_round(
    node: ManagementNode, offering: str, image: str, callers: int, total: int, first: int
) -> tuple[float, list[float]]:
    """``callers`` closed-loop callers create ``total`` VMs; (wall seconds, latencies)."""
    left = total
    latencies: list[float] = []

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            n = first + total - left
            t0 = time.perf_counter()
            await ok(
                node,
                "CreateVmInstance",
                name=f"vm-{n}",
                instanceOfferingUuid=offering,
                imageUuid=image,
            )
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - t0, latencies


async def time_query(node: ManagementNode, repeats: int, **params: Any) -> tuple[list[float], int]:
    """Latencies of ``repeats`` QueryVmInstance calls; the size of the last answer."""
    reply = None
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        reply = await node.call("QueryVmInstance", params)
        samples.append(time.perf_counter() - t0)
        if not reply.success:
            raise ApiFailed(f"QueryVmInstance {params} failed: {reply.error}")
    assert reply is not None
    size = reply.total if params.get("count") else len(reply.inventories or [])
    return samples, int(size or 0)


def verdict(holds: bool) -> str:
    return "HOLDS" if holds else "MISSED"


async def run(root: Path) -> None:
    config = root / "config.toml"
    config.write_text(f'[core]\ndata_dir = "{root / "data"}"\n')
    props = properties.load(config, env={})
    node = ManagementNode(props, serve_socket=False)
    await node.start()
    try:
        assert node.db is not None
        offering, image = await make_lab(node, root)
        await ok(
            node, "CreateVmInstance", name="vm-0", instanceOfferingUuid=offering, imageUuid=image
        )
        created = 1
        counter = DbCounter(node)
        journal = node.flow_journal

        rows: list[tuple[int, bool, Measured]] = []
        for callers, total in ROUNDS:
            measured = {True: Measured(), False: Measured()}
            for durable in SLICES:
                node.flow_journal = journal if durable else None
                share = total // len(SLICES)
                before, cpu = counter.count, node_cpu()
                wall, latencies = await create_round(node, offering, image, callers, share, created)
                created += share
                measured[durable].add(
                    share, wall, node_cpu() - cpu, latencies, counter.count - before
                )
            node.flow_journal = journal
            rows += [(callers, durable, measured[durable]) for durable in (True, False)]

        header = (
            f"{'callers':>7} {'chains':<11} {'VMs':>6} {'wall s':>8} {'VMs/s':>8} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'DB tx/VM':>9} {'CPU ms/VM':>10} "
            f"{'durable/off':>12}"
        )
        print(
            "CreateVmInstance (InstantStart), closed-loop callers; durable chains and "
            "the flow journal off, in alternating slices"
        )
        print(header)
        print("-" * len(header))
        ratios: dict[int, float] = {}
        for callers, durable, m in rows:
            if not durable:
                ratios[callers] = rows_rate(rows, callers, True) / m.rate
            print(
                f"{callers:>7} {'durable' if durable else 'journal off':<11} {m.vms:>6} "
                f"{m.wall:>8.2f} {m.rate:>8.1f} "
                f"{percentile(m.latencies, 50) * 1e3:>8.1f} "
                f"{percentile(m.latencies, 99) * 1e3:>8.1f} "
                f"{max(m.latencies) * 1e3:>8.1f} {m.transactions / m.vms:>9.1f} "
                f"{m.cpu / m.vms * 1e3:>10.2f} "
                + (f"{ratios[callers]:>12.0%}" if not durable else "")
            )
        print()

        queries = (
            (
                "state=Running, limit=100",
                QUERY_REPEATS,
                {"conditions": ["state=Running"], "limit": 100},
            ),
            ("count=true", QUERY_REPEATS, {"count": True}),
            ("all, unpaged", FULL_QUERY_REPEATS, {"limit": UNPAGED}),
        )
        print(f"QueryVmInstance with {created} VMs in the database (SQLite)")
        header = f"{'query':<26} {'calls':>6} {'rows':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        print(header)
        print("-" * len(header))
        p99s: list[tuple[str, float]] = []
        for label, repeats, params in queries:
            await time_query(node, 3, **params)  # warm up
            samples, size = await time_query(node, repeats, **params)
            p99s.append((label, percentile(samples, 99) * 1e3))
            print(
                f"{label:<26} {repeats:>6} {size:>6} {percentile(samples, 50) * 1e3:>8.1f} "
                f"{p99s[-1][1]:>8.1f} {max(samples) * 1e3:>8.1f}"
            )
        print()

        callers = ROUNDS[-1][0]
        rate = rows_rate(rows, callers, True)
        print(
            f"target: >= {THROUGHPUT_TARGET:.0f} VMs/s with {callers} callers "
            f"({os.cpu_count()} CPUs, SQLite): {verdict(rate >= THROUGHPUT_TARGET)} "
            f"({rate:.1f} VMs/s)"
        )
        ratio = ratios[callers]
        print(
            f"target: durable create throughput >= {DURABLE_TARGET:.0%} of the journal off's "
            f"with {callers} callers: {verdict(ratio >= DURABLE_TARGET)} ({ratio:.0%})"
        )
        for label, p99 in p99s:
            print(
                f"target: query ({label}) p99 < {QUERY_TARGET_MS:.0f} ms: "
                f"{verdict(p99 < QUERY_TARGET_MS)} ({p99:.1f} ms)"
            )
    finally:
        await node.stop()


def against_baseline(revision: str) -> None:
    """(3): the create round of the working tree and of ``revision``, side by side."""
    callers, vms = BASELINE_ROUND
    script = Path(__file__).with_name("create_round.py")
    print(
        f"CreateVmInstance, {callers} callers, {vms} VMs per process: this tree (durable "
        f"chains) against {revision[:12]} (before them), in the order {BASELINE_ORDER}"
    )
    try:
        with baseline_tree(revision) as root:
            runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
            for which in BASELINE_ORDER:
                env = baseline_env(root) if which == "B" else None
                done = subprocess.run(
                    [sys.executable, str(script), str(callers), str(vms)],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=600,
                )
                if done.returncode != 0:
                    who = "the baseline" if which == "B" else "this tree"
                    raise RuntimeError(f"{who}'s create round failed:\n{done.stderr[-2000:]}")
                runs[which].append(json.loads(done.stdout.strip().splitlines()[-1]))
    except NoBaseline as exc:
        print(f"not measured: {exc}")
        return
    header = (
        f"{'code':<26} {'rounds':>6} {'VMs/s (median)':>15} {'CPU ms/VM':>10} {'each round':<24}"
    )
    print(header)
    print("-" * len(header))
    rates: dict[str, float] = {}
    for which, label in (("A", "this tree"), ("B", f"{revision[:12]} (baseline)")):
        each = [r["vms"] / r["wall"] for r in runs[which]]
        rates[which] = statistics.median(each)
        cpu = statistics.median(r["cpu"] / r["vms"] for r in runs[which])
        listed = " ".join(f"{rate:.1f}" for rate in each)
        print(f"{label:<26} {len(each):>6} {rates[which]:>15.1f} {cpu * 1e3:>10.2f} {listed:<24}")
    ratio = rates["A"] / rates["B"]
    print()
    print(
        f"target: durable create throughput >= {DURABLE_TARGET:.0%} of the code before "
        f"durable chains with {callers} callers: {verdict(ratio >= DURABLE_TARGET)} "
        f"({ratio:.0%})"
    )


async def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline",
        default=BASELINE,
        help="the revision to compare with, or 'none' (default: %(default)s)",
    )
    args = parser.parse_args()
    print(
        f"VM benchmark on simulator hosts: Python {platform.python_version()}, "
        f"SQLAlchemy {sqlalchemy.__version__}, {os.cpu_count()} CPUs"
    )
    print(
        f"{HOSTS} simulator hosts ({HOST_CPUS} CPUs, {HOST_MEMORY // GiB} GiB each); "
        f"VMs of 1 CPU, {VM_MEMORY // MiB} MiB; root volumes are qcow2 overlays made "
        "by the agent with qemu-img"
    )
    print()
    root = Path(tempfile.mkdtemp(prefix="zsl-bench-vm-"))
    try:
        await run(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.baseline != "none":
        print()
        against_baseline(args.baseline)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

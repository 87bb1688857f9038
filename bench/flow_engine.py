"""Flow engine overhead, and the cost of durability, side by side in one run.

Run: ``.venv/bin/python bench/flow_engine.py`` (``make bench`` installs TaskFlow).

The same 8-step linear chain (every step has a rollback), in two comparisons, each
once with all steps succeeding and once with the eighth failing and all rolling back:

(1) the engine, in memory:
    (a) plain: eight awaited async function calls; on failure the eighth raises and
        the eight "rollbacks" run in reverse from an ``except``;
    (b) ours: a :class:`FlowChain` built by :class:`FlowChainBuilder` from dotted paths
        to module-level flow classes over a :class:`FlowData` (as the product's declared
        chains run), with an EventBus that has one subscriber on ``FLOW_TRACE_PATH``
        (as the TUI has), no journal;
    (c) TaskFlow: ``engines.load(linear_flow.Flow(...).add(*tasks)).run()`` with the
        serial engine, engine load included in every iteration, as a TaskFlow user
        runs it; on failure the eighth task raises, all revert, the caller catches.
(2) durability:
    (a) in memory: (1b);
    (b) durable: the same chain with the flow journal on SQLite (WAL, the schema made
        by the project's migrations): one row written before each step and each
        rollback, deleted at the end, as the node runs it;
    (c) TaskFlow persisted: (1c) with its SQLAlchemy persistence backend on a SQLite
        file (a logbook and flow detail per run).

Batches of each comparison are interleaved; the per-step time is the median batch.
Targets are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from core.kernel.db import Database
from core.kernel.events import EventBus
from core.kernel.flow import FLOW_TRACE_PATH, Flow, FlowChainBuilder, FlowJournal
from core.kernel.flow_data import FlowData
from core.kernel.flow_journal import SqlFlowJournal

STEPS = 8
ENGINE_BATCHES = 7
ENGINE_ITERATIONS = {"plain": 3000, "ours": 3000, "taskflow": 100}
DURABLE_BATCHES = 5
DURABLE_ITERATIONS = {"memory": 400, "durable": 100, "persisted": 5}
OVERHEAD_TARGET_US = 20.0
RATIO_TARGET = 100.0
DURABLE_RATIO_TARGET = 20.0
SCENARIOS = (("all succeed", False), ("last fails, all roll back", True))

Way = Callable[[bool], Any]
"""One way to run the chain: called with ``fail``; may return a coroutine."""

# --------------------------------------------------------------------------
# plain awaited calls
# --------------------------------------------------------------------------


async def _plain_run(data: dict[str, Any]) -> None:
    data["n"] += 1
    if data["n"] == STEPS and data["fail"]:
        raise RuntimeError("step 8 failed")


async def _plain_rollback(data: dict[str, Any]) -> None:
    data["n"] -= 1


async def plain_chain(fail: bool) -> None:
    data = {"n": 0, "fail": fail}
    runs = [_plain_run] * STEPS
    done = 0
    try:
        for run in runs:
            done += 1
            await run(data)
    except RuntimeError:
        for _ in range(done):
            await _plain_rollback(data)


# --------------------------------------------------------------------------
# our FlowChain, from dotted paths to module-level classes
# --------------------------------------------------------------------------


class BenchData(FlowData):
    n: int = 0
    fail: bool = False


class _BenchFlow(Flow):
    async def run(self, data: Any) -> None:
        data.n += 1
        if data.n == STEPS and data.fail:
            raise RuntimeError("step 8 failed")

    async def rollback(self, data: Any) -> None:
        data.n -= 1


class Step1(_BenchFlow):
    pass


class Step2(_BenchFlow):
    pass


class Step3(_BenchFlow):
    pass


class Step4(_BenchFlow):
    pass


class Step5(_BenchFlow):
    pass


class Step6(_BenchFlow):
    pass


class Step7(_BenchFlow):
    pass


class Step8(_BenchFlow):
    pass


def make_ours(bus: EventBus, journal: FlowJournal | None) -> Way:
    builder = FlowChainBuilder("bench-chain", [f"{__name__}.Step{i}" for i in range(1, STEPS + 1)])

    async def ours(fail: bool) -> None:
        chain = builder.build(events=bus, journal=journal, data_type=BenchData)
        outcome = await chain.start(BenchData(fail=fail))
        if outcome.succeeded is fail:
            raise AssertionError(f"unexpected outcome {outcome.status}")

    return ours


# --------------------------------------------------------------------------
# OpenStack TaskFlow, serial engine, with or without its persistence backend
# --------------------------------------------------------------------------


def make_taskflow(sqlite_file: Path | None = None) -> Way | None:
    """TaskFlow's way (None if it is not installed); persisted to ``sqlite_file`` if given."""
    try:
        from taskflow import engines, task
        from taskflow.patterns import linear_flow
        from taskflow.persistence import backends
        from taskflow.utils import persistence_utils
    except ImportError:
        return None

    class TfStep(task.Task):
        def execute(self, fail: bool) -> None:
            if fail and self.name == f"step{STEPS}":
                raise RuntimeError("step 8 failed")

        def revert(self, *args: Any, **kwargs: Any) -> None:
            pass

    backend = None
    if sqlite_file is not None:
        backend = backends.fetch({"connection": f"sqlite:///{sqlite_file}"})
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()

    def run_taskflow(fail: bool) -> None:
        # New tasks per run: a persisted run records each one under its own uuid.
        flow = linear_flow.Flow("bench-chain").add(
            *(TfStep(name=f"step{i}") for i in range(1, STEPS + 1))
        )
        persistence: dict[str, Any] = {}
        if backend is not None:
            book, detail = persistence_utils.temporary_flow_detail(backend)
            persistence = {"book": book, "flow_detail": detail, "backend": backend}
        engine = engines.load(flow, store={"fail": fail}, engine="serial", **persistence)
        try:
            engine.run()
        except RuntimeError:
            if not fail:
                raise
        else:
            if fail:
                raise AssertionError("taskflow did not fail")

    return run_taskflow


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------


async def _batch(way: Way, fail: bool, n: int) -> float:
    """Seconds per step of ``n`` runs."""
    t0 = time.perf_counter()
    for _ in range(n):
        result = way(fail)
        if asyncio.iscoroutine(result):
            await result
    return (time.perf_counter() - t0) / (n * STEPS)


async def measure(
    ways: dict[str, Way], iterations: dict[str, int], batches: int, fail: bool
) -> dict[str, float]:
    """Median per-step time in microseconds of each way, batches interleaved."""
    for name, way in ways.items():  # warm up
        await _batch(way, fail, max(2, iterations[name] // 10))
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(batches):
        for name, way in ways.items():
            samples[name].append(await _batch(way, fail, iterations[name]))
    return {name: statistics.median(s) * 1e6 for name, s in samples.items()}


def verdict(holds: bool) -> str:
    return "HOLDS" if holds else "MISSED"


def ratio_of(theirs: float, ours: float) -> float:
    return theirs / ours if ours > 0 else float("inf")


# --------------------------------------------------------------------------
# the two comparisons
# --------------------------------------------------------------------------


async def engine_comparison(ours: Way, taskflow: Way | None) -> None:
    ways: dict[str, Way] = {"plain": plain_chain, "ours": ours}
    if taskflow is not None:
        ways["taskflow"] = taskflow
    print(
        f"(1) The engine in memory: median of {ENGINE_BATCHES} interleaved batches; "
        "iterations per batch: " + ", ".join(f"{name} {ENGINE_ITERATIONS[name]}" for name in ways)
    )
    header = (
        f"{'scenario':<27} {'plain':>8} {'ours':>8} {'taskflow':>10} "
        f"{'ours-plain':>11} {'tf-plain':>10} {'tf/ours':>9}"
    )
    print("per-step time and overhead over plain, in µs")
    print(header)
    print("-" * len(header))
    ours_overheads: list[float] = []
    ratios: list[float] = []
    for label, fail in SCENARIOS:
        r = await measure(ways, ENGINE_ITERATIONS, ENGINE_BATCHES, fail)
        ours_over = r["ours"] - r["plain"]
        ours_overheads.append(ours_over)
        if "taskflow" in r:
            tf_over = r["taskflow"] - r["plain"]
            ratios.append(ratio_of(tf_over, ours_over))
            tf_cols = f"{r['taskflow']:>10.2f} "
            tail = f"{tf_over:>10.2f} {ratios[-1]:>8.0f}x"
        else:
            tf_cols = f"{'n/a':>10} "
            tail = f"{'n/a':>10} {'n/a':>9}"
        print(
            f"{label:<27} {r['plain']:>8.2f} {r['ours']:>8.2f} {tf_cols}{ours_over:>11.2f} {tail}"
        )
    worst = max(ours_overheads)
    print(
        f"target: our overhead <= {OVERHEAD_TARGET_US:.0f} µs/step: "
        f"{verdict(worst <= OVERHEAD_TARGET_US)} (worst {worst:.2f} µs/step)"
    )
    target = f"target: TaskFlow overhead / our overhead >= {RATIO_TARGET:.0f}"
    if ratios:
        print(f"{target}: {verdict(min(ratios) >= RATIO_TARGET)} (lowest {min(ratios):.0f}x)")
    else:
        print(f"{target}: not measured")


async def durability_comparison(ours: Way, durable: Way, persisted: Way | None) -> None:
    ways: dict[str, Way] = {"memory": ours, "durable": durable}
    if persisted is not None:
        ways["persisted"] = persisted
    print(
        f"(2) Durability: median of {DURABLE_BATCHES} interleaved batches; "
        "iterations per batch: " + ", ".join(f"{name} {DURABLE_ITERATIONS[name]}" for name in ways)
    )
    header = (
        f"{'scenario':<27} {'memory':>8} {'durable':>8} {'tf persisted':>13} "
        f"{'durable-mem':>12} {'tfp-mem':>10} {'tfp/durable':>12}"
    )
    print("per-step time and overhead over the chain in memory, in µs (journal on SQLite)")
    print(header)
    print("-" * len(header))
    ratios: list[float] = []
    for label, fail in SCENARIOS:
        r = await measure(ways, DURABLE_ITERATIONS, DURABLE_BATCHES, fail)
        ours_over = r["durable"] - r["memory"]
        if "persisted" in r:
            tf_over = r["persisted"] - r["memory"]
            ratios.append(ratio_of(tf_over, ours_over))
            tf_cols = f"{r['persisted']:>13.1f} "
            tail = f"{tf_over:>10.1f} {ratios[-1]:>11.0f}x"
        else:
            tf_cols = f"{'n/a':>13} "
            tail = f"{'n/a':>10} {'n/a':>12}"
        print(
            f"{label:<27} {r['memory']:>8.1f} {r['durable']:>8.1f} {tf_cols}"
            f"{ours_over:>12.1f} {tail}"
        )
    target = f"target: TaskFlow persisted overhead / durable overhead >= {DURABLE_RATIO_TARGET:.0f}"
    if ratios:
        low = min(ratios)
        print(f"{target}: {verdict(low >= DURABLE_RATIO_TARGET)} (lowest {low:.0f}x)")
    else:
        print(f"{target}: not measured")


async def main() -> None:
    # TaskFlow logs every failure and revert at WARNING; keep both engines quiet alike.
    logging.basicConfig(level=logging.ERROR)
    bus = EventBus()
    sink: collections.deque[Any] = collections.deque(maxlen=1000)
    bus.subscribe(FLOW_TRACE_PATH, lambda event: sink.append(event.data))
    ours = make_ours(bus, None)

    print(f"Flow engine benchmark: {STEPS}-step linear chain, Python {platform.python_version()}")
    taskflow = make_taskflow()
    if taskflow is None:
        print(
            "TaskFlow is not installed: `make bench` installs it "
            "(or: .venv/bin/pip install 'taskflow>=5'); measuring without it."
        )
    else:
        print(
            f"TaskFlow {metadata.version('taskflow')}, serial engine, "
            "engines.load() included per run"
        )
    print()
    await engine_comparison(ours, taskflow)
    print()
    with tempfile.TemporaryDirectory(prefix="zsl-bench-flow-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'zstack.db'}")
        db.migrate()
        try:
            durable = make_ours(bus, SqlFlowJournal(db))
            await durability_comparison(ours, durable, make_taskflow(Path(tmp) / "taskflow.db"))
        finally:
            db.close()
    if not sink:
        print("warning: the trace subscriber saw no events")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

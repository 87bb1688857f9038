"""Flow engine overhead: plain awaited calls vs our FlowChain vs OpenStack TaskFlow.

Run: ``.venv/bin/python bench/flow_engine.py`` (``make bench`` installs TaskFlow).

The same 8-step linear chain is measured three ways, in one process:

(a) plain: eight awaited async function calls; on failure the eighth raises and
    the eight "rollbacks" run in reverse from an ``except``;
(b) ours: a :class:`FlowChain` built by :class:`FlowChainBuilder` from dotted paths
    to module-level flow classes, as the product builds them, with an EventBus
    that has one subscriber on ``FLOW_TRACE_PATH`` (as the TUI will);
(c) TaskFlow: ``engines.load(linear_flow.Flow(...).add(*tasks)).run()`` with the
    serial engine, engine load included in every iteration, as a TaskFlow user
    runs it; on failure the eighth task raises, all revert, the caller catches.

Batches of the three are interleaved; the per-step time is the median batch.
Targets are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

from core.kernel.events import EventBus
from core.kernel.flow import FLOW_TRACE_PATH, Flow, FlowChainBuilder

STEPS = 8
BATCHES = 7
ITERATIONS = {"plain": 3000, "ours": 3000, "taskflow": 100}
OVERHEAD_TARGET_US = 20.0
RATIO_TARGET = 100.0

# --------------------------------------------------------------------------
# (a) plain awaited calls
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
# (b) our FlowChain, from dotted paths to module-level classes
# --------------------------------------------------------------------------


class _BenchFlow(Flow):
    async def run(self, data: dict[str, Any]) -> None:
        data["n"] += 1
        if data["n"] == STEPS and data["fail"]:
            raise RuntimeError("step 8 failed")

    async def rollback(self, data: dict[str, Any]) -> None:
        data["n"] -= 1


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


def make_ours() -> tuple[Callable[[bool], Awaitable[None]], collections.deque[Any]]:
    builder = FlowChainBuilder("bench-chain", [f"{__name__}.Step{i}" for i in range(1, STEPS + 1)])
    bus = EventBus()
    sink: collections.deque[Any] = collections.deque(maxlen=1000)
    bus.subscribe(FLOW_TRACE_PATH, lambda event: sink.append(event.data))

    async def ours(fail: bool) -> None:
        outcome = await builder.build(events=bus).start({"n": 0, "fail": fail})
        if outcome.succeeded is fail:
            raise AssertionError(f"unexpected outcome {outcome.status}")

    return ours, sink


# --------------------------------------------------------------------------
# (c) OpenStack TaskFlow, serial engine
# --------------------------------------------------------------------------


def make_taskflow() -> Callable[[bool], None] | None:
    try:
        from taskflow import engines, task
        from taskflow.patterns import linear_flow
    except ImportError:
        return None

    class TfStep(task.Task):
        def execute(self, fail: bool) -> None:
            if fail and self.name == f"step{STEPS}":
                raise RuntimeError("step 8 failed")

        def revert(self, *args: Any, **kwargs: Any) -> None:
            pass

    tasks = [TfStep(name=f"step{i}") for i in range(1, STEPS + 1)]

    def run_taskflow(fail: bool) -> None:
        flow = linear_flow.Flow("bench-chain").add(*tasks)
        engine = engines.load(flow, store={"fail": fail}, engine="serial")
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


async def _time_async(fn: Callable[[bool], Awaitable[None]], fail: bool, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await fn(fail)
    return time.perf_counter() - t0


def _time_sync(fn: Callable[[bool], None], fail: bool, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn(fail)
    return time.perf_counter() - t0


async def measure(
    ours: Callable[[bool], Awaitable[None]], taskflow: Callable[[bool], None] | None, fail: bool
) -> dict[str, float]:
    """Median per-step time in microseconds of each way, batches interleaved."""
    samples: dict[str, list[float]] = {"plain": [], "ours": []}
    if taskflow is not None:
        samples["taskflow"] = []
    # warm up
    await _time_async(plain_chain, fail, 200)
    await _time_async(ours, fail, 200)
    if taskflow is not None:
        _time_sync(taskflow, fail, 10)
    for _ in range(BATCHES):
        n = ITERATIONS["plain"]
        samples["plain"].append(await _time_async(plain_chain, fail, n) / (n * STEPS))
        n = ITERATIONS["ours"]
        samples["ours"].append(await _time_async(ours, fail, n) / (n * STEPS))
        if taskflow is not None:
            n = ITERATIONS["taskflow"]
            samples["taskflow"].append(_time_sync(taskflow, fail, n) / (n * STEPS))
    return {k: statistics.median(v) * 1e6 for k, v in samples.items()}


async def main() -> None:
    # TaskFlow logs every failure and revert at WARNING; keep both engines quiet alike.
    logging.basicConfig(level=logging.ERROR)
    ours, sink = make_ours()
    taskflow = make_taskflow()

    print(f"Flow engine benchmark: {STEPS}-step linear chain, Python {platform.python_version()}")
    print(
        f"median of {BATCHES} interleaved batches; iterations per batch: "
        + ", ".join(
            f"{k} {v}" for k, v in ITERATIONS.items() if k != "taskflow" or taskflow is not None
        )
    )
    if taskflow is None:
        print(
            "TaskFlow is not installed: `make bench` installs it "
            "(or: .venv/bin/pip install 'taskflow>=5'); measuring plain and ours only."
        )
    else:
        version = metadata.version("taskflow")
        print(f"TaskFlow {version}, serial engine, engines.load() included per run")
    print()

    results: list[tuple[str, dict[str, float]]] = []
    for label, fail in (("all succeed", False), ("last fails, all roll back", True)):
        results.append((label, await measure(ours, taskflow, fail)))
    if not sink:
        print("warning: the trace subscriber saw no events")

    header = (
        f"{'scenario':<27} {'plain':>8} {'ours':>8} {'taskflow':>10} "
        f"{'ours-plain':>11} {'tf-plain':>10} {'tf/ours':>9}"
    )
    print("per-step time and overhead over plain, in µs")
    print(header)
    print("-" * len(header))
    ours_overheads: list[float] = []
    ratios: list[float] = []
    for label, r in results:
        ours_over = r["ours"] - r["plain"]
        ours_overheads.append(ours_over)
        if "taskflow" in r:
            tf_over = r["taskflow"] - r["plain"]
            ratio = tf_over / ours_over if ours_over > 0 else float("inf")
            ratios.append(ratio)
            tf_cols = f"{r['taskflow']:>10.2f} "
            tail = f"{tf_over:>10.2f} {ratio:>8.0f}x"
        else:
            tf_cols = f"{'n/a':>10} "
            tail = f"{'n/a':>10} {'n/a':>9}"
        print(
            f"{label:<27} {r['plain']:>8.2f} {r['ours']:>8.2f} {tf_cols}{ours_over:>11.2f} {tail}"
        )
    print()
    worst = max(ours_overheads)
    print(
        f"target: our overhead <= {OVERHEAD_TARGET_US:.0f} µs/step: "
        f"{'HOLDS' if worst <= OVERHEAD_TARGET_US else 'MISSED'} (worst {worst:.2f} µs/step)"
    )
    if ratios:
        low = min(ratios)
        print(
            f"target: TaskFlow overhead / our overhead >= {RATIO_TARGET:.0f}: "
            f"{'HOLDS' if low >= RATIO_TARGET else 'MISSED'} (lowest {low:.0f}x)"
        )
    else:
        print(f"target: TaskFlow overhead / our overhead >= {RATIO_TARGET:.0f}: not measured")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

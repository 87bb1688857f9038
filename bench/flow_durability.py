"""The cost of durable flow chains, side by side in one run.

Run: ``.venv/bin/python bench/flow_durability.py`` (``make bench`` installs TaskFlow).

The same 8-step linear chain (every step has a rollback, so every step is written
down before it runs):

(a) in memory: a declared chain over :class:`FlowData`, no journal;
(b) durable: the same chain with the node's flow journal on SQLite (WAL, the schema
    made by the project's migrations), one row written before each step and deleted
    at the end, as the product runs it;
(c) TaskFlow persisted: ``engines.load`` with its SQLAlchemy persistence backend on a
    SQLite file (a logbook and flow detail per run), serial engine.

Figures are the median per-step time of interleaved batches; the target (durable
overhead per step at least 20x below TaskFlow's persisted overhead) is printed, never
asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from core.kernel.db import Database
from core.kernel.flow import Flow, FlowChainBuilder
from core.kernel.flow_data import FlowData
from core.kernel.flow_journal import SqlFlowJournal

STEPS = 8
BATCHES = 5
ITERATIONS = {"memory": 400, "durable": 100, "taskflow": 20}
RATIO_TARGET = 20.0


class BenchData(FlowData):
    n: int = 0


class _Step(Flow):
    async def run(self, data: Any) -> None:
        data.n += 1

    async def rollback(self, data: Any) -> None:
        data.n -= 1


class Step1(_Step):
    pass


class Step2(_Step):
    pass


class Step3(_Step):
    pass


class Step4(_Step):
    pass


class Step5(_Step):
    pass


class Step6(_Step):
    pass


class Step7(_Step):
    pass


class Step8(_Step):
    pass


def make_ours(journal: SqlFlowJournal | None) -> Callable[[], Awaitable[None]]:
    builder = FlowChainBuilder("bench", [f"{__name__}.Step{i}" for i in range(1, STEPS + 1)])

    async def run() -> None:
        outcome = await builder.build(journal=journal, data_type=BenchData).start(BenchData())
        assert outcome.succeeded

    return run


def make_taskflow(directory: Path) -> Callable[[], None] | None:
    try:
        from taskflow import engines, task
        from taskflow.patterns import linear_flow
        from taskflow.persistence import backends
        from taskflow.utils import persistence_utils
    except ImportError:
        return None

    backend = backends.fetch({"connection": f"sqlite:///{directory / 'taskflow.db'}"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()

    class TfStep(task.Task):
        def execute(self) -> None:
            pass

        def revert(self, *args: Any, **kwargs: Any) -> None:
            pass

    def run() -> None:
        flow = linear_flow.Flow("bench").add(*(TfStep(name=f"s{i}") for i in range(STEPS)))
        book, detail = persistence_utils.temporary_flow_detail(backend)
        engines.load(flow, flow_detail=detail, book=book, backend=backend, engine="serial").run()

    return run


async def _batch(fn: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        result = fn()
        if asyncio.iscoroutine(result):
            await result
    return (time.perf_counter() - t0) / (n * STEPS) * 1e6


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="zsl-bench-flow-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'zstack.db'}")
        db.migrate()
        ways: dict[str, Callable[[], Any]] = {
            "memory": make_ours(None),
            "durable": make_ours(SqlFlowJournal(db)),
        }
        taskflow = make_taskflow(Path(tmp))
        if taskflow is not None:
            ways["taskflow"] = taskflow
        samples: dict[str, list[float]] = {k: [] for k in ways}
        for fn in ways.values():  # warm up
            await _batch(fn, 5)
        for _ in range(BATCHES):
            for name, fn in ways.items():
                samples[name].append(await _batch(fn, ITERATIONS[name]))
        db.close()

    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"Durable flow chains: {STEPS}-step chain, median of {BATCHES} interleaved batches")
    print(f"{'way':<28} {'µs/step':>10} {'overhead vs memory':>20}")
    for name, label in (
        ("memory", "in memory"),
        ("durable", "durable (SQLite journal)"),
        ("taskflow", "TaskFlow persisted (SQLite)"),
    ):
        if name in med:
            print(f"{label:<28} {med[name]:>10.1f} {med[name] - med['memory']:>20.1f}")
    if "taskflow" not in med:
        print("TaskFlow is not installed (`make bench` installs it): ratio not measured")
        return
    ours = med["durable"] - med["memory"]
    theirs = med["taskflow"] - med["memory"]
    ratio = theirs / ours if ours > 0 else float("inf")
    print(
        f"target: TaskFlow persisted overhead / durable overhead >= {RATIO_TARGET:.0f}: "
        f"{'HOLDS' if ratio >= RATIO_TARGET else 'MISSED'} ({ratio:.1f}x)"
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

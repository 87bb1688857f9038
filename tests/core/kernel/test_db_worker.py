"""The SQLite worker thread: one transaction per job, a failed job changes nothing and
spoils nothing after it, a cancelled job that has not begun never runs, and closing
finishes what was queued."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

import core.models  # noqa: F401  (fills Base.metadata)
from core.kernel.db import Database, new_uuid
from core.zone.models import ZoneVO

zones = ZoneVO.__table__


def add_zone(name: str) -> object:
    def add(conn: Connection) -> None:
        conn.execute(insert(zones).values(uuid=new_uuid(), name=name))

    return add


def names(conn: Connection | Session) -> list[str]:
    return sorted(conn.scalars(select(zones.c.name)))


async def test_jobs_run_in_one_thread_each_in_its_own_transaction(db: Database) -> None:
    def fail(conn: Connection) -> None:
        conn.execute(insert(zones).values(uuid="f" * 32, name="half-done"))
        raise ValueError("no")

    threads: set[str] = set()

    def record_thread(conn: Connection) -> None:
        threads.add(threading.current_thread().name)

    results = await asyncio.gather(
        db.run_core(add_zone("a")),
        db.run_core(fail),
        db.run(lambda s: s.add(ZoneVO(name="b"))),
        db.run_core(record_thread),
        db.run(lambda s: s.add(ZoneVO(name="c"))),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    assert [r for i, r in enumerate(results) if i != 1] == [None] * 4
    assert await db.run_core(names) == ["a", "b", "c"]  # the failed job left nothing
    assert threads == {"db"} and threading.current_thread().name not in threads


async def test_a_failed_statement_does_not_spoil_the_connection(db: Database) -> None:
    def add_twice(conn: Connection) -> None:
        row = {"uuid": "1" * 32, "name": "twice"}
        conn.execute(insert(zones).values(row))
        conn.execute(insert(zones).values(row))

    await db.run_core(add_zone("a"))
    with pytest.raises(Exception, match="UNIQUE"):
        await db.run_core(add_twice)  # the primary key is taken
    await db.run_core(add_zone("b"))
    assert await db.run(names) == ["a", "b"]


async def test_a_database_that_cannot_be_opened_fails_the_call_not_the_worker(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "not-yet"
    db = Database(f"sqlite:///{directory / 'zstack.db'}")
    try:
        with pytest.raises(Exception, match="unable to open database file"):
            await asyncio.wait_for(db.run_core(names), 10)
        directory.mkdir()
        db.migrate()
        await asyncio.wait_for(db.run_core(add_zone("a")), 10)  # the worker is still there
        assert await db.run_core(names) == ["a"]
    finally:
        db.close()


async def test_results_come_back_in_bursts_without_losing_any(db: Database) -> None:
    count = 500
    await asyncio.gather(*(db.run_core(add_zone(f"z{i}")) for i in range(count)))
    total = await db.run_core(lambda c: c.scalar(select(func.count()).select_from(zones)))
    assert total == count


async def test_a_job_cancelled_before_it_began_never_runs(db: Database) -> None:
    gate = threading.Event()

    def hold(conn: Connection) -> None:
        gate.wait(10)

    holding = asyncio.ensure_future(db.run_core(hold))
    waiting = asyncio.ensure_future(db.run_core(add_zone("never")))
    await asyncio.sleep(0.05)
    waiting.cancel()
    await asyncio.sleep(0)
    gate.set()
    await holding
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await db.run_core(names) == []


async def test_closing_finishes_the_queue_then_refuses(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'zstack.db'}")
    db.migrate()
    queued = [asyncio.ensure_future(db.run_core(add_zone(f"q{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # submitted
    await asyncio.get_running_loop().run_in_executor(None, db.close)
    await asyncio.gather(*queued)
    with pytest.raises(RuntimeError, match="closed"):
        await db.run_core(add_zone("late"))
    reopened = Database(f"sqlite:///{tmp_path / 'zstack.db'}")
    try:
        assert len(reopened.run_sync(names)) == 20
    finally:
        reopened.close()

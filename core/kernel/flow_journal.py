"""The flow journal: every running chain's progress, in the database as it happens.

One row per *run*: a chain started with :class:`~core.kernel.flow_data.FlowData`,
together with the chains nested in it over the same data (the host allocator inside
``VmAllocateHostFlow``), which are recorded under it.  The row is written before each
step runs and before each step is rolled back, with the data as it is then, and
deleted when the run ends; so the table holds exactly the runs under way, and after a
crash exactly the runs the crash interrupted (:mod:`core.kernel.flow_recovery`).  The
one exception: a run whose rollback failed at a step stays, as ``RollbackFailed``, until
its GC job has finished the rollback (core.gc.flow_rollback).

A step's state in the row is what the engine knew before it acted: a step marked
``RUNNING`` may have done all, some or none of its work, which is why a rollback must
check the real state and be idempotent.  A flow that makes something it can only find
again through a value it chose (a capacity reservation, a generated uuid) writes that
value down in the same transaction with :func:`~core.kernel.flow.checkpointer`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    Integer,
    String,
    Text,
    bindparam,
    delete,
    insert,
    select,
)
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, Database

if TYPE_CHECKING:
    from core.kernel.flow import DurableRun

__all__ = ["FlowRunVO", "JournalledRun", "SqlFlowJournal"]

RUNNING = "Running"
ROLLING_BACK = "RollingBack"


class FlowRunVO(Base):
    """A chain run under way (or interrupted by a crash): the flow journal's one table."""

    __tablename__ = "flow_run"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """The id of the run's outermost chain."""
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    """``Running``, ``RollingBack`` once a step failed, or ``RollbackFailed``: a rollback
    step failed and the rest of the rollback waits here for its GC job."""
    resumable: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_chain_id: Mapped[str | None] = mapped_column(String(32), default=None)
    """The chain (of another run) whose flow started this run, if any."""
    operation_id: Mapped[str | None] = mapped_column(String(32), default=None)
    operation_name: Mapped[str | None] = mapped_column(String(255), default=None)
    resource_uuid: Mapped[str | None] = mapped_column(String(64), default=None)
    resource_name: Mapped[str | None] = mapped_column(String(255), default=None)
    data_type: Mapped[str] = mapped_column(String(255))
    """Dotted path of the run's FlowData class."""
    data: Mapped[str] = mapped_column(Text)
    """The FlowData as JSON, as it was at the last write."""
    chains: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    """The run's chains under way, outermost first: ``{id, name, parentId, flows, steps}``
    (``flows``: dotted class paths; ``steps``: one StepState each)."""
    pid: Mapped[int] = mapped_column(Integer)
    """The node process that ran it."""
    started_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


_table = FlowRunVO.__table__
_INSERT = insert(_table)
_UPDATE = (
    sql_update(_table)
    .where(_table.c.id == bindparam("run_id"))
    .values(
        status=bindparam("status"),
        resource_uuid=bindparam("resource_uuid"),
        resource_name=bindparam("resource_name"),
        data=bindparam("data"),
        chains=bindparam("chains"),
        updated_at=bindparam("updated_at"),
    )
)
_DELETE = delete(_table).where(_table.c.id == bindparam("run_id"))


@dataclass(frozen=True, slots=True)
class JournalledRun:
    """A row of the journal, read back (at recovery)."""

    id: str
    name: str
    status: str
    resumable: bool
    parent_chain_id: str | None
    operation_id: str | None
    operation_name: str | None
    resource_uuid: str | None
    resource_name: str | None
    data_type: str
    data: str
    chains: list[dict[str, Any]]
    pid: int
    started_at: float
    updated_at: float


class SqlFlowJournal:
    """Writes runs to ``flow_run`` through the node's database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pid = os.getpid()

    async def write(self, run: DurableRun) -> None:
        statement, params = self._statement(run)
        await self._db.run_core(lambda conn: conn.execute(statement, params))

    def write_in(self, conn: Connection, run: DurableRun) -> None:
        """Write inside the caller's transaction (a flow's checkpoint)."""
        statement, params = self._statement(run)
        conn.execute(statement, params)

    def _statement(self, run: DurableRun) -> tuple[Any, dict[str, Any]]:
        now = time.time()
        params = run.row()
        params["updated_at"] = now
        if run.persisted:
            params["run_id"] = run.id
            return _UPDATE, params
        run.persisted = True
        params.update(
            id=run.id,
            name=run.name,
            resumable=run.resumable,
            parent_chain_id=run.parent_chain_id,
            operation_id=run.operation_id,
            operation_name=run.operation_name,
            data_type=run.data_type,
            pid=self._pid,
            started_at=run.started_at,
        )
        return _INSERT, params

    async def forget(self, run: DurableRun) -> None:
        if run.persisted:
            await self._db.run_core(lambda conn: conn.execute(_DELETE, {"run_id": run.id}))

    async def forget_id(self, run_id: str) -> None:
        await self._db.run_core(lambda conn: conn.execute(_DELETE, {"run_id": run_id}))

    async def runs(self) -> list[JournalledRun]:
        """Every run in the journal, oldest first."""

        def read(conn: Connection) -> list[JournalledRun]:
            rows = conn.execute(select(_table).order_by(_table.c.started_at)).mappings()
            return [JournalledRun(**row) for row in rows]

        return await self._db.run_core(read)

    async def run(self, run_id: str) -> JournalledRun | None:
        """The run ``run_id``, if it is in the journal."""

        def read(conn: Connection) -> JournalledRun | None:
            row = conn.execute(select(_table).where(_table.c.id == run_id)).mappings().first()
            return None if row is None else JournalledRun(**row)

        return await self._db.run_core(read)

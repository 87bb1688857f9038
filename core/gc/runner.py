"""Runs GC jobs: when they are due, when a trigger event comes, and when asked.

The scheduler keeps a timer per Idle job it knows of (at its next run time) and one event
subscription per trigger path.  A scan (at start, then every ``gc.scan.interval`` seconds)
reloads the Idle jobs from the table, so jobs written by other transactions, or before a
restart, are never missed; it also deletes Done jobs past ``gc.done.retention``.

A run claims the job (Idle -> Processing), runs its runner in a background flow chain
``gc:<job name>`` (so it shows in the operations log), then records the outcome: Done, or
Idle again with the error, one more attempt and a later next run time.  A job found
Processing at start was interrupted by the node's death: it is Idle again and due at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from contracts.events import GcJobDeleted, GcJobUpdated
from core.gc import global_config as cfg
from core.gc.job import GarbageCollectorJob, new_runner
from core.gc.models import DONE, IDLE, PROCESSING, GarbageCollectorVO
from core.gc.triggers import Trigger
from core.kernel.db import utcnow
from core.kernel.errors import ErrorCode, error_from_exception
from core.kernel.events import CanonicalEvent, Subscription
from core.kernel.flow import NoRollbackFlow
from core.kernel.operation import context_of
from core.kernel.periodic import PeriodicTask

if TYPE_CHECKING:
    from core.kernel.node import ManagementNode

log = logging.getLogger(__name__)

UPDATE_EVENT = GcJobUpdated.PATH
"""Data: ``{uuid, name, oldStatus, newStatus, inventory}`` at every change of a job
(submitted, claimed, run ended)."""
DELETED_EVENT = GcJobDeleted.PATH
"""Data: ``{uuid, name}`` when a job is deleted (by DeleteGarbageCollector or pruned)."""


def config_value(node: ManagementNode, definition: Any) -> int:
    """A gc.* config's value; its default while the config service is not up."""
    from core.config.plugin import GlobalConfigPlugin

    try:
        return int(node.plugin(GlobalConfigPlugin).value(definition.category, definition.name))
    except Exception:
        return int(definition.default)


def retry_delay(node: ManagementNode, failures: int) -> float:
    """Seconds to wait after ``failures`` failed runs: gc.retry.interval doubled per
    failure, capped by gc.retry.maxInterval."""
    base = config_value(node, cfg.RETRY_INTERVAL)
    cap = config_value(node, cfg.RETRY_MAX_INTERVAL)
    return float(min(base * 2 ** min(failures, 62), cap))


class _RunJob(NoRollbackFlow):
    """The one step of a GC run: the runner's ``run``.  Made per run (never shared)."""

    def __init__(self, job: GarbageCollectorJob, node: ManagementNode, context: dict) -> None:
        self.job = job
        self.node = node
        self.context = context
        self.name = type(job).__name__  # type: ignore[misc]

    async def run(self, data: dict[str, Any]) -> None:
        await self.job.run(self.node, self.context)


@dataclass
class _Claim:
    name: str
    runner: str
    context: dict[str, Any]
    old_status: str


class GcScheduler:
    def __init__(self, node: ManagementNode) -> None:
        self.node = node
        self.started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._triggers: dict[str, tuple[Trigger, ...]] = {}
        self._subs: dict[str, Subscription] = {}
        self._runs: dict[str, asyncio.Task[dict[str, Any] | None]] = {}
        self._again: set[str] = set()
        """Jobs a trigger fired for while they ran: they run again if that run failed."""
        self._periodic: PeriodicTask | None = None

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.node.db.run(_take_back_interrupted)
        self.started = True
        await self.scan()
        self._periodic = PeriodicTask(
            self.node, "gc-scan", cfg.CATEGORY, cfg.SCAN_INTERVAL.name, self.scan
        )
        self._periodic.start()

    async def stop(self) -> None:
        self.started = False
        if self._periodic is not None:
            await self._periodic.stop()
            self._periodic = None
        for uuid in list(self._timers):
            self._cancel_timer(uuid)
        self._triggers.clear()
        self._sync_subscriptions()
        runs = list(self._runs.values())
        for task in runs:
            task.cancel()
        for task in runs:
            with contextlib.suppress(BaseException):
                await task

    # -- what is due ----------------------------------------------------------------------

    async def scan(self) -> None:
        """Delete Done jobs past retention; arm every Idle job as the table has it.  (A job
        armed that is gone from the table is forgotten when its timer or trigger finds it
        gone: what this scan read may be older than a submit that was armed meanwhile.)"""
        retention = config_value(self.node, cfg.DONE_RETENTION)
        pruned, idle = await self.node.db.run(lambda s: _scan(s, retention))
        for uuid, name in pruned:
            self.node.events.publish(DELETED_EVENT, GcJobDeleted(uuid=uuid, name=name).to_json())
        if not self.started:
            return
        for uuid, at, triggers in idle:
            self.arm(uuid, at, triggers)

    def arm(self, uuid: str, at: datetime | None, triggers: Iterable[str]) -> None:
        """Run job ``uuid`` at ``at`` (None: now) or when one of ``triggers`` comes."""
        if not self.started or uuid in self._runs:
            return
        assert self._loop is not None
        self._triggers[uuid] = tuple(Trigger.parse(t) for t in triggers)
        self._sync_subscriptions()
        self._cancel_timer(uuid)
        delay = 0.0 if at is None else max(0.0, (at - utcnow()).total_seconds())
        self._timers[uuid] = self._loop.call_later(delay, self.fire, uuid)

    def disarm(self, uuid: str) -> None:
        """Forget job ``uuid`` (deleted, or Done)."""
        self._cancel_timer(uuid)
        if self._triggers.pop(uuid, None) is not None:
            self._sync_subscriptions()
        self._again.discard(uuid)

    def submitted_threadsafe(
        self, uuid: str, at: datetime | None, triggers: list[str], inventory: dict[str, Any]
    ) -> None:
        """A transaction that submitted job ``uuid`` has committed (in any thread): arm it
        and say so on the event loop.  Before start, the start's scan arms it."""
        if self._loop is not None and self.started:
            self._loop.call_soon_threadsafe(self._submitted, uuid, at, triggers, inventory)

    def _submitted(
        self, uuid: str, at: datetime | None, triggers: list[str], inventory: dict[str, Any]
    ) -> None:
        self.arm(uuid, at, triggers)
        self._publish(uuid, inventory["name"], None, IDLE, inventory)

    def _cancel_timer(self, uuid: str) -> None:
        timer = self._timers.pop(uuid, None)
        if timer is not None:
            timer.cancel()

    def _sync_subscriptions(self) -> None:
        wanted = {t.path for triggers in self._triggers.values() for t in triggers}
        for path in set(self._subs) - wanted:
            self._subs.pop(path).cancel()
        for path in wanted - set(self._subs):
            self._subs[path] = self.node.events.subscribe(
                path, lambda event, path=path: self._on_event(path, event)
            )

    def _on_event(self, path: str, event: CanonicalEvent) -> None:
        fired = [
            uuid
            for uuid, triggers in list(self._triggers.items())  # any publisher's thread
            if any(t.path == path and t.matches(event.data) for t in triggers)
        ]
        if fired and self._loop is not None:
            for uuid in fired:
                self._loop.call_soon_threadsafe(self.fire, uuid)

    # -- running --------------------------------------------------------------------------

    def fire(self, uuid: str) -> None:
        """Run job ``uuid`` in the background (as work of no operation), unless it runs."""
        self._timers.pop(uuid, None)
        if not self.started:
            return
        if uuid in self._runs:
            self._again.add(uuid)
            return
        self._spawn(uuid, context_of(None))

    async def run_now(self, uuid: str) -> dict[str, Any] | None:
        """Run job ``uuid`` now, in the calling operation (or wait for the run under way);
        its inventory after the run, or None if it was not Idle (or is gone)."""
        task = self._runs.get(uuid)
        if task is None:
            task = self._spawn(uuid, None)
        return await asyncio.shield(task)

    def _spawn(self, uuid: str, context: Any) -> asyncio.Task[dict[str, Any] | None]:
        self._cancel_timer(uuid)
        task = asyncio.get_running_loop().create_task(
            self._run(uuid), name=f"gc-job-{uuid}", context=context
        )
        self._runs[uuid] = task
        task.add_done_callback(lambda t: self._ran(uuid, t))
        return task

    def _ran(self, uuid: str, task: asyncio.Task[dict[str, Any] | None]) -> None:
        self._runs.pop(uuid, None)
        again = uuid in self._again
        self._again.discard(uuid)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("GC job %s could not be run", uuid, exc_info=task.exception())
            return
        inventory = task.result()
        if inventory is None or inventory["status"] == DONE:
            self.disarm(uuid)
        elif again:
            self.arm(uuid, None, inventory["triggerEvents"])
        else:
            self.arm(uuid, _parse_date(inventory["nextRunTime"]), inventory["triggerEvents"])

    async def _run(self, uuid: str) -> dict[str, Any] | None:
        claim = await self.node.db.run(lambda s: _claim(s, uuid))
        if claim is None:
            return None
        self._publish(uuid, claim.name, claim.old_status, PROCESSING)
        try:
            error = await self._run_chain(uuid, claim)
        except asyncio.CancelledError:  # the node stops: the job runs again at its next start
            await asyncio.shield(self.node.db.run(lambda s: _release(s, uuid)))
            raise
        inventory = await self.node.db.run(
            lambda s: _finish(s, uuid, error, lambda failures: retry_delay(self.node, failures))
        )
        if inventory is not None:
            self._publish(uuid, claim.name, PROCESSING, inventory["status"], inventory)
            if error is not None:
                log.warning(
                    "GC job %s (%s) failed, runs again at %s: %s",
                    claim.name, uuid, inventory["nextRunTime"], error,
                )  # fmt: skip
        return inventory

    async def _run_chain(self, uuid: str, claim: _Claim) -> ErrorCode | None:
        try:
            job = new_runner(claim.runner)
        except Exception as exc:  # the runner's code changed since the job was stored
            return error_from_exception(exc)
        chain = self.node.new_chain(f"gc:{claim.name}").then(_RunJob(job, self.node, claim.context))
        outcome = await chain.start()
        return outcome.error

    def _publish(
        self,
        uuid: str,
        name: str,
        old: str | None,
        new: str,
        inventory: dict[str, Any] | None = None,
    ) -> None:
        event = GcJobUpdated(
            uuid=uuid, name=name, old_status=old, new_status=new, inventory=inventory
        )
        self.node.events.publish(event.PATH, event.to_json())


# -- transactions (run in the database's thread) ---------------------------------------------


def _take_back_interrupted(session: Session) -> None:
    session.execute(
        update(GarbageCollectorVO)
        .where(GarbageCollectorVO.status == PROCESSING)
        .values(status=IDLE, next_run_time=utcnow())
    )


def _scan(
    session: Session, retention: int
) -> tuple[list[tuple[str, str]], list[tuple[str, datetime | None, list[str]]]]:
    old = utcnow() - timedelta(seconds=retention)
    pruned = [
        (row.uuid, row.name)
        for row in session.execute(
            select(GarbageCollectorVO.uuid, GarbageCollectorVO.name).where(
                GarbageCollectorVO.status == DONE, GarbageCollectorVO.last_op_date <= old
            )
        )
    ]
    if pruned:
        session.execute(
            delete(GarbageCollectorVO).where(GarbageCollectorVO.uuid.in_([u for u, _ in pruned]))
        )
    idle = [
        (row.uuid, row.next_run_time, list(row.trigger_events or ()))
        for row in session.execute(
            select(
                GarbageCollectorVO.uuid,
                GarbageCollectorVO.next_run_time,
                GarbageCollectorVO.trigger_events,
            ).where(GarbageCollectorVO.status == IDLE)
        )
    ]
    return pruned, idle


def _claim(session: Session, uuid: str) -> _Claim | None:
    row = session.get(GarbageCollectorVO, uuid)
    if row is None or row.status != IDLE:
        return None
    row.status = PROCESSING
    return _Claim(row.name, row.runner, dict(row.context or {}), IDLE)


def _release(session: Session, uuid: str) -> None:
    row = session.get(GarbageCollectorVO, uuid)
    if row is not None and row.status == PROCESSING:
        row.status, row.next_run_time = IDLE, utcnow()


def _finish(
    session: Session, uuid: str, error: ErrorCode | None, delay: Callable[[int], float]
) -> dict[str, Any] | None:
    row = session.get(GarbageCollectorVO, uuid)
    if row is None:  # deleted while it ran
        return None
    row.attempts += 1
    if error is None:
        row.status, row.next_run_time = DONE, None
    else:
        row.status, row.last_error = IDLE, error.to_dict()
        row.next_run_time = utcnow() + timedelta(seconds=delay(row.attempts))
    session.flush()
    return row.to_inventory()


def _parse_date(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None

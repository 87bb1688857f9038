"""The garbage-collector service: submit GC jobs (core.gc.job), their APIs, their schedule.

``node.plugin(GarbageCollectorPlugin).submit_in(session, ...)`` / ``await ...submit(...)``
is how a service hands over a clean-up it cannot do now; see :mod:`core.gc.job`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from contracts.events import GcJobDeleted
from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.gc import global_config
from core.gc.api import DeleteGarbageCollector, QueryGarbageCollector, TriggerGarbageCollector
from core.gc.flow_rollback import adopt_failed_rollbacks
from core.gc.job import check_context, new_runner
from core.gc.models import DONE, IDLE, GarbageCollectorVO
from core.gc.runner import DELETED_EVENT, GcScheduler, config_value
from core.gc.triggers import Trigger
from core.kernel.db import utcnow
from core.kernel.errors import ErrorCode, OperationError, SysErrors, argerr, not_found
from core.kernel.events import CanonicalEvent, Subscription
from core.kernel.extensions import Component, Plugin
from core.kernel.flow import ROLLBACK_HANDED_OVER_PATH
from core.kernel.service import Service, handles
from core.management_node.plugin import NodeStatusExtensionPoint

log = logging.getLogger(__name__)

MAX_NAME = 255


class GarbageCollectorPlugin(
    Plugin, GlobalConfigProvider, Service, Component, NodeStatusExtensionPoint
):
    implements = (GlobalConfigProvider, Service, Component, NodeStatusExtensionPoint)
    order = 10  # starts after the services its jobs use, stops before them
    service_id = "garbageCollector"
    queries = (QueryGarbageCollector,)

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self.scheduler = GcScheduler(node)
        self._handovers: Subscription | None = None

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    async def start(self) -> None:
        await self.scheduler.start()
        self._handovers = self.node.events.subscribe(
            ROLLBACK_HANDED_OVER_PATH, self._rollback_handed_over
        )
        await adopt_failed_rollbacks(self)

    async def stop(self) -> None:
        if self._handovers is not None:
            self._handovers.cancel()
            self._handovers = None
        await self.scheduler.stop()

    async def _rollback_handed_over(self, event: CanonicalEvent) -> None:
        try:
            await adopt_failed_rollbacks(self, {event.data["runId"]: event.data.get("error", "")})
        except Exception:
            log.exception("cannot make the GC job of a failed rollback (the next start will)")

    # -- submitting -------------------------------------------------------------------------

    def submit_in(
        self,
        session: Session,
        *,
        name: str,
        runner: str,
        context: dict[str, Any],
        resource_uuid: str | None = None,
        trigger_events: Sequence[str] = (),
        error: ErrorCode | str | None = None,
    ) -> str:
        """Store a GC job in the caller's transaction; its uuid.  It is scheduled once the
        transaction commits (nothing is left if it rolls back).  Bad input raises argerr
        and stores nothing."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise argerr(f"GC job name {name!r} must be 1 to {MAX_NAME} characters")
        new_runner(runner)  # importable, a GarbageCollectorJob, made with no arguments
        stored_context = check_context(context)
        if isinstance(trigger_events, str):
            raise argerr("GC job trigger_events must be a list of event paths, not a string")
        triggers = [Trigger.parse(t).text for t in trigger_events]
        uuid_ok = isinstance(resource_uuid, str) and 0 < len(resource_uuid) <= 64
        if resource_uuid is not None and not uuid_ok:
            raise argerr(f"GC job resource uuid {resource_uuid!r} is not a uuid")
        if isinstance(error, str):
            error = ErrorCode(SysErrors.OPERATION_ERROR, error)
        next_run = utcnow() + timedelta(
            seconds=config_value(self.node, global_config.RETRY_INTERVAL)
        )
        row = GarbageCollectorVO(
            name=name,
            runner=runner,
            resource_uuid=resource_uuid,
            context=stored_context,
            status=IDLE,
            attempts=0,
            last_error=error.to_dict() if error is not None else None,
            trigger_events=triggers,
            next_run_time=next_run,
        )
        session.add(row)
        session.flush()
        inventory = row.to_inventory()
        scheduler, uuid = self.scheduler, row.uuid

        def committed(_session: Session) -> None:
            scheduler.submitted_threadsafe(uuid, next_run, triggers, inventory)

        event.listen(session, "after_commit", committed, once=True)
        return uuid

    async def submit(
        self,
        *,
        name: str,
        runner: str,
        context: dict[str, Any],
        resource_uuid: str | None = None,
        trigger_events: Sequence[str] = (),
        error: ErrorCode | str | None = None,
    ) -> str:
        """:meth:`submit_in` in its own transaction; the job is scheduled when it returns."""
        return await self.node.db.run(
            lambda session: self.submit_in(
                session,
                name=name,
                runner=runner,
                context=context,
                resource_uuid=resource_uuid,
                trigger_events=trigger_events,
                error=error,
            )
        )

    # -- API ------------------------------------------------------------------------------

    @handles(TriggerGarbageCollector)
    async def trigger(self, msg: TriggerGarbageCollector) -> dict[str, Any]:
        before = await self.node.db.run(lambda s: _inventory(s, msg.uuid))
        if before["status"] == DONE:
            raise OperationError(
                ErrorCode(
                    SysErrors.INVALID_STATE,
                    f"GC job {before['name']} [uuid:{msg.uuid}] is Done: nothing to run",
                )
            )
        after = await self.scheduler.run_now(msg.uuid)
        if after is None:  # deleted meanwhile, or another run had it: report what is stored
            after = await self.node.db.run(lambda s: _inventory(s, msg.uuid))
        if after["status"] != DONE:
            cause = after["lastError"]
            raise OperationError(
                ErrorCode(
                    SysErrors.OPERATION_ERROR,
                    f"GC job {after['name']} failed (attempt {after['attempts']}); it runs "
                    f"again at {after['nextRunTime']} or when a trigger event comes",
                    cause=ErrorCode.from_dict(cause) if cause else None,
                )
            )
        return after

    @handles(DeleteGarbageCollector)
    async def delete(self, msg: DeleteGarbageCollector) -> None:
        def remove(session: Session) -> str:
            row = session.get(GarbageCollectorVO, msg.uuid)
            if row is None:
                raise not_found(GarbageCollectorVO.resource_type, msg.uuid)
            session.delete(row)
            return row.name

        name = await self.node.db.run(remove)
        self.scheduler.disarm(msg.uuid)
        self.node.events.publish(DELETED_EVENT, GcJobDeleted(uuid=msg.uuid, name=name).to_json())

    # -- the node's status --------------------------------------------------------------------

    async def node_status(self) -> dict[str, Any]:
        def pending(session: Session) -> tuple[int, dict[str, Any] | None]:
            count = session.scalar(select(func.count()).where(GarbageCollectorVO.status != DONE))
            oldest = session.scalars(
                select(GarbageCollectorVO)
                .where(GarbageCollectorVO.status != DONE)
                .order_by(GarbageCollectorVO.create_date)
                .limit(1)
            ).first()
            return count or 0, oldest.to_inventory() if oldest is not None else None

        count, oldest = await self.node.db.run(pending)
        if not count or oldest is None:
            return {}
        jobs = "1 clean-up is" if count == 1 else f"{count} clean-ups are"
        error = (oldest.get("lastError") or {}).get("description")
        why = f" ({oldest['name']}: {error})" if error else f" ({oldest['name']})"
        return {
            "problems": [
                f"{jobs} waiting in garbage collection{why}; see the GC view (8) "
                "or zcli QueryGarbageCollector"
            ]
        }


def _inventory(session: Session, uuid: str) -> dict[str, Any]:
    row = session.get(GarbageCollectorVO, uuid)
    if row is None:
        raise not_found(GarbageCollectorVO.resource_type, uuid)
    return row.to_inventory()

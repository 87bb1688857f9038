"""Failed rollbacks become GC jobs.

A durable chain whose rollback fails at a step (its host's agent is down) stops there
and stays in the flow journal as ``RollbackFailed``, with the rest of its rollback
(core.kernel.flow, :data:`~core.kernel.flow.ROLLBACK_HANDED_OVER_PATH`): what the earlier
steps hold (the VM's IP, its capacity, its row) stays in use while something it could
not undo (a domain) may still use it.  Each such run gets one GC job,
:class:`FinishRollbackJob`, which finishes the rollback from the journal: at once when one
of the run's hosts reconnects, else with the GC's backoff, or on TriggerGarbageCollector.

Jobs are made from the journal (:func:`adopt_failed_rollbacks`), at the GC service's
start and on every hand-over, so a node that dies between the hand-over and the job's
insert still gets its job after the restart.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.gc.job import GarbageCollectorJob
from core.gc.models import DONE, GarbageCollectorVO
from core.gc.triggers import host_connected
from core.kernel.flow import ROLLBACK_FAILED
from core.kernel.flow_journal import JournalledRun
from core.kernel.flow_recovery import finish_rollback, hosts_of

if TYPE_CHECKING:
    from core.gc.plugin import GarbageCollectorPlugin
    from core.kernel.node import ManagementNode

log = logging.getLogger(__name__)

RUNNER = "core.gc.flow_rollback.FinishRollbackJob"


class FinishRollbackJob(GarbageCollectorJob):
    """Context ``{runId}``: finish the handed-over rollback of that flow-journal run."""

    async def run(self, node: ManagementNode, context: dict[str, Any]) -> None:
        await finish_rollback(node, context["runId"])


def job_name(row: JournalledRun) -> str:
    what = row.resource_name or row.resource_uuid or row.id
    return f"finish the rollback of {row.operation_name or row.name} ({what})"[:255]


async def adopt_failed_rollbacks(
    plugin: GarbageCollectorPlugin, errors: dict[str, str] | None = None
) -> list[str]:
    """Submit a job for every ``RollbackFailed`` run that has no job yet; the new jobs'
    uuids.  ``errors``: run id -> why its rollback failed (kept as the job's error)."""
    node = plugin.node
    journal = node.flow_journal
    assert journal is not None
    rows = [row for row in await journal.runs() if row.status == ROLLBACK_FAILED]
    if not rows:
        return []
    hosts = {row.id: _hosts(node, row) for row in rows}
    reasons = errors or {}

    def submit(session: Session) -> list[str]:
        have = {
            (context or {}).get("runId")
            for context in session.scalars(
                select(GarbageCollectorVO.context).where(
                    GarbageCollectorVO.runner == RUNNER, GarbageCollectorVO.status != DONE
                )
            )
        }
        return [
            plugin.submit_in(
                session,
                name=job_name(row),
                runner=RUNNER,
                context={"runId": row.id},
                resource_uuid=row.resource_uuid,
                trigger_events=[host_connected(h) for h in hosts[row.id]],
                error=reasons.get(row.id) or "a rollback step failed",
            )
            for row in rows
            if row.id not in have
        ]

    made: list[str] = await node.db.run(submit)
    for uuid in made:
        log.warning("a failed rollback is now GC job %s", uuid)
    return made


def _hosts(node: ManagementNode, row: JournalledRun) -> list[str]:
    try:
        return hosts_of(node, row)
    except Exception:
        log.exception("cannot read the hosts of flow run %s; its job waits for its backoff", row.id)
        return []

"""APIs of GC jobs: query, run now, delete."""

from __future__ import annotations

from core.gc.models import GarbageCollectorVO
from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage

_JOB = "GarbageCollectorVO"


class QueryGarbageCollector(QueryMessage):
    """Query GC jobs: clean-ups retried until they succeed (e.g. status=Idle, with lastError
    and attempts)."""

    model = GarbageCollectorVO


class TriggerGarbageCollector(ApiMessage):
    """Run a GC job now; answers its inventory once Done, or fails with the run's error
    (the job stays Idle and is retried later)."""

    uuid: str = param(required=True, resource_type=_JOB)

    def sync_signature(self) -> str:
        return f"GarbageCollector-{self.uuid}"


class DeleteGarbageCollector(ApiMessage):
    """Delete a GC job: what it would clean up is left as it is."""

    uuid: str = param(required=True, resource_type=_JOB)

    def sync_signature(self) -> str:
        return f"GarbageCollector-{self.uuid}"

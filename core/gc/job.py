"""What a garbage-collector (GC) job is, and how the rest of the core hands one over.

A clean-up that cannot be done now (a rollback whose agent is unreachable, a host that is
down) becomes a persisted GC job, as ZStack's ``GarbageCollectorVO``: its ``runner`` (the
dotted path of a :class:`GarbageCollectorJob` subclass) and a JSON ``context`` are stored,
and the node runs it until it succeeds: after a delay that doubles with each failed try
(``gc.retry.interval``, capped by ``gc.retry.maxInterval``), at once when one of its trigger
events is published (e.g. its host reconnected), at node start (a job persisted before a
crash runs after the restart) and on ``TriggerGarbageCollector``.  A job that succeeded is
``Done`` and kept ``gc.done.retention`` seconds.

How a service submits one (``node.plugin(GarbageCollectorPlugin)``, core.gc.plugin)::

    gc = node.plugin(GarbageCollectorPlugin)
    # inside a DB transaction (e.g. in a function given to node.db.run):
    job_uuid = gc.submit_in(
        session,
        name=f"destroy domain of VM {vm_name}",
        runner="core.vm.gc.DestroyDomainJob",        # a GarbageCollectorJob subclass
        context={"hostUuid": host_uuid, "vmUuid": vm_uuid},
        resource_uuid=vm_uuid,
        trigger_events=[host_connected(host_uuid)],  # core.gc.triggers
        error=error,                                 # why it could not be done now
    )
    # or in its own transaction, scheduled at once:
    job_uuid = await gc.submit(name=..., runner=..., context=..., ...)

A job submitted in a transaction is scheduled once the transaction commits (or, if the
plugin has not started yet, at its start).  A bad runner path, a runner that is not a
GarbageCollectorJob, a context that is not JSON or a bad trigger is refused at once
(``SYS.1007``) and nothing is stored.

Each run is a background flow chain named ``gc:<job name>`` (in the operations log), and
publishes :data:`core.gc.runner.UPDATE_EVENT` with the job's inventory.
"""

from __future__ import annotations

import inspect
import json
import pkgutil
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from core.kernel.errors import argerr

if TYPE_CHECKING:
    from core.kernel.node import ManagementNode


class GarbageCollectorJob(ABC):
    """Clean-up that could not be done when it was due; instances are made with no args."""

    @abstractmethod
    async def run(self, node: ManagementNode, context: dict[str, Any]) -> None:
        """Do the clean-up; idempotent; raise to be retried later (the error is kept)."""


def resolve_runner(runner: str) -> type[GarbageCollectorJob]:
    """The runner class at dotted path ``runner``; argerr saying what is wrong otherwise."""
    what = f"GC job runner {runner!r}"
    if not isinstance(runner, str) or "." not in runner.strip(".:"):
        raise argerr(f"{what} is not a dotted class path like 'core.vm.gc.DestroyDomainJob'")
    try:
        cls = pkgutil.resolve_name(runner)
    except Exception as exc:
        raise argerr(f"{what} cannot be imported: {type(exc).__name__}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, GarbageCollectorJob)):
        raise argerr(f"{what} is not a subclass of core.gc.job.GarbageCollectorJob ({cls!r})")
    if inspect.isabstract(cls):
        raise argerr(f"{what} is abstract: it does not implement run()")
    return cls


def new_runner(runner: str) -> GarbageCollectorJob:
    """An instance of the runner at ``runner`` (made with no arguments)."""
    cls = resolve_runner(runner)
    try:
        return cls()
    except Exception as exc:
        raise argerr(
            f"GC job runner {runner!r} cannot be made with no arguments: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def check_context(context: Any) -> dict[str, Any]:
    """``context`` if it is a JSON object (what the job table keeps); argerr otherwise."""
    if not isinstance(context, dict):
        raise argerr(f"GC job context must be a dict, not {type(context).__name__}")
    try:
        return json.loads(json.dumps(context, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise argerr(f"GC job context is not JSON: {exc}") from None

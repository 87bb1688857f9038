"""Recovery at start: every chain run a crash interrupted is taken up before API calls
are served.

The flow journal (:mod:`core.kernel.flow_journal`) holds exactly the runs that were
under way when the node died.  Each is rebuilt from its row (the flow classes it ran,
its data, each step's state) and, by default, rolled back from its last recorded step:
the chains nested in it first, then the chain itself, every rollback checking the real
state.  A run whose chain declares itself resumable (an expunge: nothing to go back
to) is run on from the interrupted step instead.  Runs go newest first, so a run that a
flow of another run started (a router made for a VM) is undone before the VM's.

The run's operation shows in the operations log as ``Interrupted`` while this happens
and ends as ``RolledBack`` (or ``RollbackFailed``, or ``Succeeded`` when resumed), with
the recovery's chain traces under it, through two events the journal of operations
listens to: :data:`RECOVERY_START_PATH` and :data:`RECOVERY_DONE_PATH`.

A rollback step that fails (its agent is down) stops the rollback there: the run stays
in the journal as ``RollbackFailed`` and is handed to garbage collection, whose job
calls :func:`finish_rollback` until the rest of the rollback succeeds.  Start-up leaves
such runs to their jobs.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contracts.events import RecoveryDone, RecoveryStarted, RollbackFinished
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.flow import (
    ROLLBACK_FAILED,
    ROLLBACK_HANDED_OVER_PATH,
    DurableRun,
    Flow,
    FlowChain,
    FlowChainStatus,
    _instantiate_flow,
)
from core.kernel.flow_data import FlowData
from core.kernel.flow_journal import JournalledRun
from core.kernel.operation import new_operation_id, operation

if TYPE_CHECKING:
    from core.kernel.node import ManagementNode

__all__ = [
    "RECOVERY_DONE_PATH",
    "RECOVERY_START_PATH",
    "Recovered",
    "finish_rollback",
    "hosts_of",
    "recover_interrupted",
]

log = logging.getLogger(__name__)

RECOVERY_START_PATH = RecoveryStarted.PATH
"""Data: ``{operationId, runId, chainName, apiName, resourceUuid, resourceName, startedAt,
pid, resumable, error}``: an interrupted run is being taken up."""
RECOVERY_DONE_PATH = RecoveryDone.PATH
"""Data: ``{operationId, runId, status, error}`` (status: a FlowChainStatus)."""
ROLLBACK_FINISHED_PATH = RollbackFinished.PATH
"""Data: ``{operationId, runId, chainName, resourceUuid}``: the rest of a handed-over
rollback ran (:func:`finish_rollback`); what the run held is free."""


@dataclass(frozen=True, slots=True)
class Recovered:
    """What recovery did with one interrupted run."""

    run_id: str
    chain_name: str
    operation_id: str
    status: FlowChainStatus
    error: ErrorCode | None


def interrupted_error(row: JournalledRun) -> ErrorCode:
    step = _interrupted_step(row)
    return ErrorCode(
        SysErrors.INTERRUPTED,
        "interrupted: the management node stopped while this ran",
        f"node process {row.pid} died at {step}; the next start took the work up",
    )


def _interrupted_step(row: JournalledRun) -> str:
    if not row.chains:
        return f"chain {row.name}"
    inner = row.chains[-1]
    states = inner["steps"]
    for i in range(len(states) - 1, -1, -1):
        if states[i] not in ("PENDING", "SKIPPED"):
            name = inner["flows"][i].rsplit(".", 1)[-1]
            return f"{inner['name']}: {name} ({i + 1}/{len(states)})"
    return f"chain {inner['name']}"


async def recover_interrupted(node: ManagementNode) -> list[Recovered]:
    """Take up every run in the flow journal, newest first; return what was done."""
    journal = node.flow_journal
    assert journal is not None
    runs = [run for run in await journal.runs() if run.status != ROLLBACK_FAILED]
    if runs:
        log.warning("taking up %d flow chain run(s) the last node process left", len(runs))
    done: list[Recovered] = []
    for row in reversed(runs):
        with operation(None):
            done.append(await _recover(node, row))
    return done


async def _recover(node: ManagementNode, row: JournalledRun) -> Recovered:
    journal = node.flow_journal
    assert journal is not None
    op_id = row.operation_id or new_operation_id()
    error = interrupted_error(row)
    started = RecoveryStarted(
        operation_id=op_id,
        run_id=row.id,
        chain_name=row.name,
        api_name=row.operation_name,
        resource_uuid=row.resource_uuid,
        resource_name=row.resource_name,
        started_at=row.started_at,
        pid=row.pid,
        resumable=row.resumable,
        error=error.to_dict(),
    )
    node.events.publish(RECOVERY_START_PATH, started.to_json())
    status = FlowChainStatus.ROLLBACK_FAILED
    final_error: ErrorCode | None = error
    run: DurableRun | None = None
    try:
        status, final_error, run = await _take_up(node, row, op_id, error)
    except Exception as exc:
        log.exception("cannot take up interrupted chain %s (%s)", row.name, row.id)
        final_error = ErrorCode(
            SysErrors.ROLLBACK_FAILED,
            f"cannot take up interrupted chain {row.name}: resources may be left behind",
            f"{type(exc).__name__}: {exc}",
            cause=error,
        )
    try:
        if run is not None and run.rollback_failed:
            await _hand_over(node, run, final_error)
        else:
            await journal.forget_id(row.id)
    except Exception:
        log.exception("cannot remove run %s from the flow journal", row.id)
    done = RecoveryDone(
        operation_id=op_id,
        run_id=row.id,
        status=status.value,
        error=None if final_error is None else final_error.to_dict(),
    )
    node.events.publish(RECOVERY_DONE_PATH, done.to_json())
    log.warning("interrupted chain %s (%s) ended %s", row.name, row.id, status.value)
    return Recovered(row.id, row.name, op_id, status, final_error)


async def _take_up(
    node: ManagementNode, row: JournalledRun, op_id: str, error: ErrorCode
) -> tuple[FlowChainStatus, ErrorCode | None, DurableRun | None]:
    run = _restore(node, row, row.operation_id or op_id)
    if run is None:
        return FlowChainStatus.ROLLED_BACK, error, None
    if row.resumable and row.status == "Running":
        # Nested chains run again inside the step that started them.
        del run.chains[1:]
        outcome = await run.chains[0].resume_interrupted(run, run.data)
        return outcome.status, outcome.error, run
    failed = await _roll_back(run, error)
    if failed:
        return (
            FlowChainStatus.ROLLBACK_FAILED,
            _still_failing(
                f"interrupted chain {row.name}: a rollback failed, so the rest of the "
                "rollback waits for a garbage-collection job, and what it holds stays in "
                "use until then",
                failed,
                error,
            ),
            run,
        )
    return FlowChainStatus.ROLLED_BACK, error, run


def _restore(node: ManagementNode, row: JournalledRun, op_id: str) -> DurableRun | None:
    """The run of ``row``, its chains rebuilt; None if it had none under way."""
    data = _data_class(row.data_type).restore(row.data, node)
    chains = [
        FlowChain.restored(entry, _flows(node, entry), events=node.events, operation_id=op_id)
        for entry in row.chains
    ]
    if not chains:
        return None
    journal = node.flow_journal
    assert journal is not None
    return DurableRun.restored(row, chains[0], chains, data, journal)


async def _roll_back(run: DurableRun, error: ErrorCode) -> list[ErrorCode]:
    """Roll back the run's chains, innermost first; stop at a failed step (the run is
    then ``rollback_failed``, its rest recorded in its chains); return the failures."""
    failed: list[ErrorCode] = []
    chains = run.chains
    for chain in reversed(list(chains)):
        outcome = await chain.roll_back_interrupted(run, run.data, error)
        failed.extend(err for _, err in outcome.rollback_errors)
        if run.rollback_failed:
            break
        if chain is not chains[0]:
            chains.remove(chain)
    return failed


def _still_failing(description: str, failed: list[ErrorCode], cause: ErrorCode | None) -> ErrorCode:
    return ErrorCode(
        SysErrors.ROLLBACK_FAILED,
        description,
        "; ".join(str(err) for err in failed),
        cause=cause if cause is not None else failed[0],
    )


async def _hand_over(node: ManagementNode, run: DurableRun, error: ErrorCode | None) -> None:
    run.status = ROLLBACK_FAILED
    await run.write()
    event = run.handover("" if error is None else str(error))
    node.events.publish(ROLLBACK_HANDED_OVER_PATH, event.to_json())


async def finish_rollback(node: ManagementNode, run_id: str) -> bool:
    """Run the rest of the rollback of run ``run_id``, handed over after a rollback step
    failed.  Returns False if the run is no longer in the journal (finished already);
    raises :class:`OperationError` if a rollback step fails again (the run stays, with
    what is left)."""
    journal = node.flow_journal
    assert journal is not None
    row = await journal.run(run_id)
    if row is None:
        return False
    if row.status != ROLLBACK_FAILED:
        raise OperationError(
            ErrorCode(
                SysErrors.OPERATION_ERROR,
                f"the rollback of chain {row.name} ({run_id}) is under way ({row.status})",
            )
        )
    run = _restore(node, row, row.operation_id or new_operation_id())
    if run is not None:
        failed = await _roll_back(
            run,
            ErrorCode(SysErrors.ROLLBACK_FAILED, f"finishing the rollback of chain {row.name}"),
        )
        if failed:
            run.status = ROLLBACK_FAILED
            await run.write()
            raise OperationError(
                _still_failing(
                    f"the rollback of chain {row.name} ({run_id}) still fails; what it "
                    "holds stays in use until a later run of its job succeeds",
                    failed,
                    None,
                )
            )
    await journal.forget_id(run_id)
    if row.resource_uuid:
        node.interrupted_resources.discard(row.resource_uuid)
    log.warning("the handed-over rollback of chain %s (%s) is done", row.name, run_id)
    finished = RollbackFinished(
        operation_id=row.operation_id,
        run_id=run_id,
        chain_name=row.name,
        resource_uuid=row.resource_uuid,
    )
    node.events.publish(ROLLBACK_FINISHED_PATH, finished.to_json())
    return True


def hosts_of(node: ManagementNode, row: JournalledRun) -> list[str]:
    """The hosts a run's rollbacks call (:meth:`FlowData.hosts` of its data)."""
    return _data_class(row.data_type).restore(row.data, node).hosts()


def _data_class(path: str) -> type[FlowData]:
    module, _, name = path.rpartition(".")
    cls: Any = importlib.import_module(module)
    for part in name.split("."):
        cls = getattr(cls, part)
    if not isinstance(cls, type) or not issubclass(cls, FlowData):
        raise TypeError(f"{path} is not a FlowData class")
    return cls


def _flows(node: ManagementNode, entry: dict[str, Any]) -> list[Flow]:
    """The flows an entry ran: the declared chain's own instances when its list is the
    same, else new instances of the recorded classes."""
    paths: list[str] = entry["flows"]
    try:
        declared = node.chains.flows(entry["name"])
    except KeyError:
        declared = []
    if declared == paths:
        return list(node.chains.builder(entry["name"]).flows)
    return [_instantiate_flow(entry["name"], path) for path in paths]

"""The flow engine: ZStack's FlowChain, asyncio-native.

A :class:`Flow` is one step of an operation with ``run`` and ``rollback``.  A
:class:`FlowChain` runs flows in order over one shared ``data`` dict.  When a
flow fails, the chain rolls back the failing flow first (it may have done part
of its work), then every completed flow in reverse order, then calls the error
handler; on success it calls the done handler; the finally handler runs either
way.  Skipped flows are neither run nor rolled back.

Differences from OpenStack TaskFlow, on purpose (ZStack's choices):

* a rollback that raises does not stop the unwinding: the step is recorded as
  ``REVERT_FAILURE`` and the chain goes on rolling back the earlier steps, so
  one broken rollback leaks one resource instead of all of them; the outcome
  (``ROLLBACK_FAILED``) says so.  A *durable* chain (one over FlowData, written to
  the flow journal) does better: it stops at the failed step, since what the earlier
  steps hold (an IP, capacity) may be in use by what it could not undo (a running
  domain), and hands the rest of the rollback, kept in the journal, to a GC job
  (:data:`ROLLBACK_HANDED_OVER_PATH`) that finishes it when it can;
* flows share one dict instead of declaring requires/provides.

From TaskFlow we take the step state names and per-step records.

Chains are declared in configuration as ordered lists of dotted class paths and
built by :class:`FlowChainBuilder`, so a plugin can insert a flow into a chain
without touching the code that runs it.  Every chain and step emits
:class:`FlowTraceEvent` s on the chain's :class:`EventBus` at
:data:`FLOW_TRACE_PATH` when someone listens.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, NoReturn, Protocol, Self, TypeVar

from contracts.events import RollbackHandedOver
from core.kernel.errors import ErrorCode, OperationError, SysErrors, error_from_exception
from core.kernel.events import EventBus
from core.kernel.flow_data import FlowData
from core.kernel.operation import (
    Subject,
    current_operation,
    current_operation_name,
    current_subject,
)

__all__ = [
    "FLOW_TRACE_PATH",
    "ROLLBACK_FAILED",
    "ROLLBACK_HANDED_OVER_PATH",
    "DurableRun",
    "Flow",
    "FlowChain",
    "FlowChainBuilder",
    "FlowChainStartEvent",
    "FlowChainStatus",
    "FlowConfigError",
    "FlowOutcome",
    "FlowTraceEvent",
    "NoRollbackFlow",
    "StepRecord",
    "StepState",
    "checkpoint",
    "checkpointer",
    "current_chain",
    "flow_path",
]

log = logging.getLogger(__name__)

FLOW_TRACE_PATH = "/flowchain/trace"
ROLLBACK_HANDED_OVER_PATH = RollbackHandedOver.PATH
"""Data: ``{runId, chainName, operationId, resourceUuid, resourceName, hosts, error}``: a
durable run's rollback failed at a step; the run stays in the flow journal (status
``RollbackFailed``) with the rest of its rollback, for a GC job to finish
(core.gc.flow_rollback)."""
ROLLBACK_FAILED = "RollbackFailed"
"""The journal status of a run whose rollback was handed over."""
"""The one event path every :class:`FlowTraceEvent` is published on."""

_perf = time.perf_counter
_now = time.time
_T = TypeVar("_T")

DoneHandler = Callable[[dict[str, Any]], Awaitable[None] | None]
ErrorHandler = Callable[[ErrorCode, dict[str, Any]], Awaitable[None] | None]
FinallyHandler = Callable[[], Awaitable[None] | None]


class StepState(StrEnum):
    """The state of one step (TaskFlow's atom state names)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    SKIPPED = "SKIPPED"
    REVERTING = "REVERTING"
    REVERTED = "REVERTED"
    REVERT_FAILURE = "REVERT_FAILURE"


class FlowChainStatus(StrEnum):
    """How a chain run ended."""

    SUCCEEDED = "SUCCEEDED"
    ROLLED_BACK = "ROLLED_BACK"
    """A flow failed and every rollback succeeded: the system is as it was."""
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    """A flow failed and at least one rollback failed: resources may be left behind."""
    FAILED = "FAILED"
    """A flow failed and nothing was rolled back, because of :meth:`FlowChain.no_rollback`."""


_RUNNING = StepState.RUNNING
_SUCCESS = StepState.SUCCESS
_FAILURE = StepState.FAILURE
_REVERTED = StepState.REVERTED


class FlowConfigError(ValueError):
    """A chain declaration names a flow that cannot be used."""


@dataclass(slots=True)
class StepRecord:
    """What happened to one step of one chain run."""

    name: str
    index: int
    """1-based position in the chain."""
    state: StepState = StepState.PENDING
    started_at: float | None = None
    """Wall-clock time (``time.time()``) the step started running."""
    duration: float | None = None
    """Seconds ``run()`` took."""
    error: ErrorCode | None = None
    """The run error (FAILURE) or, for REVERT_FAILURE, the rollback error."""
    revert_duration: float | None = None
    """Seconds ``rollback()`` took, if it was rolled back."""


@dataclass(slots=True)
class FlowOutcome:
    """The result of one :meth:`FlowChain.start`."""

    chain_name: str
    chain_id: str
    status: FlowChainStatus
    error: ErrorCode | None = None
    """The original error, located at the failing step."""
    rollback_errors: list[tuple[str, ErrorCode]] = field(default_factory=list)
    """(step name, error) for every rollback that failed, in the order they ran."""
    steps: list[StepRecord] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    """Seconds from start to the end of the unwinding (handlers excluded)."""
    handed_over: bool = False
    """A durable run whose rollback stopped at a failed step: the rest waits in the flow
    journal for garbage collection."""

    @property
    def succeeded(self) -> bool:
        return self.status is FlowChainStatus.SUCCEEDED

    def raise_for_error(self, description: str | None = None) -> None:
        """Raise the failure as an :class:`OperationError`; do nothing on success.

        When a rollback failed too, the raised error is ``SYS.1010`` (the user must
        know resources may be left behind) with the original error as its cause.
        With ``description`` (e.g. ``"cannot start VM web1"``), that error is in turn
        the cause of an operation error saying what failed.
        """
        if self.error is None:
            return
        error = self.error
        if self.rollback_errors:
            error = _rollback_failed_error(
                self.chain_name, self.error, self.rollback_errors, self.handed_over
            )
        if description is not None:
            error = ErrorCode(SysErrors.OPERATION_ERROR, description, cause=error)
        raise OperationError(error)


def _rollback_failed_error(
    chain_name: str,
    original: ErrorCode | None,
    failures: list[tuple[str, ErrorCode]],
    handed_over: bool = False,
) -> ErrorCode:
    count = len(failures)
    names = ", ".join(name for name, _ in failures)
    details = "; ".join(f"{name}: {err}" for name, err in failures)
    if handed_over:
        description = (
            f"the operation failed and its rollback could not undo {names}; the rest of "
            "the rollback is a garbage-collection job (QueryGarbageCollector), retried "
            "until it succeeds, and what it holds stays in use until then"
        )
        return ErrorCode(
            SysErrors.ROLLBACK_FAILED, description, details, original or failures[0][1], chain_name
        )
    if original is not None:
        description = (
            f"the operation failed and {count} rollback(s) failed, so resources may be "
            f"left behind: {names}"
        )
        cause = original
    else:
        description = (
            f"rolling back flow chain {chain_name}: {count} rollback(s) failed, so "
            f"resources may be left behind: {names}"
        )
        cause = failures[0][1]
    return ErrorCode(SysErrors.ROLLBACK_FAILED, description, details, cause, chain_name)


@dataclass(frozen=True, slots=True)
class FlowTraceEvent:
    """One trace point of a chain run, published on :data:`FLOW_TRACE_PATH`.

    Kinds: ``chain-start``, ``step-start``, ``step-done``, ``step-skipped``,
    ``step-failed``, ``rollback-start`` (the chain starts unwinding; carries the
    error that caused it), ``step-reverted``, ``step-revert-failed``,
    ``chain-done`` (with the chain status and total duration).  Every event of a
    chain run carries the run's ``operation_id``; ``chain-start`` is a
    :class:`FlowChainStartEvent`, which also lists the step names.
    """

    kind: str
    chain_name: str
    chain_id: str
    parent_chain_id: str | None
    step: str | None
    index: int | None
    """1-based step index, or None for chain events."""
    total: int
    at: float
    """Wall-clock time (``time.time()``)."""
    duration: float | None
    """Seconds, for step-done/failed/reverted/revert-failed and chain-done."""
    state: str | None
    """A :class:`StepState` or :class:`FlowChainStatus` (both are ``str``)."""
    error: ErrorCode | None
    operation_id: str | None = None
    """The operation (API call) the chain works for, read once at chain start;
    None for background work.  See :mod:`core.kernel.operation`."""


@dataclass(frozen=True, slots=True)
class FlowChainStartEvent(FlowTraceEvent):
    """The ``chain-start`` trace event: it also names every step, so a UI can list them all
    before they run (a field of its own, so the per-step events stay as cheap to build)."""

    steps: tuple[str, ...] = ()


def _trace_event_factory() -> Callable[..., FlowTraceEvent]:
    """A constructor for FlowTraceEvent about three times as fast as the dataclass's own.

    A frozen dataclass sets each field through ``object.__setattr__`` by name.  Here
    the fields are set as plain attributes of a mutable twin class with the very same
    slots, and the object then becomes a FlowTraceEvent (``__class__`` assignment
    between classes of one slot layout), frozen from then on.  It is only used once
    someone subscribes to the trace, per step, so it matters.
    """
    names = tuple(f.name for f in fields(FlowTraceEvent))
    if names != (
        "kind", "chain_name", "chain_id", "parent_chain_id", "step", "index", "total", "at",
        "duration", "state", "error", "operation_id",
    ):  # fmt: skip
        raise AssertionError(f"FlowTraceEvent fields changed, update the factory: {names}")

    class _Unfrozen:
        __slots__ = names

    new = object.__new__

    def new_trace_event(
        kind: str,
        chain_name: str,
        chain_id: str,
        parent_chain_id: str | None,
        step: str | None,
        index: int | None,
        total: int,
        at: float,
        duration: float | None,
        state: str | None,
        error: ErrorCode | None,
        operation_id: str | None = None,
    ) -> FlowTraceEvent:
        ev = new(_Unfrozen)
        ev.kind = kind
        ev.chain_name = chain_name
        ev.chain_id = chain_id
        ev.parent_chain_id = parent_chain_id
        ev.step = step
        ev.index = index
        ev.total = total
        ev.at = at
        ev.duration = duration
        ev.state = state
        ev.error = error
        ev.operation_id = operation_id
        ev.__class__ = FlowTraceEvent  # looked up per call, so tests can patch the class
        return ev  # type: ignore[return-value]

    return new_trace_event


_new_trace_event = _trace_event_factory()


class Flow(ABC):
    """One step of an operation.

    ``run`` returns to go on and raises to fail: an :class:`OperationError`
    carries its ErrorCode, any other exception becomes an internal error.
    ``rollback`` undoes ``run``; it is also called when ``run`` itself failed,
    so it must cope with a half-done run.  Keep per-run state in ``data``: a
    flow built by :class:`FlowChainBuilder` is shared by every run of its chain.
    """

    name: ClassVar[str | None] = None
    """Display name in logs, traces and error locations; default: the class name."""

    _frozen_by: str | None = None  # chain name, once FlowChainBuilder shares the instance

    checkpointed: ClassVar[bool] = False
    """True if ``run`` changes nothing its rollback must undo before a transaction that
    calls :func:`checkpointer` commits: a durable chain then does not write the run
    down before the step (that transaction records the step as running)."""

    @abstractmethod
    async def run(self, data: dict[str, Any]) -> None: ...

    @abstractmethod
    async def rollback(self, data: dict[str, Any]) -> None: ...

    def skip(self, data: dict[str, Any]) -> bool:
        """True to neither run nor roll back this flow in this run."""
        return False

    def __setattr__(self, attr: str, value: Any) -> None:
        if self._frozen_by is not None:
            _raise_frozen(self, attr)
        object.__setattr__(self, attr, value)

    def __delattr__(self, attr: str) -> None:
        if self._frozen_by is not None:
            _raise_frozen(self, attr)
        object.__delattr__(self, attr)


def _raise_frozen(flow: Flow, attr: str) -> NoReturn:
    raise TypeError(
        f"cannot set {attr!r} on flow {_flow_name(flow)}: it is shared by every run of "
        f"chain {flow._frozen_by!r} and must keep per-run state in `data`"
    )


def _flow_name(flow: Flow) -> str:
    return flow.name or type(flow).__name__


class NoRollbackFlow(Flow):
    """A flow with nothing to undo."""

    async def rollback(self, data: dict[str, Any]) -> None:
        return None


_current_chain: ContextVar[FlowChain | None] = ContextVar("zstack_lite_flow_chain", default=None)


def current_chain() -> FlowChain | None:
    """The chain whose flows are running in this context (innermost), if any."""
    return _current_chain.get()


def _being_cancelled() -> bool:
    """Whether the current task has a pending cancel() (vs a stray CancelledError)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _shielded(aw: Awaitable[_T]) -> _T:
    """Await ``aw`` to its end even if the current task is cancelled (again)."""
    task = asyncio.ensure_future(aw)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                continue  # the caller was cancelled; the work goes on
            if task.cancelled():
                raise
            return task.result()


def _cancel_error(what: str) -> ErrorCode:
    return ErrorCode(SysErrors.TIMEOUT, "cancelled", what)


class FlowJournal(Protocol):
    """Where durable runs are written down (:class:`core.kernel.flow_journal.SqlFlowJournal`)."""

    async def write(self, run: DurableRun) -> None: ...

    def write_in(self, conn: Any, run: DurableRun) -> None: ...

    async def forget(self, run: DurableRun) -> None: ...


def flow_path(flow: Flow) -> str:
    """The dotted class path a flow is rebuilt from at recovery."""
    cls = type(flow)
    return f"{cls.__module__}.{cls.__qualname__}"


class DurableRun:
    """A chain run over :class:`FlowData` and the chains nested in it over the same data:
    what the flow journal writes before every step (see :mod:`core.kernel.flow_journal`)."""

    __slots__ = (
        "chains", "data", "id", "journal", "name", "operation_id", "operation_name",
        "parent_chain_id", "persisted", "resumable", "rollback_failed", "started_at", "status",
        "subject", "written",
    )  # fmt: skip

    def __init__(
        self, root: FlowChain, data: FlowData, journal: FlowJournal, parent: FlowChain | None
    ) -> None:
        self.id = root.id
        self.name = root.name
        self.data = data
        self.journal = journal
        self.chains: list[FlowChain] = [root]
        self.resumable = root.resumable
        self.parent_chain_id = None if parent is None else parent.id
        self.operation_id = root.operation_id
        self.operation_name = current_operation_name.get()
        self.subject = current_subject()
        self.status = "Running"
        self.started_at = _now()
        self.persisted = False
        self.rollback_failed = False
        """A rollback step failed: the run is handed over, not forgotten, at its end."""
        self.written = 0
        """How many times the run was written (a nested chain knows if its entry was)."""

    @classmethod
    def restored(
        cls,
        row: Any,
        root: FlowChain,
        chains: list[FlowChain],
        data: FlowData,
        journal: FlowJournal,
    ) -> DurableRun:
        """The run of journal row ``row`` (a :class:`~core.kernel.flow_journal.JournalledRun`)."""
        run = cls(root, data, journal, None)
        run.chains = chains
        run.resumable = row.resumable
        run.parent_chain_id = row.parent_chain_id
        run.operation_id = row.operation_id
        run.operation_name = row.operation_name
        run.status = row.status
        run.subject = Subject(row.resource_uuid, row.resource_name)
        run.started_at = row.started_at
        run.persisted = True
        return run

    @property
    def data_type(self) -> str:
        cls = type(self.data)
        return f"{cls.__module__}.{cls.__qualname__}"

    def row(self) -> dict[str, Any]:
        """The changing columns of the run's journal row."""
        subject = self.subject
        return {
            "status": self.status,
            "resource_uuid": None if subject is None else subject.uuid,
            "resource_name": None if subject is None else subject.name,
            "data": self.data.model_dump_json(),
            "chains": [chain._journal_entry() for chain in self.chains],
        }

    async def write(self) -> None:
        self.written += 1
        await self.journal.write(self)

    def handover(self, error: str) -> RollbackHandedOver:
        """The event of :data:`ROLLBACK_HANDED_OVER_PATH` for this run; ``error`` says why
        the rollback failed."""
        subject = self.subject
        return RollbackHandedOver(
            run_id=self.id,
            chain_name=self.name,
            operation_id=self.operation_id,
            resource_uuid=None if subject is None else subject.uuid,
            resource_name=None if subject is None else subject.name,
            hosts=self.data.hosts(),
            error=error,
        )


def checkpointer() -> Callable[[Any], None]:
    """A function that writes the running chain's data down inside a transaction.

    Get it in a flow (on the event loop), call it with the transaction's connection in
    the same ``db.run``/``run_core`` function as a change the flow can only undo by a
    value it keeps in its data (a capacity reservation, a row with a generated uuid),
    after putting that value into the data: the change and the record of it then
    commit together.  Outside a durable chain it does nothing.
    """
    chain = _current_chain.get()
    run = None if chain is None else chain._run
    if run is None:
        return _no_checkpoint
    journal = run.journal

    def write_in(conn: Any) -> None:
        run.written += 1
        journal.write_in(conn, run)

    return write_in


def _no_checkpoint(conn: Any) -> None:
    return None


async def checkpoint() -> None:
    """Write the running chain's data down now (before a step's outside effect that
    its rollback finds through a value the step chose).  A no-op outside a durable chain."""
    chain = _current_chain.get()
    run = None if chain is None else chain._run
    if run is not None:
        await run.write()


class FlowChain(Flow):
    """Flows run in order over one shared dict, rolled back in reverse on failure.

    A chain is a per-run object: build it, :meth:`start` it once.  It is itself a
    :class:`Flow`, so it can be a step of another chain (or be awaited through
    :meth:`run` inside a flow's ``run``, ZStack's nesting style); it then runs over
    the outer chain's ``data``, inherits its event bus and records it as parent.
    """

    # Per-run object: never frozen, so skip Flow's check on the hot path.
    __setattr__ = object.__setattr__  # type: ignore[assignment]
    __delattr__ = object.__delattr__  # type: ignore[assignment]

    def __init__(
        self,
        name: str,
        flows: Iterable[Flow] = (),
        *,
        events: EventBus | None = None,
        journal: FlowJournal | None = None,
        data_type: type[FlowData] | None = None,
        resumable: bool = False,
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.id = f"FCID_{random.getrandbits(32):08x}"
        self.parent_id: str | None = None
        self.operation_id: str | None = None
        """The operation this run works for (set at start from the context)."""
        self.outcome: FlowOutcome | None = None
        self._events = events
        if type(flows) is _BuiltFlows:
            self._flows: list[Flow] = list(flows)  # checked once by the builder
        else:
            self._flows = [_check_flow(flow) for flow in flows]
        self._done: DoneHandler | None = None
        self._error: ErrorHandler | None = None
        self._finally: FinallyHandler | None = None
        self._no_rollback = False
        self._started = False
        self._trace = False
        self._cancel_exc: asyncio.CancelledError | None = None
        self._records: list[StepRecord] = []
        self._journal = journal
        self._data_type = data_type
        self.resumable = resumable
        """After a crash, run on from the interrupted step instead of rolling back."""
        self._run: DurableRun | None = None
        self._run_written_at = 0
        self._handed_over = False
        self._flow_paths: list[str] | None = None

    def _journal_entry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "parentId": self.parent_id,
            "flows": self._flow_paths or self._paths(),
            "steps": [rec.state for rec in self._records],  # StrEnum: JSON strings
        }

    def _paths(self) -> list[str]:
        self._flow_paths = [flow_path(flow) for flow in self._flows]  # fixed once started
        return self._flow_paths

    @property
    def durable(self) -> bool:
        """Whether this run is written to the flow journal as it goes."""
        return self._run is not None

    def __repr__(self) -> str:
        return f"<FlowChain {self.name} {self.id} ({len(self._flows)} flows)>"

    # -- building -------------------------------------------------------

    @property
    def flows(self) -> tuple[Flow, ...]:
        return tuple(self._flows)

    @property
    def events(self) -> EventBus | None:
        return self._events

    def then(self, flow: Flow) -> Self:
        self._check_not_started()
        self._flows.append(_check_flow(flow))
        return self

    def insert(self, index: int, flow: Flow) -> Self:
        self._check_not_started()
        self._flows.insert(index, _check_flow(flow))
        return self

    def done(self, cb: DoneHandler) -> Self:
        """Call ``cb(data)`` (sync or async) once, when every flow succeeded."""
        self._check_not_started()
        if self._done is not None:
            raise RuntimeError(f"flow chain {self.name}: done handler is already set")
        self._done = cb
        return self

    def error(self, cb: ErrorHandler) -> Self:
        """Call ``cb(error, data)`` (sync or async) once, after the rollbacks of a failure."""
        self._check_not_started()
        if self._error is not None:
            raise RuntimeError(f"flow chain {self.name}: error handler is already set")
        self._error = cb
        return self

    def finally_(self, cb: FinallyHandler) -> Self:
        """Call ``cb()`` (sync or async) once, after the done or error handler."""
        self._check_not_started()
        if self._finally is not None:
            raise RuntimeError(f"flow chain {self.name}: finally handler is already set")
        self._finally = cb
        return self

    def no_rollback(self) -> Self:
        """On failure, roll nothing back (the outcome is FAILED)."""
        self._check_not_started()
        self._no_rollback = True
        return self

    def _check_not_started(self) -> None:
        if self._started:
            raise RuntimeError(f"flow chain {self.name} ({self.id}) has already started")

    # -- running --------------------------------------------------------

    async def start(self, data: dict[str, Any] | None = None) -> FlowOutcome:
        """Run the chain once; a flow failure ends in the outcome, never raises.

        If the task is cancelled while a flow runs, the chain rolls back (shielded
        from further cancels), calls its handlers, then re-raises CancelledError.
        """
        if self._started:
            raise RuntimeError(
                f"flow chain {self.name} ({self.id}) has already been started; "
                "a FlowChain runs once, build a new one"
            )
        self._started = True
        if data is None:
            data = {}
        self.operation_id = current_operation.get()
        parent = _current_chain.get()
        if parent is not None:
            self.parent_id = parent.id
            if self._events is None:
                self._events = parent._events
            if self._journal is None:
                self._journal = parent._journal
        if self._data_type is not None and not isinstance(data, self._data_type):
            raise TypeError(
                f"flow chain {self.name} runs over {self._data_type.__name__}, "
                f"not {type(data).__name__}"
            )
        if self._journal is not None and isinstance(data, FlowData):
            outer = None if parent is None else parent._run
            if outer is not None and outer.data is data:
                self._run = outer  # nested over the same data: recorded under its parent
                self._run_written_at = outer.written
                outer.chains.append(self)
            else:
                self._run = DurableRun(self, data, self._journal, parent)
        events = self._events
        trace = self._trace = events is not None and events.has_subscribers(FLOW_TRACE_PATH)

        records = self._records = [
            StepRecord(_flow_name(flow), i) for i, flow in enumerate(self._flows, 1)
        ]
        outcome = self.outcome = FlowOutcome(
            self.name, self.id, FlowChainStatus.SUCCEEDED, None, [], records, data
        )
        t0 = _perf()
        if trace:
            self._events.publish(  # type: ignore[union-attr]
                FLOW_TRACE_PATH,
                FlowChainStartEvent(
                    "chain-start", self.name, self.id, self.parent_id, None, None, len(records),
                    _now(), None, None, None, self.operation_id, tuple(r.name for r in records),
                ),
            )  # fmt: skip

        token = _current_chain.set(self)
        try:
            error = await self._run_flows(data, records)
            if error is not None:
                outcome.error = error
                if log.isEnabledFor(logging.INFO):
                    log.info("[FlowChain(%s): %s] failed: %s", self.id, self.name, error)
                if self._no_rollback:
                    outcome.status = FlowChainStatus.FAILED
                else:
                    failures = await self._unwind(data)
                    if failures:
                        outcome.rollback_errors.extend(failures)
                        outcome.status = FlowChainStatus.ROLLBACK_FAILED
                    else:
                        outcome.status = FlowChainStatus.ROLLED_BACK
        finally:
            _current_chain.reset(token)
            if self._run is not None:
                await self._leave_run()

        outcome.duration = _perf() - t0
        if trace:
            self._emit("chain-done", None, outcome.duration, outcome.status, outcome.error)

        if outcome.error is None:
            if self._done is not None:
                await self._call_handler("done", self._done, data)
        elif self._error is not None:
            await self._call_handler("error", self._error, outcome.error, data)
        if self._finally is not None:
            await self._call_handler("finally", self._finally)

        if self._cancel_exc is not None:
            raise self._cancel_exc
        return outcome

    async def _run_flows(
        self, data: dict[str, Any], records: list[StepRecord], first: int = 0
    ) -> ErrorCode | None:
        """Run the flows in order; return the located error of the one that failed."""
        # Hot path: locals only, and no trace event is built unless someone listens.
        debug = log.isEnabledFor(logging.DEBUG)
        publish = self._events.publish if self._trace and self._events is not None else None
        name, cid, pid, total = self.name, self.id, self.parent_id, len(records)
        oid = self.operation_id
        run = self._run
        rec: StepRecord | None = None
        flows = self._flows
        if first:
            flows, records = flows[first:], records[first:]
        for flow, rec in zip(flows, records, strict=True):
            t0 = _perf()
            try:
                if flow.skip(data):
                    rec.state = StepState.SKIPPED
                    if debug:
                        log.debug("[FlowChain(%s): %s] skip flow[%s]", cid, name, rec.name)
                    if publish is not None:
                        self._emit("step-skipped", rec, None, rec.state, None)
                    continue
                rec.state = _RUNNING
                rec.started_at = at = _now()
                if debug:
                    log.debug("[FlowChain(%s): %s] start executing flow[%s]", cid, name, rec.name)
                if publish is not None:
                    publish(
                        FLOW_TRACE_PATH,
                        _new_trace_event(
                            "step-start", name, cid, pid, rec.name, rec.index, total, at, None,
                            _RUNNING, None, oid,
                        ),
                    )  # fmt: skip
                if run is not None and (
                    run.resumable or not (flow.checkpointed or isinstance(flow, NoRollbackFlow))
                ):
                    await run.write()  # a step with nothing to undo needs no record before it
                await flow.run(data)
            except asyncio.CancelledError as exc:
                if _being_cancelled():
                    self._cancel_exc = exc
                    error = _cancel_error(f"the task running flow chain {name} was cancelled")
                else:
                    error = _cancel_error(f"flow {rec.name} was cancelled")
                break
            except Exception as exc:
                error = error_from_exception(exc)
                if debug:
                    log.debug(
                        "[FlowChain(%s): %s] flow[%s] failed", cid, name, rec.name, exc_info=True
                    )
                break
            rec.duration = duration = _perf() - t0
            rec.state = _SUCCESS
            if publish is not None:
                publish(
                    FLOW_TRACE_PATH,
                    _new_trace_event(
                        "step-done", name, cid, pid, rec.name, rec.index, total, _now(), duration,
                        _SUCCESS, None, oid,
                    ),
                )  # fmt: skip
        else:
            return None

        assert rec is not None
        rec.duration = _perf() - t0
        rec.state = _FAILURE
        error = rec.error = error.with_location(f"{name}: {rec.name} ({rec.index}/{total})")
        if publish is not None:
            self._emit("step-failed", rec, rec.duration, _FAILURE, error)
        return error

    async def _unwind(self, data: dict[str, Any]) -> list[tuple[str, ErrorCode]]:
        """Roll back every run (SUCCESS or FAILURE) step, last first; go on past failures."""
        failures: list[tuple[str, ErrorCode]] = []
        flows = self._flows
        publish = self._events.publish if self._trace and self._events is not None else None
        name, cid, pid, total = self.name, self.id, self.parent_id, len(flows)
        oid = self.operation_id
        if publish is not None:
            error = None if self.outcome is None else self.outcome.error
            self._emit("rollback-start", None, None, None, error)
        for rec in reversed(self._records):
            state = rec.state
            if state is not _SUCCESS and state is not _FAILURE:
                continue
            flow = flows[rec.index - 1]
            rec.state = StepState.REVERTING
            t0 = _perf()
            try:
                if self._run is not None:
                    await self._write_run("RollingBack")
                if self._cancel_exc is None:
                    await flow.rollback(data)
                else:
                    await _shielded(flow.rollback(data))
            except asyncio.CancelledError as exc:
                if self._cancel_exc is None and _being_cancelled():
                    self._cancel_exc = exc  # cancelled mid-rollback: the rest runs shielded
                err = _cancel_error(f"the rollback of flow {rec.name} was cancelled")
            except Exception as exc:
                err = error_from_exception(exc)
            else:
                rec.revert_duration = duration = _perf() - t0
                rec.state = _REVERTED
                if publish is not None:
                    publish(
                        FLOW_TRACE_PATH,
                        _new_trace_event(
                            "step-reverted", name, cid, pid, rec.name, rec.index, total, _now(),
                            duration, _REVERTED, None, oid,
                        ),
                    )  # fmt: skip
                continue
            rec.revert_duration = _perf() - t0
            rec.state = StepState.REVERT_FAILURE
            err = rec.error = err.with_location(f"{name}: {rec.name} ({rec.index}/{total})")
            failures.append((rec.name, err))
            if publish is not None:
                self._emit("step-revert-failed", rec, rec.revert_duration, rec.state, err)
            if self._run is not None:
                # Durable: stop here.  What earlier steps hold (an IP, capacity, the row)
                # may be in use by what this one could not undo (a domain still running),
                # so they are undone after it, by the GC job the run is handed to.
                self._run.rollback_failed = self._handed_over = True
                log.warning(
                    "[FlowChain(%s): %s] rollback of flow[%s] failed; the rest of the "
                    "rollback is handed to garbage collection: %s",
                    cid, name, rec.name, err,
                )  # fmt: skip
                break
            log.warning(
                "[FlowChain(%s): %s] rollback of flow[%s] failed, continuing with the next "
                "rollback: %s",
                cid,
                name,
                rec.name,
                err,
            )
        return failures

    async def _write_run(self, status: str) -> None:
        """Write the run down before a rollback step (shielded while cancelled: the
        rollback goes on, so must its record)."""
        run = self._run
        assert run is not None
        run.status = status
        if self._cancel_exc is None:
            await run.write()
        else:
            await _shielded(run.write())

    async def _leave_run(self) -> None:
        """The chain has ended: the outermost chain's run leaves the journal; a nested
        chain leaves its run's list of chains under way."""
        run = self._run
        assert run is not None
        if run.chains[0] is not self:
            if self in run.chains and not self._handed_over:
                run.chains.remove(self)
                if run.written > self._run_written_at:
                    # The row names this chain: write it down as ended, or a crash before
                    # the parent's next write would roll back its steps again.
                    try:
                        await _shielded(run.write())
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception(
                            "[FlowChain(%s): %s] cannot write the journal", self.id, self.name
                        )
            return
        if run.rollback_failed:
            await self._hand_over(run)
            return
        try:
            await _shielded(run.journal.forget(run))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "[FlowChain(%s): %s] cannot remove the run from the journal", self.id, self.name
            )

    async def _hand_over(self, run: DurableRun) -> None:
        """Keep the run in the journal as ``RollbackFailed`` and say so: garbage
        collection finishes its rollback (core.gc.flow_rollback)."""
        run.status = ROLLBACK_FAILED
        outcome = self.outcome
        if outcome is not None:
            outcome.handed_over = True
        try:
            await _shielded(run.write())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("[FlowChain(%s): %s] cannot write the journal", self.id, self.name)
        if self._events is not None:
            failures = [] if outcome is None else outcome.rollback_errors
            error = "; ".join(f"{name}: {err}" for name, err in failures)
            self._events.publish(ROLLBACK_HANDED_OVER_PATH, run.handover(error).to_json())

    async def _call_handler(self, kind: str, cb: Callable[..., Any], *args: Any) -> None:
        try:
            result = cb(*args)
            if inspect.isawaitable(result):
                if self._cancel_exc is None:
                    await result
                else:
                    await _shielded(result)
        except asyncio.CancelledError as exc:
            if self._cancel_exc is None and _being_cancelled():
                self._cancel_exc = exc
            log.error("[FlowChain(%s): %s] %s handler was cancelled", self.id, self.name, kind)
        except Exception:
            log.exception("[FlowChain(%s): %s] %s handler failed", self.id, self.name, kind)

    def _emit(
        self,
        kind: str,
        rec: StepRecord | None,
        duration: float | None,
        state: str | None,
        error: ErrorCode | None,
    ) -> None:
        assert self._events is not None
        self._events.publish(
            FLOW_TRACE_PATH,
            _new_trace_event(
                kind,
                self.name,
                self.id,
                self.parent_id,
                None if rec is None else rec.name,
                None if rec is None else rec.index,
                len(self._flows),
                _now(),
                duration,
                state,
                error,
                self.operation_id,
            ),
        )

    # -- after a crash (see core.kernel.flow_recovery) ---------------------

    @classmethod
    def restored(
        cls,
        entry: dict[str, Any],
        flows: list[Flow],
        *,
        events: EventBus | None,
        operation_id: str | None,
    ) -> FlowChain:
        """A chain a crash interrupted, as the journal entry ``entry`` recorded it."""
        chain = cls(entry["name"], flows, events=events)
        chain.id = entry["id"]
        chain.parent_id = entry.get("parentId")
        chain.operation_id = operation_id
        chain._started = True
        chain._records = [
            StepRecord(_flow_name(flow), i, StepState(state))
            for i, (flow, state) in enumerate(zip(flows, entry["steps"], strict=True), 1)
        ]
        return chain

    def _begin_restored(self, run: DurableRun, data: Any, error: ErrorCode | None) -> FlowOutcome:
        self._run = run
        self._trace = self._events is not None and self._events.has_subscribers(FLOW_TRACE_PATH)
        outcome = self.outcome = FlowOutcome(
            self.name, self.id, FlowChainStatus.SUCCEEDED, error, [], self._records, data
        )
        if self._trace:
            assert self._events is not None
            self._events.publish(
                FLOW_TRACE_PATH,
                FlowChainStartEvent(
                    "chain-start", self.name, self.id, self.parent_id, None, None,
                    len(self._records), _now(), None, None, None, self.operation_id,
                    tuple(r.name for r in self._records),
                ),
            )  # fmt: skip
        return outcome

    async def roll_back_interrupted(
        self, run: DurableRun, data: Any, error: ErrorCode
    ) -> FlowOutcome:
        """Roll back what an interrupted run of this chain did, last step first.

        A step the crash caught running (or rolling back) may have done part of its
        work, so it is rolled back too; every rollback checks the real state.
        """
        outcome = self._begin_restored(run, data, error)
        for rec in self._records:
            if rec.state in (_RUNNING, StepState.REVERTING, StepState.REVERT_FAILURE):
                rec.state = _FAILURE
        t0 = _perf()
        token = _current_chain.set(self)
        try:
            failures = await self._unwind(data)
        finally:
            _current_chain.reset(token)
        outcome.rollback_errors.extend(failures)
        outcome.status = (
            FlowChainStatus.ROLLBACK_FAILED if failures else FlowChainStatus.ROLLED_BACK
        )
        outcome.duration = _perf() - t0
        if self._trace:
            self._emit("chain-done", None, outcome.duration, outcome.status, outcome.error)
        return outcome

    async def resume_interrupted(self, run: DurableRun, data: Any) -> FlowOutcome:
        """Run an interrupted resumable chain on: the step the crash caught runs again
        (its run is idempotent), then the rest; a failure rolls back as usual."""
        outcome = self._begin_restored(run, data, None)
        records = self._records
        first = next(
            (i for i, rec in enumerate(records) if rec.state not in (_SUCCESS, StepState.SKIPPED)),
            len(records),
        )
        for rec in records[first:]:
            rec.state = StepState.PENDING
        t0 = _perf()
        token = _current_chain.set(self)
        try:
            error = await self._run_flows(data, records, first)
            if error is not None:
                outcome.error = error
                failures = await self._unwind(data)
                outcome.rollback_errors.extend(failures)
                outcome.status = (
                    FlowChainStatus.ROLLBACK_FAILED if failures else FlowChainStatus.ROLLED_BACK
                )
        finally:
            _current_chain.reset(token)
        outcome.duration = _perf() - t0
        if self._trace:
            self._emit("chain-done", None, outcome.duration, outcome.status, outcome.error)
        return outcome

    # -- as a step of an outer chain -------------------------------------

    async def run(self, data: dict[str, Any]) -> None:
        """Run as a nested chain over ``data``; on failure (already rolled back) raise."""
        outcome = await self.start(data)
        if outcome.error is not None:
            cause = outcome.error
            if outcome.rollback_errors:
                cause = _rollback_failed_error(self.name, cause, outcome.rollback_errors)
            raise OperationError(
                ErrorCode(SysErrors.OPERATION_ERROR, f"flow chain {self.name} failed", cause=cause)
            )

    async def rollback(self, data: dict[str, Any]) -> None:
        """Undo a nested chain that succeeded, its steps in reverse.

        A no-op if it failed (it rolled itself back) or never ran.  Raises
        ``SYS.1010`` if any step's rollback failed, after trying them all.
        """
        outcome = self.outcome
        if outcome is None or outcome.status is not FlowChainStatus.SUCCEEDED:
            return
        if self._no_rollback:
            return
        failures = await self._unwind(data)
        outcome.rollback_errors.extend(failures)
        outcome.status = (
            FlowChainStatus.ROLLBACK_FAILED if failures else FlowChainStatus.ROLLED_BACK
        )
        if self._cancel_exc is not None:
            raise self._cancel_exc
        if failures:
            raise OperationError(_rollback_failed_error(self.name, None, failures))


class _BuiltFlows(tuple[Flow, ...]):
    """A FlowChainBuilder's checked flows (spares every build the type checks)."""

    __slots__ = ()


def _check_flow(flow: Any) -> Flow:
    if not isinstance(flow, Flow):
        raise TypeError(f"a flow chain step must be a Flow, got {flow!r}")
    return flow


class FlowChainBuilder:
    """Builds chains from a declared list of dotted flow class paths (ZStack's builder).

    Each class is imported and instantiated once, with no arguments; every
    :meth:`build` makes a new chain over the same instances.  The instances are
    therefore frozen: setting an attribute on one raises ``TypeError``.
    """

    __slots__ = ("_flow_paths", "_flows", "_name")

    def __init__(self, name: str, flow_paths: Sequence[str]) -> None:
        if isinstance(flow_paths, str):
            raise FlowConfigError(
                f"flow chain {name!r}: flow_paths must be a list of dotted paths, not a string"
            )
        self._name = name
        self._flow_paths = tuple(flow_paths)
        flows = [_instantiate_flow(name, path) for path in self._flow_paths]
        for flow in flows:
            object.__setattr__(flow, "_frozen_by", name)
        self._flows = _BuiltFlows(flows)

    @property
    def name(self) -> str:
        return self._name

    @property
    def flow_paths(self) -> tuple[str, ...]:
        return self._flow_paths

    @property
    def flows(self) -> tuple[Flow, ...]:
        return tuple(self._flows)

    def build(
        self,
        *,
        events: EventBus | None = None,
        journal: FlowJournal | None = None,
        data_type: type[FlowData] | None = None,
        resumable: bool = False,
    ) -> FlowChain:
        """A new chain over the shared flow instances."""
        return FlowChain(
            self._name,
            self._flows,
            events=events,
            journal=journal,
            data_type=data_type,
            resumable=resumable,
        )

    def __repr__(self) -> str:
        return f"<FlowChainBuilder {self._name} ({len(self._flows)} flows)>"


def _instantiate_flow(chain: str, path: str) -> Flow:
    def fail(reason: str) -> FlowConfigError:
        return FlowConfigError(f"flow chain {chain!r}: flow {path!r} {reason}")

    if not isinstance(path, str) or "." not in path.strip("."):
        raise fail("is not a dotted path 'package.module.ClassName'")
    try:
        cls = _import_dotted(path)
    except Exception as exc:
        raise fail(f"cannot be imported: {type(exc).__name__}: {exc}") from exc
    if not isinstance(cls, type) or not issubclass(cls, Flow):
        raise fail(f"is not a Flow subclass (it is {cls!r})")
    if issubclass(cls, FlowChain):
        raise fail(
            "is a FlowChain, which is a per-run object and cannot be shared; "
            "declare a Flow whose run() builds and awaits the chain"
        )
    try:
        return cls()
    except Exception as exc:
        raise fail(
            f"cannot be instantiated with no arguments: {type(exc).__name__}: {exc}"
        ) from exc


def _import_dotted(path: str) -> Any:
    """Import ``pkg.module.Name`` (or ``pkg.module.Outer.Inner``)."""
    parts = path.split(".")
    missing: ModuleNotFoundError | None = None
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # Only "this prefix is not a module" moves on to a shorter prefix; a
            # module that exists but imports something missing is a real error.
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                missing = missing or exc
                continue
            raise
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    assert missing is not None
    raise missing

"""Assembles one record per operation from the bus's and the flow engine's events.

An operation is an API call (``/api/call/start`` .. ``/api/call/done``) with every
flow chain that ran for it (trace events carrying its operation id), or a chain
run with no running operation (background work: a reconnect, a host connect at
node start), which is its own operation named after the chain.  At every change
the whole record is published on :data:`OPERATION_UPDATE_PATH`; a finished one is
handed to ``on_finish`` (which stores it).

A record (the inventory of ``OperationLogVO``)::

    {uuid, name, apiName, parentUuid, params, resourceUuid, resourceName, resourceUuids, status,
     createDate, duration, error, chains: [{id, name, parentId, status, startedAt,
     duration, error, steps: [{index, name, state, startedAt, duration,
     revertDuration, error}]}]}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from contracts.events import OperationUpdate
from core.kernel.db import new_uuid
from core.kernel.errors import SysErrors
from core.kernel.events import CanonicalEvent, EventBus, Subscription
from core.kernel.flow import FLOW_TRACE_PATH, FlowChainStatus, FlowTraceEvent, StepState
from core.kernel.flow_recovery import RECOVERY_DONE_PATH, RECOVERY_START_PATH
from core.kernel.operation import API_CALL_DONE_PATH, API_CALL_START_PATH

log = logging.getLogger(__name__)

OPERATION_UPDATE_PATH = OperationUpdate.PATH
"""Data: the whole record of one operation, each time it changes."""

Record = dict[str, Any]

RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
ROLLED_BACK = "RolledBack"
ROLLBACK_FAILED = "RollbackFailed"
ROLLING_BACK = "RollingBack"
"""A chain unwinding (chains only; an operation stays Running meanwhile)."""
INTERRUPTED = "Interrupted"
"""The node died while the operation ran; the next start is taking it up (it then ends
as RolledBack, RollbackFailed, or Succeeded when run on)."""

_CHAIN_ENDS: dict[str | None, str] = {
    FlowChainStatus.SUCCEEDED.value: SUCCEEDED,
    FlowChainStatus.ROLLED_BACK.value: ROLLED_BACK,
    FlowChainStatus.ROLLBACK_FAILED.value: ROLLBACK_FAILED,
    FlowChainStatus.FAILED.value: FAILED,
}
_STEP_STATES = {
    "step-start": StepState.RUNNING.value,
    "step-done": StepState.SUCCESS.value,
    "step-skipped": StepState.SKIPPED.value,
    "step-failed": StepState.FAILURE.value,
    "step-reverted": StepState.REVERTED.value,
    "step-revert-failed": StepState.REVERT_FAILURE.value,
}


class _Operation:
    __slots__ = ("chain_ids", "record", "root_chain", "started")

    def __init__(self, record: Record, root_chain: str | None = None) -> None:
        self.record = record
        self.started: float | None = None
        """When recovery took an interrupted operation up (its duration counts from there)."""
        self.chain_ids: list[str] = []
        self.root_chain = root_chain
        """For background work: the chain whose end ends the operation."""


def iso_date(epoch: float) -> str:
    """The naive-UTC ISO form every createDate of the core has."""
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None).isoformat()


def new_record(
    uuid: str,
    name: str,
    api_name: str | None,
    parent_uuid: str | None,
    params: dict[str, Any] | None,
    resource_uuids: list[str],
    started_at: float,
) -> Record:
    return {
        "uuid": uuid,
        "name": name,
        "apiName": api_name,
        "parentUuid": parent_uuid,
        "params": params,
        "resourceUuid": resource_uuids[0] if resource_uuids else None,
        "resourceName": None,
        "resourceUuids": resource_uuids,
        "status": RUNNING,
        "createDate": iso_date(started_at),
        "duration": None,
        "error": None,
        "chains": [],
    }


def snapshot(record: Record) -> Record:
    """A copy another party may keep: the parts the journal changes later are copied."""
    out = dict(record)
    out["chains"] = [
        {**chain, "steps": [dict(step) for step in chain["steps"]]} for chain in record["chains"]
    ]
    return out


class OperationJournal:
    def __init__(self, events: EventBus, on_finish: Callable[[Record], None]) -> None:
        self._events = events
        self._on_finish = on_finish
        self._running: dict[str, _Operation] = {}
        self._chains: dict[str, tuple[_Operation, Record]] = {}
        self._subs: list[Subscription] = [
            events.subscribe(API_CALL_START_PATH, self._on_call_start),
            events.subscribe(API_CALL_DONE_PATH, self._on_call_done),
            events.subscribe(FLOW_TRACE_PATH, self._on_trace),
            events.subscribe(RECOVERY_START_PATH, self._on_recovery_start),
            events.subscribe(RECOVERY_DONE_PATH, self._on_recovery_done),
        ]

    def close(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs.clear()

    def running(self, resource_uuid: str | None = None) -> list[Record]:
        """Snapshots of the operations under way, oldest first."""
        records = [
            snapshot(op.record)
            for op in self._running.values()
            if resource_uuid is None or resource_uuid in _resources(op.record)
        ]
        return sorted(records, key=lambda r: r["createDate"])

    # -- API calls ------------------------------------------------------------------

    def _on_call_start(self, event: CanonicalEvent) -> None:
        data = event.data
        op_id = data["operationId"]
        if op_id in self._running:
            return
        record = new_record(
            op_id,
            data["apiName"],
            data["apiName"],
            data.get("parentOperationId"),
            data.get("params"),
            list(data.get("resourceUuids") or []),
            data["startedAt"],
        )
        op = self._running[op_id] = _Operation(record)
        self._publish(op)

    def _on_call_done(self, event: CanonicalEvent) -> None:
        data = event.data
        op = self._running.get(data["operationId"])
        if op is None:
            return  # started before the journal listened
        record = op.record
        error = data.get("error")
        if data["success"]:
            record["status"] = SUCCEEDED
        else:
            record["status"] = _failure_status(record, error)
        record["error"] = error
        record["duration"] = data["duration"]
        if data.get("resourceUuid"):
            record["resourceUuid"] = data["resourceUuid"]
            record["resourceName"] = data.get("resourceName")
        self._finish(op)

    # -- runs a crash interrupted, taken up at start ----------------------------------

    def _on_recovery_start(self, event: CanonicalEvent) -> None:
        data = event.data
        resource = data.get("resourceUuid")
        record = new_record(
            data["operationId"],
            data.get("apiName") or data["chainName"],
            data.get("apiName"),
            None,
            None,
            [resource] if resource else [],
            data["startedAt"],
        )
        record["resourceName"] = data.get("resourceName")
        record["status"] = INTERRUPTED
        record["error"] = data.get("error")
        op = self._running[record["uuid"]] = _Operation(record)
        op.started = time.time()
        self._publish(op)

    def _on_recovery_done(self, event: CanonicalEvent) -> None:
        data = event.data
        op = self._running.get(data["operationId"])
        if op is None:
            return
        record = op.record
        record["status"] = _CHAIN_ENDS.get(data["status"], FAILED)
        record["error"] = data.get("error")
        record["duration"] = time.time() - (op.started or time.time())
        self._finish(op)

    # -- flow chains ----------------------------------------------------------------

    def _on_trace(self, event: CanonicalEvent) -> None:
        ev: FlowTraceEvent = event.data
        if ev.kind == "chain-start":
            self._chain_started(ev)
            return
        hit = self._chains.get(ev.chain_id)
        if hit is None:
            return  # a chain of an operation that has ended, or that started unseen
        op, chain = hit
        kind = ev.kind
        state = _STEP_STATES.get(kind)
        if state is not None:
            step = _step(chain, ev)
            step["state"] = state
            if kind == "step-start":
                step["startedAt"] = ev.at
            elif kind in ("step-reverted", "step-revert-failed"):
                step["revertDuration"] = ev.duration
                if chain["duration"] is not None:  # ended: a nested chain its parent undoes
                    _undone(chain)
            elif kind != "step-skipped":
                step["duration"] = ev.duration
            if ev.error is not None:
                step["error"] = ev.error.to_dict()
        elif kind == "rollback-start":
            chain["status"] = ROLLING_BACK
        elif kind == "chain-done":
            chain["status"] = _CHAIN_ENDS.get(ev.state, FAILED)
            chain["duration"] = ev.duration
            chain["error"] = None if ev.error is None else ev.error.to_dict()
            if op.root_chain == ev.chain_id:
                record = op.record
                record["status"] = chain["status"]
                record["duration"] = ev.duration
                record["error"] = chain["error"]
                self._finish(op)
                return
        else:
            return
        self._publish(op)

    def _chain_started(self, ev: FlowTraceEvent) -> None:
        op = self._running.get(ev.operation_id) if ev.operation_id is not None else None
        parent = self._chains.get(ev.parent_chain_id) if ev.parent_chain_id else None
        if op is None and parent is not None:
            op = parent[0]
        if op is None:
            # Background work, or a chain that outlived the operation that started it.
            op_id = new_uuid()
            record = new_record(op_id, ev.chain_name, None, ev.operation_id, None, [], ev.at)
            op = self._running[op_id] = _Operation(record, root_chain=ev.chain_id)
        names: tuple[str, ...] = getattr(ev, "steps", ())  # a FlowChainStartEvent's
        chain: Record = {
            "id": ev.chain_id,
            "name": ev.chain_name,
            # a parent in another operation (a nested API call's chain) is not shown
            "parentId": ev.parent_chain_id if parent is not None and parent[0] is op else None,
            "status": RUNNING,
            "startedAt": ev.at,
            "duration": None,
            "error": None,
            "steps": [
                _pending(i, names[i - 1] if i <= len(names) else None)
                for i in range(1, ev.total + 1)
            ],
        }
        op.record["chains"].append(chain)
        op.chain_ids.append(ev.chain_id)
        self._chains[ev.chain_id] = (op, chain)
        self._publish(op)

    # -- common ---------------------------------------------------------------------

    def _finish(self, op: _Operation) -> None:
        self._running.pop(op.record["uuid"], None)
        for chain_id in op.chain_ids:
            self._chains.pop(chain_id, None)
        final = snapshot(op.record)
        self._publish(op, final)
        try:
            self._on_finish(final)
        except Exception:
            log.exception("cannot keep operation %s", op.record["uuid"])

    def _publish(self, op: _Operation, record: Record | None = None) -> None:
        events = self._events
        if events.has_subscribers(OPERATION_UPDATE_PATH):
            update = OperationUpdate.model_validate(record or op.record)
            events.publish(OPERATION_UPDATE_PATH, update.to_json())


def _pending(index: int, name: str | None) -> Record:
    return {
        "index": index,
        "name": name,
        "state": StepState.PENDING.value,
        "startedAt": None,
        "duration": None,
        "revertDuration": None,
        "error": None,
    }


def _step(chain: Record, ev: FlowTraceEvent) -> Record:
    steps = chain["steps"]
    index = ev.index or 1
    while len(steps) < index:
        steps.append(_pending(len(steps) + 1, None))
    step = steps[index - 1]
    if ev.step is not None:
        step["name"] = ev.step
    return step


def _undone(chain: Record) -> None:
    """The status of an ended chain being undone by its parent, once every step is."""
    states = {step["state"] for step in chain["steps"]}
    if not states & _UNDO_PENDING:
        failed = StepState.REVERT_FAILURE.value in states
        chain["status"] = ROLLBACK_FAILED if failed else ROLLED_BACK


_UNDO_PENDING = {StepState.SUCCESS.value, StepState.FAILURE.value}


def _failure_status(record: Record, error: dict[str, Any] | None) -> str:
    statuses = {chain["status"] for chain in record["chains"]}
    codes = set()
    while isinstance(error, dict):
        codes.add(error.get("code"))
        error = error.get("cause")
    if ROLLBACK_FAILED in statuses or SysErrors.ROLLBACK_FAILED in codes:
        return ROLLBACK_FAILED
    if ROLLED_BACK in statuses:
        return ROLLED_BACK
    return FAILED


def _resources(record: Record) -> set[str]:
    found = set(record["resourceUuids"])
    if record["resourceUuid"]:
        found.add(record["resourceUuid"])
    return found

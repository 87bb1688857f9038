"""Operation ids: which API call (operation) the running code works for.

The API bus gives every call that may change something (``read_only`` false) a
new operation id and runs its handler with :data:`current_operation` set, so
every flow chain the handler starts, in its own task or in tasks it creates,
carries that id in its trace events.  The operations journal
(``core.operation_log``) uses it to gather an operation's chains.

Events the bus publishes for every such call (data are JSON-able dicts):

``/api/call/start``
    ``{operationId, parentOperationId, apiName, params, resourceUuids, startedAt}``
``/api/call/done``
    ``{operationId, apiName, success, error, resourceUuid, resourceName, duration}``

The resource of a call is the one its reply's inventory is, else the one its
handler named with :func:`name_subject` (the VM a create makes, also when the
create fails), else the first resource uuid among its parameters.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from contracts.events import ApiCallDone, ApiCallStarted
from core.kernel.db import new_uuid

API_CALL_START_PATH = ApiCallStarted.PATH
API_CALL_DONE_PATH = ApiCallDone.PATH

_SECRET = re.compile(r"token|password|secret", re.IGNORECASE)
MASK = "*****"

current_operation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "zstack_lite_operation", default=None
)
"""The id of the operation the running code works for; None for background work."""

current_operation_name: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "zstack_lite_operation_name", default=None
)
"""The API name of that operation (what the flow journal writes down with a run)."""


@dataclass(slots=True)
class Subject:
    """The resource an operation is about, as its handler names it."""

    uuid: str | None = None
    name: str | None = None


_subject: contextvars.ContextVar[Subject | None] = contextvars.ContextVar(
    "zstack_lite_operation_subject", default=None
)


def new_subject(uuid: str | None = None) -> Subject:
    """A fresh subject for the operation the current task runs (the bus, per call): the
    first resource its parameters name until its handler names one."""
    subject = Subject(uuid)
    _subject.set(subject)
    return subject


def current_subject() -> Subject | None:
    """The running operation's subject, if it has one."""
    return _subject.get()


def name_subject(uuid: str, name: str | None = None) -> None:
    """Say which resource the running operation is about (e.g. the VM a create makes),
    so that its record names it even if it fails.  Nothing outside an operation."""
    subject = _subject.get()
    if subject is not None:
        subject.uuid, subject.name = uuid, name


def operation_id() -> str | None:
    """The current operation's id, if any."""
    return current_operation.get()


def new_operation_id() -> str:
    """A new operation id: 32 lower-case hex characters, like every uuid of the core."""
    return new_uuid()


def context_of(op_id: str | None, api_name: str | None = None) -> contextvars.Context:
    """A copy of the current context in which :data:`current_operation` is ``op_id``
    (and :data:`current_operation_name` ``api_name``), for
    ``asyncio.create_task(..., context=...)``."""
    ctx = contextvars.copy_context()
    ctx.run(current_operation.set, op_id)
    ctx.run(current_operation_name.set, api_name)
    return ctx


@contextmanager
def operation(op_id: str | None) -> Iterator[None]:
    """Run a block as part of operation ``op_id`` (None: as background work).

    Long-lived tasks created while an operation runs (trackers, watchers) inherit
    its id; start them under ``operation(None)`` so their chains count as
    background work rather than as part of an operation that has ended.
    """
    token = current_operation.set(op_id)
    try:
        yield
    finally:
        current_operation.reset(token)


def loggable_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters with secrets masked (by name: tokens, passwords, secrets), as they
    go into events and the operations journal."""
    return {
        name: MASK if value and _SECRET.search(name) else value for name, value in params.items()
    }

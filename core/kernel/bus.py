"""The API bus: routes each API message through its interceptors to its service.

One call goes: resources given by name resolved to their uuids (see
:mod:`core.kernel.names`) -> parameters checked (types and rules by the message class, then
every resource uuid looked up with its type) -> interceptors in order -> the
per-resource queue of the message's sync signature -> the service's handler,
under a timeout.  A call whose timeout passes gets a timeout error at once;
the operation itself goes on to its end (so its rollback is never cut short)
and holds its resource's queue until then, as ZStack's dropped late replies do.

The bus is also the one list of operations: ``zcli`` verbs and the local
socket API are generated from :meth:`ApiBus.messages`.

Every call that may change something (``read_only`` false) is an operation: it
gets a new operation id, its handler runs with that id as
:data:`~core.kernel.operation.current_operation`, and the bus publishes
``/api/call/start`` and ``/api/call/done`` for it (see :mod:`core.kernel.operation`),
also when the call is refused before its handler runs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.engine import Connection

from agentkit.locks import KeyedLocks
from contracts.events import ApiCallDone, ApiCallStarted
from core.kernel.api import ApiMessage, ApiReply, QueryResult, bounded_params
from core.kernel.api_params import ApiParameterExtensionPoint
from core.kernel.db import Database, resource_model
from core.kernel.errors import ErrorCode, OperationError, SysErrors, argerr, error_from_exception
from core.kernel.event_json import to_json
from core.kernel.events import EventBus
from core.kernel.names import resolve_names
from core.kernel.operation import (
    API_CALL_DONE_PATH,
    API_CALL_START_PATH,
    Subject,
    context_of,
    current_operation,
    loggable_params,
    new_operation_id,
    new_subject,
)
from core.kernel.query import QueryMessage, run_query
from core.kernel.service import ApiInterceptor, GlobalApiInterceptor, Service

log = logging.getLogger(__name__)
STOPPED_WHILE_RUNNING = ErrorCode(
    SysErrors.OPERATION_ERROR,
    "cancelled: the management node stopped while this ran",
    "its flow chains rolled back what they had done",
)


@dataclass
class _Route:
    service: Service
    handler: Callable[[Any], Awaitable[Any]]
    interceptors: list[ApiInterceptor]


@dataclass(slots=True)
class _Operation:
    """One call that may change something, from its start event to its done event."""

    id: str
    api_name: str
    resource_uuids: list[str]
    t0: float


class ApiBus:
    def __init__(
        self, db: Database, default_timeout: float, events: EventBus | None = None
    ) -> None:
        """``events``: where the operation events go (none: calls still get operation ids)."""
        self.db = db
        self.default_timeout = default_timeout
        self.events = events
        self._routes: dict[type[ApiMessage], _Route] = {}
        self._by_name: dict[str, type[ApiMessage]] = {}
        self._global: list[GlobalApiInterceptor] = []
        self._contributions: dict[str, list[ApiParameterExtensionPoint]] = {}
        self._locks = KeyedLocks()
        self._running: set[asyncio.Task[Any]] = set()

    # -- registration -------------------------------------------------------

    def register_service(self, service: Service) -> None:
        if not getattr(service, "service_id", ""):
            raise ValueError(f"service {type(service).__qualname__} has no service_id")
        handlers: dict[type[ApiMessage], Callable[[Any], Awaitable[Any]]] = dict(
            service.api_handlers()
        )
        for query_type in service.queries:
            handlers[query_type] = self._query_handler
        interceptors = service.api_interceptors()
        for msg_type, handler in handlers.items():
            if msg_type in self._routes:
                other = self._routes[msg_type].service.service_id
                raise ValueError(
                    f"{msg_type.api_name} is declared by both service {other} "
                    f"and service {service.service_id}"
                )
            self._routes[msg_type] = _Route(service, handler, interceptors)
            self._by_name[msg_type.api_name] = msg_type

    def add_global_interceptor(self, interceptor: GlobalApiInterceptor) -> None:
        self._global.append(interceptor)

    def add_parameter_extension(self, ext: ApiParameterExtensionPoint) -> None:
        """``ext``'s parameters join its API's (an API no enabled service answers: none).
        A name the API has already is a ValueError naming both."""
        msg_type = self._by_name.get(ext.api_name)
        if msg_type is None:
            return
        taken = set(msg_type.params) | {"systemTags", "userTags"}
        for other in self._contributions.get(ext.api_name, []):
            taken |= set(other.api_params)
        clash = sorted(taken & set(ext.api_params))
        if clash:
            raise ValueError(
                f"{type(ext).__qualname__} adds parameter {clash[0]} to {ext.api_name}, "
                "which has it already"
            )
        self._contributions.setdefault(ext.api_name, []).append(ext)

    def contributions(self, api_name: str) -> list[ApiParameterExtensionPoint]:
        """The plugins that add parameters to ``api_name``, in registry order."""
        return list(self._contributions.get(api_name, ()))

    def messages(self) -> dict[str, type[ApiMessage]]:
        """Every API message some service handles, by API name, sorted."""
        return dict(sorted(self._by_name.items()))

    def service_of(self, msg_type: type[ApiMessage]) -> Service:
        return self._routes[msg_type].service

    def interceptors_for(self, msg: ApiMessage) -> list[ApiInterceptor]:
        route = self._routes[type(msg)]
        chosen: list[ApiInterceptor] = [i for i in self._global if i.applies_to(msg)]
        chosen.extend(route.interceptors)
        return sorted(chosen, key=ApiInterceptor.sort_key)

    # -- calls --------------------------------------------------------------

    async def call_by_name(
        self, api_name: str, params: Mapping[str, Any], timeout: float | None = None
    ) -> ApiReply:
        """Build the message from raw parameters and call it; every error becomes a reply."""
        msg_type = self._by_name.get(api_name)
        if msg_type is None:
            return ApiReply.failure(
                ErrorCode(SysErrors.INVALID_ARGUMENT, f"no API named {api_name}")
            )
        try:
            resolved = await resolve_names(msg_type, params, self._named)
            msg = msg_type.from_params(resolved, self._contributions.get(api_name, ()))
        except OperationError as exc:
            reply = ApiReply.failure(exc.error)
            if not msg_type.read_only:  # a refused call is an operation that failed at once
                self._end(self._begin(api_name, bounded_params(params), []), reply)
            return reply
        return await self.call(msg, timeout)

    async def call(self, msg: ApiMessage, timeout: float | None = None) -> ApiReply:
        route = self._routes.get(type(msg))
        if route is None:
            return ApiReply.failure(
                ErrorCode(SysErrors.INVALID_ARGUMENT, f"no service handles {msg.api_name}")
            )
        op: _Operation | None = None
        if not msg.read_only:
            op = self._begin(
                msg.api_name,
                msg.to_params(),
                list(dict.fromkeys(uuid for _, _, uuid in msg.resource_uuids())),
            )
        try:
            msg.validate()
            await self._check_resources(msg)
            for interceptor in self.interceptors_for(msg):
                msg = await interceptor.intercept(msg)
        except Exception as exc:
            reply = ApiReply.failure(error_from_exception(exc))
            self._end(op, reply)
            return reply

        limit = timeout or msg.timeout or self.default_timeout
        task = asyncio.create_task(
            self._serve(msg, route, op),
            name=f"api:{msg.api_name}",
            context=None if op is None else context_of(op.id, msg.api_name),
        )
        self._running.add(task)
        task.add_done_callback(self._finished)
        try:
            return await asyncio.wait_for(asyncio.shield(task), limit)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not task.cancelled() or (current is not None and current.cancelling()):
                raise  # the caller itself is cancelled
            return ApiReply.failure(STOPPED_WHILE_RUNNING)  # drain() cancelled the operation
        except TimeoutError:
            return ApiReply.failure(
                ErrorCode(
                    SysErrors.TIMEOUT,
                    f"{msg.api_name} timed out after {limit:g}s",
                    "the operation goes on in the background and rolls back if it fails",
                )
            )

    async def _serve(self, msg: ApiMessage, route: _Route, op: _Operation | None) -> ApiReply:
        """Run the handler in the message's queue; every error becomes a reply."""
        # This task's: the handler may name its resource (the flow journal records it).
        subject = new_subject(op.resource_uuids[0] if op and op.resource_uuids else None)
        try:
            signature = msg.sync_signature()
            if signature is None:
                result = await route.handler(msg)
            else:
                async with self._locks.hold(signature):
                    result = await route.handler(msg)
            reply = _reply(result)
        except asyncio.CancelledError:
            self._end(op, ApiReply.failure(STOPPED_WHILE_RUNNING), subject)
            raise
        except Exception as exc:
            if not isinstance(exc, OperationError):
                log.exception("%s failed", msg.api_name)
            reply = ApiReply.failure(error_from_exception(exc))
        self._end(op, reply, subject)
        return reply

    # -- operations ---------------------------------------------------------

    def _begin(
        self, api_name: str, params: Mapping[str, Any], resource_uuids: list[str]
    ) -> _Operation:
        op = _Operation(new_operation_id(), api_name, resource_uuids, time.perf_counter())
        events = self.events
        if events is not None and events.has_subscribers(API_CALL_START_PATH):
            started = ApiCallStarted(
                operation_id=op.id,
                parent_operation_id=current_operation.get(),
                api_name=api_name,
                params=to_json(loggable_params(params)),
                resource_uuids=resource_uuids,
                started_at=time.time(),
            )
            events.publish(API_CALL_START_PATH, started.to_json())
        return op

    def _end(self, op: _Operation | None, reply: ApiReply, subject: Subject | None = None) -> None:
        events = self.events
        if op is None or events is None or not events.has_subscribers(API_CALL_DONE_PATH):
            return
        inventory = reply.inventory
        resource_uuid = inventory.get("uuid") if isinstance(inventory, dict) else None
        resource_name = None
        if isinstance(resource_uuid, str):
            resource_name = inventory.get("name")  # type: ignore[union-attr]
        elif subject is not None and subject.uuid is not None:
            resource_uuid, resource_name = subject.uuid, subject.name
        else:
            resource_uuid = op.resource_uuids[0] if op.resource_uuids else None
        done = ApiCallDone(
            operation_id=op.id,
            api_name=op.api_name,
            success=reply.success,
            error=None if reply.error is None else reply.error.to_dict(),
            resource_uuid=resource_uuid,
            resource_name=resource_name if isinstance(resource_name, str) else None,
            duration=time.perf_counter() - op.t0,
        )
        events.publish(API_CALL_DONE_PATH, done.to_json())

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            task.exception()  # retrieved: the caller (or its timeout reply) reported it

    def hold(self, signature: str) -> AbstractAsyncContextManager[None]:
        """Hold the queue of ``signature`` as an API message with that sync signature does:
        for an operation that must also wait for a second resource (a volume's VM).  Not
        re-entrant: a handler never holds its own message's signature again."""
        return self._locks.hold(signature)

    def is_busy(self, signature: str) -> bool:
        """Whether an operation holds (or waits for) the queue of ``signature``."""
        return signature in self._locks

    async def drain(self, grace: float | None = None, rollback_grace: float = 30.0) -> None:
        """Wait for operations still running (e.g. after their callers timed out).

        With ``grace``: those still running after ``grace`` seconds are cancelled (their
        flow chains roll back), and waited for ``rollback_grace`` seconds more at most.
        """
        if not self._running:
            return
        _done, pending = await asyncio.wait(list(self._running), timeout=grace)
        if not pending:
            return
        log.warning("cancelling %d API call(s) still running at stop", len(pending))
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=rollback_grace)
        if pending:
            log.error("%d API call(s) did not end after being cancelled", len(pending))

    async def _check_resources(self, msg: ApiMessage) -> None:
        wanted = msg.resource_uuids()
        if not wanted:
            return

        def lookup(connection: Connection) -> tuple[str, str, str] | None:
            for name, rtype, uuid in wanted:
                if connection.scalar(_exists_statement(rtype), {"uuid": uuid}) is None:
                    return name, rtype, uuid
            return None

        missing = await self.db.run_core(lookup)
        if missing is not None:
            name, rtype, uuid = missing
            raise OperationError(
                ErrorCode(
                    SysErrors.RESOURCE_NOT_FOUND,
                    f"parameter {name} of {msg.api_name}: {rtype}[uuid:{uuid}] does not exist",
                )
            )

    async def _named(self, resource_type: str, name: str) -> list[dict[str, Any]]:
        """The inventories of the resources of a type with a name, by the type's Query API
        (the one named after the type when several query it)."""
        queries = [
            m
            for m in self._by_name.values()
            if issubclass(m, QueryMessage)
            and getattr(m.model, "resource_type", None) == resource_type
        ]
        if not queries:
            raise argerr(f"a {resource_type} can be given only by its uuid: no API queries them")
        own = f"Query{resource_type.removesuffix('VO')}"
        query = next((q for q in queries if q.api_name == own), queries[0])
        reply = await self.call(query.from_params({"conditions": [f"name={name}"]}))
        if reply.error is not None:
            raise OperationError(reply.error)
        return reply.inventories or []

    async def _query_handler(self, msg: QueryMessage) -> QueryResult:
        return await self.db.run(lambda session: run_query(session, msg))


@functools.cache
def _exists_statement(resource_type: str) -> Select[Any]:
    """``SELECT uuid FROM <table> WHERE uuid = :uuid``, built once per resource type."""
    model = resource_model(resource_type)
    uuid = model.__table__.c.uuid
    return select(uuid).where(uuid == bindparam("uuid"))


def _reply(result: Any) -> ApiReply:
    if isinstance(result, ApiReply):
        return result
    if isinstance(result, QueryResult):
        return ApiReply(inventories=result.inventories, total=result.total)
    if isinstance(result, list):
        return ApiReply(inventories=result)
    if isinstance(result, dict) or result is None:
        return ApiReply(inventory=result)
    return ApiReply.failure(
        ErrorCode(SysErrors.INTERNAL, f"handler returned {type(result).__name__}, not an inventory")
    )

"""Operation ids: every call that may change something is an operation with start and done
events, and its id reaches every chain and task its handler starts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.kernel.api import ApiMessage, param
from core.kernel.bus import ApiBus
from core.kernel.db import Database
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.events import EventBus
from core.kernel.flow import FLOW_TRACE_PATH, FlowChain, FlowTraceEvent, NoRollbackFlow
from core.kernel.operation import (
    API_CALL_DONE_PATH,
    API_CALL_START_PATH,
    MASK,
    current_operation,
    loggable_params,
    operation,
    operation_id,
)
from core.kernel.service import ApiInterceptor, Service, handles
from core.zone.models import ZoneVO

UUID = re.compile(r"[0-9a-f]{32}")


class Make(ApiMessage):
    """Makes something, running a chain and a task of its own."""

    name: str = param(default="")
    zone_uuid: str = param(resource_type="ZoneVO")
    agent_token: str = param(default="")
    fail: bool = param(default=False)


class Peek(ApiMessage):
    read_only = True


class Nest(ApiMessage):
    """Calls Make through the bus from its handler."""


class Slow(ApiMessage):
    timeout = 0.05


class Refused(ApiMessage):
    pass


class Seen(NoRollbackFlow):
    def __init__(self, log: list[tuple[str, str | None]]) -> None:
        self.log = log

    async def run(self, data: dict[str, Any]) -> None:
        self.log.append(("flow", operation_id()))


class Refuse(ApiInterceptor):
    async def intercept(self, msg: ApiMessage) -> ApiMessage:
        if isinstance(msg, Refused):
            raise OperationError(ErrorCode("TEST.1", "refused"))
        return msg


class OpService(Service):
    service_id = "op"

    def __init__(self, events: EventBus) -> None:
        self.events = events
        self.bus: ApiBus | None = None
        self.log: list[tuple[str, str | None]] = []
        self.gate = asyncio.Event()

    def api_interceptors(self) -> list[ApiInterceptor]:
        return [Refuse()]

    @handles(Make)
    async def make(self, msg: Make) -> dict[str, Any]:
        self.log.append(("handler", operation_id()))
        await FlowChain("make", [Seen(self.log)], events=self.events).start()

        async def later() -> None:
            self.log.append(("task", operation_id()))

        await asyncio.create_task(later())
        if msg.fail:
            raise RuntimeError("disk on fire")
        return {"uuid": "f" * 32, "name": msg.name}

    @handles(Peek)
    async def peek(self, msg: Peek) -> None:
        self.log.append(("peek", operation_id()))

    @handles(Nest)
    async def nest(self, msg: Nest) -> None:
        assert self.bus is not None
        reply = await self.bus.call(Make(name="inner"))
        assert reply.success

    @handles(Slow)
    async def slow(self, msg: Slow) -> None:
        await self.gate.wait()

    @handles(Refused)
    async def refused(self, msg: Refused) -> None:
        raise AssertionError("never reached")


@pytest.fixture
def events() -> EventBus:
    return EventBus()


@pytest.fixture
def seen(events: EventBus) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for path in (API_CALL_START_PATH, API_CALL_DONE_PATH, FLOW_TRACE_PATH):
        events.subscribe(path, lambda e: found.append((e.path, e.data)))
    return found


@pytest.fixture
async def service(db: Database, events: EventBus) -> AsyncIterator[OpService]:
    svc = OpService(events)
    svc.bus = ApiBus(db, 30.0, events)
    svc.bus.register_service(svc)
    yield svc
    svc.gate.set()
    await svc.bus.drain()


def calls(seen: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(path, data) for path, data in seen if path != FLOW_TRACE_PATH]


async def test_a_call_is_an_operation_its_chains_and_tasks_share(
    service: OpService, seen: list[tuple[str, Any]]
) -> None:
    assert service.bus is not None
    reply = await service.bus.call_by_name("Make", {"name": "a", "agentToken": "s3cret"})
    assert reply.success
    [(start_path, start), (done_path, done)] = calls(seen)
    assert (start_path, done_path) == (API_CALL_START_PATH, API_CALL_DONE_PATH)
    op_id = start["operationId"]
    assert UUID.fullmatch(op_id)
    assert start == {
        "operationId": op_id,
        "parentOperationId": None,
        "apiName": "Make",
        "params": {"name": "a", "zoneUuid": None, "agentToken": MASK, "fail": False},
        "resourceUuids": [],
        "startedAt": start["startedAt"],
    }
    assert done == {
        "operationId": op_id,
        "apiName": "Make",
        "success": True,
        "error": None,
        "resourceUuid": "f" * 32,  # the inventory's uuid
        "resourceName": "a",  # and its name
        "duration": done["duration"],
    }
    assert 0 <= done["duration"] < 5
    assert service.log == [("handler", op_id), ("flow", op_id), ("task", op_id)]
    traces = [data for path, data in seen if path == FLOW_TRACE_PATH]
    assert traces and all(isinstance(t, FlowTraceEvent) for t in traces)
    assert {t.operation_id for t in traces} == {op_id}
    assert operation_id() is None  # the caller's context is untouched

    again = await service.bus.call(Make())
    assert again.success
    assert calls(seen)[2][1]["operationId"] not in (None, op_id)


async def test_read_only_calls_are_no_operations(
    service: OpService, seen: list[tuple[str, Any]]
) -> None:
    assert service.bus is not None
    assert (await service.bus.call(Peek())).success
    assert seen == []
    assert service.log == [("peek", None)]


async def test_a_failing_handler_ends_its_operation_with_the_replys_error(
    service: OpService, seen: list[tuple[str, Any]]
) -> None:
    assert service.bus is not None
    reply = await service.bus.call(Make(fail=True))
    assert reply.error is not None
    done = calls(seen)[-1][1]
    assert done["success"] is False
    assert done["error"] == reply.to_dict()["error"]
    assert done["error"]["code"] == SysErrors.INTERNAL


@pytest.mark.parametrize(
    ("api", "params", "code"),
    [
        ("Make", {"fail": "maybe"}, SysErrors.INVALID_ARGUMENT),  # from_params
        ("Make", {"zoneUuid": "a" * 32}, SysErrors.RESOURCE_NOT_FOUND),  # resource check
        ("Refused", {}, "TEST.1"),  # interceptor
    ],
)
async def test_refused_calls_are_operations_that_failed_at_once(
    service: OpService, seen: list[tuple[str, Any]], api: str, params: dict[str, Any], code: str
) -> None:
    assert service.bus is not None
    reply = await service.bus.call_by_name(api, params)
    assert reply.error is not None and reply.error.code == code
    [(_, start), (_, done)] = calls(seen)
    assert start["apiName"] == done["apiName"] == api
    assert start["operationId"] == done["operationId"]
    assert done["success"] is False and done["error"] == reply.error.to_dict()
    if "zoneUuid" in params:
        assert start["resourceUuids"] == [params["zoneUuid"]]
        assert done["resourceUuid"] == params["zoneUuid"]
    assert service.log == []


async def test_unknown_apis_are_no_operations(
    service: OpService, seen: list[tuple[str, Any]]
) -> None:
    assert service.bus is not None
    assert not (await service.bus.call_by_name("Nope", {})).success
    assert seen == []


async def test_the_first_resource_parameter_names_an_operation_without_inventory(
    service: OpService, db: Database, seen: list[tuple[str, Any]]
) -> None:
    assert service.bus is not None

    def add(session: Any) -> str:
        zone = ZoneVO(name="z")
        session.add(zone)
        session.flush()
        return zone.uuid

    zone_uuid = await db.run(add)
    reply = await service.bus.call(Make(zone_uuid=zone_uuid, fail=True))
    assert not reply.success
    start, done = calls(seen)[0][1], calls(seen)[1][1]
    assert start["resourceUuids"] == [zone_uuid]
    assert done["resourceUuid"] == zone_uuid


async def test_a_call_from_a_handler_is_an_operation_of_its_own(
    service: OpService, seen: list[tuple[str, Any]]
) -> None:
    assert service.bus is not None
    assert (await service.bus.call(Nest())).success
    starts = [data for path, data in seen if path == API_CALL_START_PATH]
    outer, inner = starts
    assert (outer["apiName"], inner["apiName"]) == ("Nest", "Make")
    assert inner["parentOperationId"] == outer["operationId"]
    assert inner["operationId"] != outer["operationId"]
    assert ("flow", inner["operationId"]) in service.log


async def test_an_operation_whose_caller_timed_out_ends_when_its_handler_does(
    service: OpService, seen: list[tuple[str, Any]]
) -> None:
    assert service.bus is not None
    reply = await service.bus.call(Slow())
    assert reply.error is not None and reply.error.code == SysErrors.TIMEOUT
    assert [path for path, _ in calls(seen)] == [API_CALL_START_PATH]
    service.gate.set()
    await service.bus.drain()
    [_, (path, done)] = calls(seen)
    assert path == API_CALL_DONE_PATH and done["success"] is True


async def test_operation_events_cost_nothing_without_an_event_bus(
    db: Database, events: EventBus
) -> None:
    svc = OpService(events)
    bus = ApiBus(db, 30.0)  # as tests and tools build it: no events
    bus.register_service(svc)
    assert (await bus.call(Make())).success
    [(_, op_id), *_] = svc.log
    assert op_id is not None and UUID.fullmatch(op_id)


def test_secrets_are_masked_by_name() -> None:
    assert loggable_params(
        {"agentToken": "x", "password": "y", "clientSecret": "z", "name": "n", "token": ""}
    ) == {"agentToken": MASK, "password": MASK, "clientSecret": MASK, "name": "n", "token": ""}


async def test_background_work_can_leave_an_operation() -> None:
    token = current_operation.set("a" * 32)
    try:
        with operation(None):
            assert operation_id() is None
            chain = FlowChain("bg", [], events=EventBus())
            await chain.start()
            assert chain.operation_id is None
        assert operation_id() == "a" * 32
    finally:
        current_operation.reset(token)

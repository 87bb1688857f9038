"""The API bus: validation before services, interceptor order, per-resource queues, timeouts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from core.kernel.api import ApiMessage, ApiReply, param
from core.kernel.bus import ApiBus
from core.kernel.db import Database, new_uuid
from core.kernel.errors import ErrorCode, OperationError, SysErrors, argerr, operr
from core.kernel.extensions import Plugin, PluginError
from core.kernel.properties import Properties
from core.kernel.service import (
    ApiInterceptor,
    GlobalApiInterceptor,
    InterceptorPosition,
    Service,
    handles,
)
from core.zone.models import ZoneVO
from tests.conftest import make_node


class Work(ApiMessage):
    """A unit of work on a resource."""

    key: str = param(required=True, max_length=16)
    label: str = param(default="")
    count: int = param(default=1, number_range=(1, 10))

    def sync_signature(self) -> str:
        return f"Work-{self.key}"


class Free(ApiMessage):
    """No queue: runs concurrently with anything."""

    label: str = param(default="")


class OnZone(ApiMessage):
    zone_uuid: str = param(required=True, resource_type="ZoneVO")


class Boom(ApiMessage):
    kind: str = param(default="runtime")


class Recorder:
    """What the test service and interceptors saw, and gates that hold handlers."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.calls: list[ApiMessage] = []
        self.entered: dict[str, asyncio.Event] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.finished: dict[str, asyncio.Event] = {}
        self.active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}

    def event(self, table: dict[str, asyncio.Event], label: str) -> asyncio.Event:
        return table.setdefault(label, asyncio.Event())

    def gate(self, label: str) -> asyncio.Event:
        return self.event(self.gates, label)


class WorkService(Service):
    service_id = "work"

    def __init__(self, rec: Recorder, interceptors: list[ApiInterceptor] | None = None) -> None:
        self.rec = rec
        self._interceptors = interceptors or []

    def api_interceptors(self) -> list[ApiInterceptor]:
        return list(self._interceptors)

    @handles(Work)
    async def work(self, msg: Work) -> dict[str, Any]:
        rec = self.rec
        rec.calls.append(msg)
        rec.log.append(f"start:{msg.label}")
        rec.active[msg.key] = rec.active.get(msg.key, 0) + 1
        rec.max_active[msg.key] = max(rec.max_active.get(msg.key, 0), rec.active[msg.key])
        rec.event(rec.entered, msg.label).set()
        try:
            if msg.label in rec.gates:
                await rec.gates[msg.label].wait()
        finally:
            rec.active[msg.key] -= 1
            rec.log.append(f"end:{msg.label}")
            rec.event(rec.finished, msg.label).set()
        return {"key": msg.key, "label": msg.label, "count": msg.count}

    @handles(Free)
    async def free(self, msg: Free) -> dict[str, Any]:
        self.rec.calls.append(msg)
        self.rec.event(self.rec.entered, msg.label).set()
        return {"label": msg.label}

    @handles(OnZone)
    async def on_zone(self, msg: OnZone) -> None:
        self.rec.calls.append(msg)

    @handles(Boom)
    async def boom(self, msg: Boom) -> Any:
        self.rec.calls.append(msg)
        if msg.kind == "runtime":
            raise RuntimeError("disk on fire")
        if msg.kind == "chain":
            root = ErrorCode("HOST.1002", "agent unreachable", "connection refused")
            middle = ErrorCode("VM.1003", "cannot start vm on host", cause=root)
            raise operr("create vm failed", cause=middle)
        if msg.kind == "badtype":
            return 42
        if msg.kind == "list":
            return [{"a": 1}, {"a": 2}]
        return None


class Logging(ApiInterceptor):
    """Appends its label to the recorder; refuses when told to."""

    def __init__(self, rec: Recorder, label: str, refuse: bool = False) -> None:
        self.rec = rec
        self.label = label
        self.refuse = refuse

    async def intercept(self, msg: ApiMessage) -> ApiMessage:
        self.rec.log.append(f"icpt:{self.label}")
        if self.refuse:
            raise OperationError(ErrorCode("TEST.1", f"refused by {self.label}"))
        return msg


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
async def bus(db: Database, rec: Recorder) -> AsyncIterator[ApiBus]:
    b = ApiBus(db, default_timeout=30.0)
    b.register_service(WorkService(rec))
    yield b
    for gate in rec.gates.values():
        gate.set()
    await b.drain()


async def wait(event: asyncio.Event) -> None:
    """Wait for an event; a generous bound only guards against a hang."""
    await asyncio.wait_for(event.wait(), 10)


# -- parameters are checked before anything else ---------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},  # missing required
        {"key": "k", "count": "0"},  # out of range
        {"key": "k", "count": "eleven"},  # wrong type
        {"key": "k" * 17},  # too long
        {"key": "k", "bogus": "1"},  # unknown parameter
    ],
)
async def test_bad_params_never_reach_interceptors_or_service(
    db: Database, rec: Recorder, params: dict[str, str]
) -> None:
    bus = ApiBus(db, 30.0)
    bus.register_service(WorkService(rec, [Logging(rec, "svc")]))
    reply = await bus.call_by_name("Work", params)
    assert not reply.success
    assert reply.error is not None and reply.error.code == SysErrors.INVALID_ARGUMENT
    assert rec.calls == [] and rec.log == []


async def test_message_objects_are_validated_too(bus: ApiBus, rec: Recorder) -> None:
    reply = await bus.call(Work(key="k", count=99))
    assert reply.error is not None and reply.error.code == SysErrors.INVALID_ARGUMENT
    assert "count" in reply.error.description
    assert rec.calls == []


async def test_good_params_are_coerced_and_reach_the_service(bus: ApiBus, rec: Recorder) -> None:
    reply = await bus.call_by_name("Work", {"key": "k", "count": "3", "label": "x"})
    assert reply.success, reply.error
    assert reply.inventory == {"key": "k", "label": "x", "count": 3}
    assert len(rec.calls) == 1 and isinstance(rec.calls[0], Work)


async def test_unknown_api(bus: ApiBus) -> None:
    reply = await bus.call_by_name("NoSuchApi", {})
    assert reply.error is not None
    assert reply.error.code == SysErrors.INVALID_ARGUMENT
    assert reply.error.description == "no API named NoSuchApi"


async def test_message_nobody_handles(bus: ApiBus) -> None:
    class Orphan(ApiMessage):
        pass

    reply = await bus.call(Orphan())
    assert reply.error is not None and "no service handles Orphan" in reply.error.description


async def test_nonexistent_resource_uuid_is_refused_before_interceptors(
    db: Database, rec: Recorder
) -> None:
    bus = ApiBus(db, 30.0)
    bus.register_service(WorkService(rec, [Logging(rec, "svc")]))
    glob = GlobalLogging(rec, "global")
    bus.add_global_interceptor(glob)
    missing = new_uuid()
    reply = await bus.call_by_name("OnZone", {"zoneUuid": missing})
    assert reply.error is not None
    assert reply.error.code == SysErrors.RESOURCE_NOT_FOUND
    assert reply.error.description == (
        f"parameter zoneUuid of OnZone: ZoneVO[uuid:{missing}] does not exist"
    )
    assert rec.log == [] and rec.calls == []

    def add_zone(session: Any) -> str:
        zone = ZoneVO(name="z")
        session.add(zone)
        session.flush()
        return zone.uuid

    uuid = await db.run(add_zone)
    reply = await bus.call_by_name("OnZone", {"zoneUuid": uuid})
    assert reply.success, reply.error
    assert rec.log == ["icpt:global", "icpt:svc"]
    assert len(rec.calls) == 1


# -- interceptors ---------------------------------------------------------------------


class GlobalLogging(Logging, GlobalApiInterceptor):
    pass


def _interceptor_class(
    name: str, position: InterceptorPosition, priority: int, glob: bool
) -> type[Logging]:
    base: tuple[type, ...] = (GlobalLogging,) if glob else (Logging,)
    cls = type(name, base, {"position": position, "priority": priority})
    cls.__qualname__ = name
    return cls


# (class name, position, priority, global?) in the order they must run
EXPECTED_ORDER = [
    ("Sys", InterceptorPosition.SYSTEM, 5, True),
    ("AFront", InterceptorPosition.FRONT, -1, False),
    ("BFront", InterceptorPosition.FRONT, 0, True),
    ("CFront", InterceptorPosition.FRONT, 0, False),
    ("ZFront", InterceptorPosition.FRONT, 0, True),
    ("AFrontLate", InterceptorPosition.FRONT, 3, True),
    ("Default", InterceptorPosition.DEFAULT, -100, True),
    ("DefaultSvc", InterceptorPosition.DEFAULT, 0, False),
    ("End", InterceptorPosition.END, -5, False),
    ("EndGlobal", InterceptorPosition.END, 0, True),
]


@pytest.mark.parametrize("seed", range(6))
async def test_interceptor_order_is_deterministic(db: Database, seed: int) -> None:
    rec = Recorder()
    made = [
        (_interceptor_class(name, pos, prio, glob)(rec, name), glob)
        for name, pos, prio, glob in EXPECTED_ORDER
    ]
    # register them in a different order each time
    shuffled = list(made)
    random.Random(seed).shuffle(shuffled)
    if seed == 0:
        shuffled.reverse()
    bus = ApiBus(db, 30.0)
    bus.register_service(WorkService(rec, [i for i, glob in shuffled if not glob]))
    for interceptor, glob in shuffled:
        if glob:
            bus.add_global_interceptor(interceptor)  # type: ignore[arg-type]
    names = [name for name, *_ in EXPECTED_ORDER]
    assert [type(i).__qualname__ for i in bus.interceptors_for(Work(key="k"))] == names
    reply = await bus.call_by_name("Work", {"key": "k", "label": "w"})
    assert reply.success, reply.error
    assert rec.log == [f"icpt:{n}" for n in names] + ["start:w", "end:w"]


def test_default_positions() -> None:
    assert GlobalApiInterceptor.position is InterceptorPosition.FRONT
    assert ApiInterceptor.position is InterceptorPosition.DEFAULT
    assert [p.name for p in sorted(InterceptorPosition)] == ["SYSTEM", "FRONT", "DEFAULT", "END"]


async def test_global_interceptor_message_types(db: Database, rec: Recorder) -> None:
    class OnlyFree(GlobalLogging):
        message_types = (Free,)

    bus = ApiBus(db, 30.0)
    bus.register_service(WorkService(rec))
    bus.add_global_interceptor(OnlyFree(rec, "only-free"))
    assert (await bus.call_by_name("Work", {"key": "k", "label": "w"})).success
    assert "icpt:only-free" not in rec.log
    assert (await bus.call_by_name("Free", {"label": "f"})).success
    assert "icpt:only-free" in rec.log


async def test_refusing_interceptor_stops_the_call(db: Database, rec: Recorder) -> None:
    bus = ApiBus(db, 30.0)
    bus.register_service(WorkService(rec, [Logging(rec, "later")]))
    bus.add_global_interceptor(GlobalLogging(rec, "refuser", refuse=True))
    reply = await bus.call_by_name("Work", {"key": "k"})
    assert reply.error is not None
    assert reply.error.code == "TEST.1"
    assert reply.error.description == "refused by refuser"
    assert rec.log == ["icpt:refuser"]  # neither the later interceptor nor the service ran
    assert rec.calls == []


async def test_interceptor_may_replace_the_message(db: Database, rec: Recorder) -> None:
    class Rewriter(ApiInterceptor):
        async def intercept(self, msg: ApiMessage) -> ApiMessage:
            assert isinstance(msg, Work)
            return Work(key=msg.key, label="rewritten", count=msg.count)

    bus = ApiBus(db, 30.0)
    bus.register_service(WorkService(rec, [Rewriter()]))
    reply = await bus.call_by_name("Work", {"key": "k", "label": "orig"})
    assert reply.inventory is not None and reply.inventory["label"] == "rewritten"


async def test_interceptor_crash_becomes_an_internal_error(db: Database, rec: Recorder) -> None:
    class Crash(ApiInterceptor):
        async def intercept(self, msg: ApiMessage) -> ApiMessage:
            raise KeyError("oops")

    bus = ApiBus(db, 30.0)
    bus.register_service(WorkService(rec, [Crash()]))
    reply = await bus.call_by_name("Work", {"key": "k"})
    assert reply.error is not None and reply.error.code == SysErrors.INTERNAL
    assert "KeyError" in reply.error.description
    assert rec.calls == []


# -- per-resource queues -------------------------------------------------------------


async def test_same_signature_never_overlaps(bus: ApiBus, rec: Recorder) -> None:
    rec.gate("a")
    first = asyncio.create_task(bus.call_by_name("Work", {"key": "vm1", "label": "a"}))
    await wait(rec.event(rec.entered, "a"))
    second = asyncio.create_task(bus.call_by_name("Work", {"key": "vm1", "label": "b"}))
    # let the second call get as far as it can: it must queue behind the first
    for _ in range(20):
        await asyncio.sleep(0)
    assert not rec.event(rec.entered, "b").is_set()
    assert bus._locks.busy() == ["Work-vm1"]
    rec.gates["a"].set()
    replies = await asyncio.gather(first, second)
    assert all(r.success for r in replies)
    assert rec.log == ["start:a", "end:a", "start:b", "end:b"]
    assert rec.max_active["vm1"] == 1
    assert bus._locks.busy() == []  # the queue is dropped once nobody uses it


async def test_many_calls_on_one_resource_run_one_at_a_time(bus: ApiBus, rec: Recorder) -> None:
    replies = await asyncio.gather(
        *(bus.call_by_name("Work", {"key": "vm1", "label": str(i)}) for i in range(10))
    )
    assert all(r.success for r in replies)
    assert rec.max_active["vm1"] == 1
    starts = [e for e in rec.log if e.startswith("start")]
    assert len(starts) == 10
    # strictly alternating start/end: no two calls interleave
    assert all(rec.log[i].split(":")[1] == rec.log[i + 1].split(":")[1] for i in range(0, 20, 2))


async def test_different_signatures_run_concurrently(bus: ApiBus, rec: Recorder) -> None:
    rec.gate("a")
    rec.gate("b")
    first = asyncio.create_task(bus.call_by_name("Work", {"key": "vm1", "label": "a"}))
    second = asyncio.create_task(bus.call_by_name("Work", {"key": "vm2", "label": "b"}))
    free = asyncio.create_task(bus.call_by_name("Free", {"label": "f"}))
    # both handlers are inside at once: each waits for its gate, which nobody opened yet
    await wait(rec.event(rec.entered, "a"))
    await wait(rec.event(rec.entered, "b"))
    await wait(rec.event(rec.entered, "f"))
    assert sorted(bus._locks.busy()) == ["Work-vm1", "Work-vm2"]
    rec.gates["b"].set()
    assert (await second).success
    assert not first.done()
    rec.gates["a"].set()
    assert (await first).success and (await free).success


async def test_timeout_replies_at_once_but_the_operation_goes_on_holding_its_queue(
    bus: ApiBus, rec: Recorder
) -> None:
    rec.gate("slow")
    reply = await bus.call_by_name("Work", {"key": "vm1", "label": "slow"}, timeout=0.05)
    assert not reply.success
    assert reply.error is not None and reply.error.code == SysErrors.TIMEOUT
    assert reply.error.description == "Work timed out after 0.05s"
    assert "goes on in the background" in reply.error.details
    # the operation was not cancelled: it is still inside its handler
    assert rec.event(rec.entered, "slow").is_set()
    assert not rec.event(rec.finished, "slow").is_set()
    assert bus._locks.busy() == ["Work-vm1"]

    nxt = asyncio.create_task(bus.call_by_name("Work", {"key": "vm1", "label": "next"}))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not rec.event(rec.entered, "next").is_set()  # still queued behind the slow one
    other = await bus.call_by_name("Work", {"key": "vm2", "label": "other"})
    assert other.success  # another resource is not blocked

    rec.gates["slow"].set()
    assert (await nxt).success
    assert rec.log.index("end:slow") < rec.log.index("start:next")
    await bus.drain()
    assert rec.event(rec.finished, "slow").is_set()


async def test_message_timeout_and_default_timeout(db: Database, rec: Recorder) -> None:
    class Quick(Work):
        timeout = 0.05

    class QuickService(WorkService):
        service_id = "quick"

        @handles(Quick)
        async def quick(self, msg: Quick) -> dict[str, Any]:
            return await self.work(msg)

    bus = ApiBus(db, default_timeout=30.0)
    bus.register_service(QuickService(rec))
    rec.gate("q")
    reply = await bus.call(Quick(key="k", label="q"))
    assert reply.error is not None and reply.error.description == "Quick timed out after 0.05s"
    rec.gates["q"].set()
    await bus.drain()

    short = ApiBus(db, default_timeout=0.05)
    short.register_service(WorkService(rec))
    rec.gate("d")
    reply = await short.call(Work(key="k", label="d"))
    assert reply.error is not None and reply.error.code == SysErrors.TIMEOUT
    rec.gates["d"].set()
    await short.drain()
    assert rec.event(rec.finished, "d").is_set()


async def test_drain_waits_for_operations_whose_callers_timed_out(
    bus: ApiBus, rec: Recorder
) -> None:
    rec.gate("slow")
    reply = await bus.call_by_name("Work", {"key": "k", "label": "slow"}, timeout=0.01)
    assert reply.error is not None and reply.error.code == SysErrors.TIMEOUT
    drained = asyncio.create_task(bus.drain())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not drained.done()
    rec.gates["slow"].set()
    await asyncio.wait_for(drained, 10)
    assert rec.event(rec.finished, "slow").is_set()


# -- handler failures and results -----------------------------------------------------


async def test_handler_exception_becomes_internal_error_reply(bus: ApiBus) -> None:
    reply = await bus.call_by_name("Boom", {"kind": "runtime"})
    assert not reply.success
    assert reply.error is not None
    assert reply.error.code == SysErrors.INTERNAL
    assert reply.error.description == "unexpected RuntimeError: disk on fire"


async def test_reply_error_keeps_the_cause_chain(bus: ApiBus) -> None:
    reply = await bus.call_by_name("Boom", {"kind": "chain"})
    assert reply.error is not None
    assert [(e.code, e.description) for e in reply.error.causes()] == [
        (SysErrors.OPERATION_ERROR, "create vm failed"),
        ("VM.1003", "cannot start vm on host"),
        ("HOST.1002", "agent unreachable"),
    ]
    assert reply.error.root_cause().details == "connection refused"
    assert reply.to_dict()["error"]["cause"]["cause"]["code"] == "HOST.1002"


async def test_handler_results_become_replies(bus: ApiBus) -> None:
    listed = await bus.call_by_name("Boom", {"kind": "list"})
    assert listed.inventories == [{"a": 1}, {"a": 2}]
    none = await bus.call_by_name("Boom", {"kind": "none"})
    assert none.success and none.inventory is None
    bad = await bus.call_by_name("Boom", {"kind": "badtype"})
    assert bad.error is not None and bad.error.code == SysErrors.INTERNAL
    assert "handler returned int" in bad.error.description


async def test_handler_may_return_an_api_reply(db: Database) -> None:
    class Custom(ApiMessage):
        pass

    class CustomService(Service):
        service_id = "custom"

        @handles(Custom)
        async def custom(self, msg: Custom) -> ApiReply:
            return ApiReply(inventory={"x": 1}, total=7)

    bus = ApiBus(db, 30.0)
    bus.register_service(CustomService())
    reply = await bus.call(Custom())
    assert reply.inventory == {"x": 1} and reply.total == 7


# -- registration ----------------------------------------------------------------------


def test_messages_lists_every_api_sorted(db: Database, rec: Recorder) -> None:
    bus = ApiBus(db, 30.0)
    bus.register_service(WorkService(rec))
    assert list(bus.messages()) == ["Boom", "Free", "OnZone", "Work"]
    assert bus.service_of(Work).service_id == "work"


def test_duplicate_message_declaration_is_refused(db: Database, rec: Recorder) -> None:
    class Thief(Service):
        service_id = "thief"

        @handles(Work)
        async def steal(self, msg: Work) -> None:
            pass

    bus = ApiBus(db, 30.0)
    bus.register_service(WorkService(rec))
    with pytest.raises(ValueError, match="Work is declared by both service work and service thief"):
        bus.register_service(Thief())


def test_service_without_id_is_refused(db: Database) -> None:
    class Anonymous(Service):
        pass

    with pytest.raises(ValueError, match="has no service_id"):
        ApiBus(db, 30.0).register_service(Anonymous())


# -- through a real node ----------------------------------------------------------------


class Ping(ApiMessage):
    """Answer pong."""

    word: str = param(default="pong", regex="[a-z]+")


class PingPlugin(Plugin, Service):
    implements = (Service,)
    service_id = "ping"
    seen: ClassVar[list[str]] = []

    @handles(Ping)
    async def ping(self, msg: Ping) -> dict[str, Any]:
        self.seen.append(msg.word)
        return {"word": msg.word}


class PingAgainPlugin(Plugin, Service):
    implements = (Service,)
    service_id = "pingAgain"

    @handles(Ping)
    async def ping(self, msg: Ping) -> None:
        pass


class GuardPlugin(Plugin, GlobalApiInterceptor):
    implements = (GlobalApiInterceptor,)
    message_types = (Ping,)

    async def intercept(self, msg: ApiMessage) -> ApiMessage:
        assert isinstance(msg, Ping)
        if msg.word == "forbidden":
            raise argerr("the word is forbidden")
        return msg


async def test_plugin_services_and_global_interceptors_in_a_node(props: Properties) -> None:
    PingPlugin.seen.clear()
    node = make_node(props, {"ping": PingPlugin, "guard": GuardPlugin})
    async with node:
        assert "Ping" in node.bus.messages()  # type: ignore[union-attr]
        assert "UpdateGlobalConfig" in node.bus.messages()  # type: ignore[union-attr]
        reply = await node.call("Ping", {"word": "hello"})
        assert reply.inventory == {"word": "hello"}
        bad = await node.call("Ping", {"word": "Hello"})
        assert bad.error is not None and "must match [a-z]+" in bad.error.description
        refused = await node.call("Ping", {"word": "forbidden"})
        assert refused.error is not None
        assert refused.error.description == "the word is forbidden"
        assert PingPlugin.seen == ["hello"]


async def test_duplicate_message_across_plugins_stops_the_node(props: Properties) -> None:
    node = make_node(props, {"ping": PingPlugin, "pingAgain": PingAgainPlugin})
    with pytest.raises(
        PluginError, match="Ping is declared by both service ping and service pingAgain"
    ):
        await node.start()
    # the failed start released the data dir
    async with make_node(props) as again:
        assert again.running


async def test_errors_helpers() -> None:
    err = operr("outer", "d", cause=ErrorCode("X.1", "inner")).error
    assert err.code == SysErrors.OPERATION_ERROR and err.cause is not None
    assert err.with_location("flow 1/2").location == "flow 1/2"
    assert err.with_location("flow 1/2").cause == err.cause

"""Tests of the flow engine (core.kernel.flow): ZStack's FlowChain semantics."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.kernel import flow as flow_mod
from core.kernel.errors import ErrorCode, OperationError, SysErrors, operr
from core.kernel.events import EventBus
from core.kernel.flow import (
    FLOW_TRACE_PATH,
    Flow,
    FlowChain,
    FlowChainBuilder,
    FlowChainStartEvent,
    FlowChainStatus,
    FlowConfigError,
    FlowOutcome,
    FlowTraceEvent,
    NoRollbackFlow,
    StepState,
)
from core.kernel.operation import current_operation

HERE = "tests.core.kernel.test_flow"


# --------------------------------------------------------------------------
# Test flows
# --------------------------------------------------------------------------


class Step(Flow):
    """A flow that logs its calls into a shared list and fails on demand."""

    def __init__(
        self,
        label: str,
        log: list[tuple[str, str]],
        *,
        fail: bool | BaseException = False,
        rollback_fail: bool = False,
        skip: bool = False,
    ) -> None:
        self.name = label  # type: ignore[misc]
        self.log = log
        self.fail = fail
        self.rollback_fail = rollback_fail
        self.skipped = skip

    def skip(self, data: dict[str, Any]) -> bool:
        return self.skipped

    async def run(self, data: dict[str, Any]) -> None:
        self.log.append(("run", self.name))
        data.setdefault("ran", []).append(self.name)
        if isinstance(self.fail, BaseException):
            raise self.fail
        if self.fail:
            raise operr(f"{self.name} failed", "on purpose")

    async def rollback(self, data: dict[str, Any]) -> None:
        self.log.append(("rollback", self.name))
        if self.rollback_fail:
            raise RuntimeError(f"cannot undo {self.name}")


def _append(data: dict[str, Any], entry: str) -> None:
    data.setdefault("log", []).append(entry)


class _Recording(Flow):
    """Module-level flows for FlowChainBuilder: all per-run state lives in data."""

    async def run(self, data: dict[str, Any]) -> None:
        _append(data, f"run:{type(self).__name__}")
        await asyncio.sleep(0)  # let concurrent runs interleave
        if data.get("fail_at") == type(self).__name__:
            raise operr(f"{type(self).__name__} failed")

    async def rollback(self, data: dict[str, Any]) -> None:
        _append(data, f"rollback:{type(self).__name__}")
        await asyncio.sleep(0)


class AllocateHost(_Recording):
    pass


class AllocateVolume(_Recording):
    pass


class AllocateNic(_Recording):
    pass


class CreateOnHypervisor(_Recording):
    pass


class PluginExtraFlow(_Recording):
    name = "plugin-extra"


class SetsAttributeFlow(NoRollbackFlow):
    async def run(self, data: dict[str, Any]) -> None:
        self.last_data = data  # per-run state on a shared instance: forbidden


class NeedsArgsFlow(NoRollbackFlow):
    def __init__(self, host: str) -> None:
        self.host = host

    async def run(self, data: dict[str, Any]) -> None:
        pass


class AbstractOnlyFlow(Flow):
    async def run(self, data: dict[str, Any]) -> None:
        pass


class NotAFlow:
    pass


class ConfiguredFlow(NoRollbackFlow):
    """Sets configuration in __init__ (allowed: the builder freezes it afterwards)."""

    def __init__(self) -> None:
        self.retries = 3

    async def run(self, data: dict[str, Any]) -> None:
        data["retries"] = self.retries


def steps(log: list[tuple[str, str]], *labels: str, **options: Any) -> list[Step]:
    return [Step(label, log, **options) for label in labels]


def trace(bus: EventBus) -> list[FlowTraceEvent]:
    seen: list[FlowTraceEvent] = []
    bus.subscribe(FLOW_TRACE_PATH, lambda ev: seen.append(ev.data))
    return seen


# --------------------------------------------------------------------------
# Running and rolling back
# --------------------------------------------------------------------------


async def test_flows_run_in_order_over_one_shared_dict() -> None:
    log: list[tuple[str, str]] = []
    data: dict[str, Any] = {"input": 1}
    outcome = await FlowChain("c", steps(log, "a", "b", "c")).start(data)

    assert log == [("run", "a"), ("run", "b"), ("run", "c")]
    assert outcome.data is data
    assert data["ran"] == ["a", "b", "c"]
    assert outcome.succeeded
    assert outcome.status is FlowChainStatus.SUCCEEDED
    assert outcome.error is None
    assert [s.state for s in outcome.steps] == [StepState.SUCCESS] * 3
    assert [s.index for s in outcome.steps] == [1, 2, 3]
    assert all(s.duration is not None and s.duration >= 0 for s in outcome.steps)
    assert all(s.started_at is not None for s in outcome.steps)
    outcome.raise_for_error()  # no-op on success


async def test_failing_flow_rolled_back_first_then_completed_in_reverse() -> None:
    log: list[tuple[str, str]] = []
    flows = [*steps(log, "a", "b"), Step("c", log, fail=True), Step("d", log)]
    errors: list[ErrorCode] = []
    chain = FlowChain("create-vm", flows).error(lambda err, data: errors.append(err))
    outcome = await chain.start()

    assert log == [
        ("run", "a"),
        ("run", "b"),
        ("run", "c"),
        ("rollback", "c"),
        ("rollback", "b"),
        ("rollback", "a"),
    ]
    assert outcome.status is FlowChainStatus.ROLLED_BACK
    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.code == SysErrors.OPERATION_ERROR
    assert outcome.error.description == "c failed"
    assert outcome.error.location == "create-vm: c (3/4)"
    assert errors == [outcome.error]
    assert [s.state for s in outcome.steps] == [
        StepState.REVERTED,
        StepState.REVERTED,
        StepState.REVERTED,
        StepState.PENDING,
    ]
    assert outcome.steps[2].error == outcome.error
    assert outcome.rollback_errors == []
    with pytest.raises(OperationError) as info:
        outcome.raise_for_error()
    assert info.value.error == outcome.error


async def test_unexpected_exception_becomes_internal_error() -> None:
    log: list[tuple[str, str]] = []
    outcome = await FlowChain("c", [Step("a", log, fail=KeyError("k"))]).start()
    assert outcome.error is not None
    assert outcome.error.code == SysErrors.INTERNAL
    assert "KeyError" in outcome.error.description
    assert outcome.error.location == "c: a (1/1)"


async def test_rollback_error_is_recorded_and_unwinding_goes_on() -> None:
    log: list[tuple[str, str]] = []
    flows = [Step("a", log), Step("b", log, rollback_fail=True), Step("c", log, fail=True)]
    outcome = await FlowChain("c", flows).start()

    # b's rollback raised, and a was still rolled back (ZStack, unlike TaskFlow).
    assert log == [
        ("run", "a"),
        ("run", "b"),
        ("run", "c"),
        ("rollback", "c"),
        ("rollback", "b"),
        ("rollback", "a"),
    ]
    assert outcome.status is FlowChainStatus.ROLLBACK_FAILED
    assert [s.state for s in outcome.steps] == [
        StepState.REVERTED,
        StepState.REVERT_FAILURE,
        StepState.REVERTED,
    ]
    b = outcome.steps[1]
    assert b.error is not None and b.error.code == SysErrors.INTERNAL
    assert "cannot undo b" in b.error.description
    assert outcome.rollback_errors == [("b", b.error)]

    with pytest.raises(OperationError) as info:
        outcome.raise_for_error()
    err = info.value.error
    assert err.code == SysErrors.ROLLBACK_FAILED == "SYS.1010"
    assert "1 rollback(s) failed" in err.description
    assert "left behind" in err.description
    assert "b" in err.description
    assert err.cause == outcome.error
    assert err.cause is not None and err.cause.description == "c failed"


async def test_skipped_flow_is_neither_run_nor_rolled_back() -> None:
    log: list[tuple[str, str]] = []
    flows = [Step("a", log), Step("b", log, skip=True), Step("c", log, fail=True)]
    outcome = await FlowChain("c", flows).start()
    assert log == [("run", "a"), ("run", "c"), ("rollback", "c"), ("rollback", "a")]
    assert [s.state for s in outcome.steps] == [
        StepState.REVERTED,
        StepState.SKIPPED,
        StepState.REVERTED,
    ]


async def test_no_rollback_rolls_nothing_back() -> None:
    log: list[tuple[str, str]] = []
    errors: list[ErrorCode] = []
    chain = (
        FlowChain("c", [Step("a", log), Step("b", log, fail=True)])
        .no_rollback()
        .error(lambda e, d: errors.append(e))
    )
    outcome = await chain.start()
    assert log == [("run", "a"), ("run", "b")]
    assert outcome.status is FlowChainStatus.FAILED
    assert len(errors) == 1


async def test_no_rollback_flow_rollback_does_nothing() -> None:
    class Once(NoRollbackFlow):
        async def run(self, data: dict[str, Any]) -> None:
            data["ran"] = True

    flow = Once()
    await flow.rollback({})
    outcome = await FlowChain("c", [flow, Step("x", [], fail=True)]).start()
    assert outcome.status is FlowChainStatus.ROLLED_BACK
    assert outcome.steps[0].name == "Once"  # default name: the class name


async def test_empty_chain_succeeds() -> None:
    calls: list[str] = []
    outcome = await (
        FlowChain("empty")
        .done(lambda d: calls.append("done"))
        .error(lambda e, d: calls.append("error"))
        .finally_(lambda: calls.append("finally"))
        .start()
    )
    assert outcome.succeeded
    assert outcome.steps == []
    assert calls == ["done", "finally"]


# --------------------------------------------------------------------------
# Handlers, building rules
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fails", [False, True])
async def test_handlers_called_exactly_once(fails: bool) -> None:
    calls: list[str] = []

    async def on_done(data: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        calls.append("done")

    def on_error(err: ErrorCode, data: dict[str, Any]) -> None:
        calls.append("error")

    async def on_finally() -> None:
        calls.append("finally")

    flows = [Step("a", []), Step("b", [], fail=fails)]
    chain = FlowChain("c", flows).done(on_done).error(on_error).finally_(on_finally)
    await chain.start()
    assert calls == (["error", "finally"] if fails else ["done", "finally"])


@pytest.mark.parametrize("fails", [False, True])
async def test_raising_handlers_are_swallowed_and_still_called_once(
    fails: bool, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def on_done(data: dict[str, Any]) -> None:
        calls.append("done")
        raise RuntimeError("done handler bug")

    async def on_error(err: ErrorCode, data: dict[str, Any]) -> None:
        calls.append("error")
        raise RuntimeError("error handler bug")

    def on_finally() -> None:
        calls.append("finally")
        raise RuntimeError("finally handler bug")

    flows = [Step("a", [], fail=fails)]
    chain = FlowChain("c", flows).done(on_done).error(on_error).finally_(on_finally)
    outcome = await chain.start()  # does not raise
    assert outcome.succeeded is not fails
    assert calls == (["error", "finally"] if fails else ["done", "finally"])
    assert "handler failed" in caplog.text


@pytest.mark.parametrize(
    "setter",
    [
        lambda c: c.done(lambda d: None),
        lambda c: c.error(lambda e, d: None),
        lambda c: c.finally_(lambda: None),
    ],
)
def test_handler_set_twice_raises(setter: Any) -> None:
    chain = FlowChain("c")
    setter(chain)
    with pytest.raises(RuntimeError, match="already set"):
        setter(chain)


async def test_start_twice_raises() -> None:
    chain = FlowChain("c", [Step("a", [])])
    await chain.start()
    with pytest.raises(RuntimeError, match="already"):
        await chain.start()
    with pytest.raises(RuntimeError):
        chain.then(Step("b", []))


async def test_then_and_insert_build_the_order() -> None:
    log: list[tuple[str, str]] = []
    a, b, c, d = steps(log, "a", "b", "c", "d")
    chain = FlowChain("c", [b]).then(d).insert(0, a).insert(2, c)
    assert chain.flows == (a, b, c, d)
    await chain.start()
    assert [label for _, label in log] == ["a", "b", "c", "d"]


def test_steps_must_be_flows() -> None:
    with pytest.raises(TypeError):
        FlowChain("c").then(NotAFlow())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FlowChain("c", [NotAFlow()])  # type: ignore[list-item]


def test_chain_id_format() -> None:
    ids = {FlowChain("c").id for _ in range(50)}
    assert all(re.fullmatch(r"FCID_[0-9a-f]{8}", i) for i in ids)
    assert len(ids) > 1


# --------------------------------------------------------------------------
# Nesting
# --------------------------------------------------------------------------


async def test_nested_failure_rolls_back_inner_then_outer() -> None:
    log: list[tuple[str, str]] = []
    inner = FlowChain("inner", [*steps(log, "i1", "i2"), Step("i3", log, fail=True)])
    outer = FlowChain("outer", [Step("o1", log), inner, Step("o3", log)])
    outcome = await outer.start()

    assert log == [
        ("run", "o1"),
        ("run", "i1"),
        ("run", "i2"),
        ("run", "i3"),
        ("rollback", "i3"),
        ("rollback", "i2"),
        ("rollback", "i1"),
        # inner.rollback() is a no-op: it already rolled itself back
        ("rollback", "o1"),
    ]
    assert outcome.status is FlowChainStatus.ROLLED_BACK
    err = outcome.error
    assert err is not None
    assert err.code == SysErrors.OPERATION_ERROR
    assert err.description == "flow chain inner failed"
    assert err.location == "outer: inner (2/3)"
    assert err.cause is not None
    assert err.cause.description == "i3 failed"
    assert err.cause.location == "inner: i3 (3/3)"
    assert inner.outcome is not None
    assert inner.outcome.status is FlowChainStatus.ROLLED_BACK
    assert inner.parent_id == outer.id
    assert outcome.steps[1].state is StepState.REVERTED
    assert outcome.data["ran"] == ["o1", "i1", "i2", "i3"]  # one dict for both chains


async def test_inner_success_then_outer_failure_rolls_back_inner_in_reverse() -> None:
    log: list[tuple[str, str]] = []
    inner = FlowChain("inner", [*steps(log, "i1"), Step("i2", log, skip=True), Step("i3", log)])
    outer = FlowChain("outer", [Step("o1", log), inner, Step("o3", log, fail=True)])
    outcome = await outer.start()

    assert log == [
        ("run", "o1"),
        ("run", "i1"),
        ("run", "i3"),
        ("run", "o3"),
        ("rollback", "o3"),
        ("rollback", "i3"),
        ("rollback", "i1"),
        ("rollback", "o1"),
    ]
    assert outcome.status is FlowChainStatus.ROLLED_BACK
    assert inner.outcome is not None
    assert inner.outcome.status is FlowChainStatus.ROLLED_BACK
    assert [s.state for s in inner.outcome.steps] == [
        StepState.REVERTED,
        StepState.SKIPPED,
        StepState.REVERTED,
    ]


async def test_inner_rollback_failure_is_a_revert_failure_of_the_outer_step() -> None:
    log: list[tuple[str, str]] = []
    inner = FlowChain("inner", [Step("i1", log), Step("i2", log, rollback_fail=True)])
    outer = FlowChain("outer", [Step("o1", log), inner, Step("o3", log, fail=True)])
    outcome = await outer.start()

    assert log[-4:] == [
        ("rollback", "o3"),
        ("rollback", "i2"),
        ("rollback", "i1"),  # the inner keeps unwinding past i2
        ("rollback", "o1"),  # and so does the outer past the inner
    ]
    assert outcome.status is FlowChainStatus.ROLLBACK_FAILED
    assert outcome.steps[1].state is StepState.REVERT_FAILURE
    [(name, err)] = outcome.rollback_errors
    assert name == "inner"
    assert err.code == SysErrors.ROLLBACK_FAILED
    assert inner.outcome is not None
    assert inner.outcome.status is FlowChainStatus.ROLLBACK_FAILED


async def test_nested_by_convention_inherits_parent_and_events() -> None:
    bus = EventBus()
    seen = trace(bus)
    log: list[tuple[str, str]] = []
    inner_ids: list[str] = []

    class Outer(Flow):
        async def run(self, data: dict[str, Any]) -> None:
            inner = FlowChain("sub", steps(log, "s1", "s2"))  # no bus given
            inner_ids.append(inner.id)
            await inner.run(data)

        async def rollback(self, data: dict[str, Any]) -> None:
            pass

    outer = FlowChain("main", [Outer()], events=bus)
    outcome = await outer.start()
    assert outcome.succeeded
    assert log == [("run", "s1"), ("run", "s2")]
    sub_events = [e for e in seen if e.chain_name == "sub"]
    assert sub_events, "the inner chain inherited the outer's bus"
    assert {e.chain_id for e in sub_events} == set(inner_ids)
    assert {e.parent_chain_id for e in sub_events} == {outer.id}
    assert {e.parent_chain_id for e in seen if e.chain_name == "main"} == {None}
    assert flow_mod.current_chain() is None  # reset after the run


async def test_nested_run_over_failure_raises_operation_error() -> None:
    chain = FlowChain("sub", [Step("a", [], fail=True)])
    with pytest.raises(OperationError) as info:
        await chain.run({})
    assert info.value.error.code == SysErrors.OPERATION_ERROR
    assert info.value.error.cause is not None
    assert info.value.error.cause.description == "a failed"
    await chain.rollback({})  # no-op: already rolled back


# --------------------------------------------------------------------------
# Cancellation
# --------------------------------------------------------------------------


async def test_cancellation_rolls_back_calls_handlers_and_reraises() -> None:
    log: list[str] = []
    running = asyncio.Event()
    rollback_started = asyncio.Event()
    errors: list[ErrorCode] = []
    finals: list[str] = []

    class Hang(Flow):
        async def run(self, data: dict[str, Any]) -> None:
            log.append("run:hang")
            running.set()
            await asyncio.Event().wait()

        async def rollback(self, data: dict[str, Any]) -> None:
            log.append("rollback:hang")

    class SlowUndo(Flow):
        async def run(self, data: dict[str, Any]) -> None:
            log.append("run:slow")

        async def rollback(self, data: dict[str, Any]) -> None:
            rollback_started.set()
            for _ in range(5):
                await asyncio.sleep(0.001)
            log.append("rollback:slow done")

    class First(Flow):
        async def run(self, data: dict[str, Any]) -> None:
            log.append("run:first")

        async def rollback(self, data: dict[str, Any]) -> None:
            log.append("rollback:first")

    chain = (
        FlowChain("c", [First(), SlowUndo(), Hang()])
        .error(lambda e, d: errors.append(e))
        .finally_(lambda: finals.append("finally"))
    )
    task = asyncio.create_task(chain.start())
    await running.wait()
    task.cancel()
    await rollback_started.wait()
    task.cancel()  # a second cancel while rolling back must not interrupt the rollback
    with pytest.raises(asyncio.CancelledError):
        await task

    assert log == [
        "run:first",
        "run:slow",
        "run:hang",
        "rollback:hang",
        "rollback:slow done",
        "rollback:first",
    ]
    assert chain.outcome is not None
    assert chain.outcome.status is FlowChainStatus.ROLLED_BACK
    assert len(errors) == 1
    assert errors[0].code == SysErrors.TIMEOUT
    assert errors[0].description == "cancelled"
    assert errors[0].location == "c: Hang (3/3)"
    assert finals == ["finally"]


async def test_cancellation_inside_nested_chain_unwinds_both() -> None:
    log: list[tuple[str, str]] = []
    running = asyncio.Event()

    class Hang(NoRollbackFlow):
        async def run(self, data: dict[str, Any]) -> None:
            running.set()
            await asyncio.Event().wait()

    inner = FlowChain("inner", [Step("i1", log), Hang()])
    outer = FlowChain("outer", [Step("o1", log), inner])
    task = asyncio.create_task(outer.start())
    await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == [("run", "o1"), ("run", "i1"), ("rollback", "i1"), ("rollback", "o1")]


async def test_cancellation_under_timeout_becomes_timeout_error() -> None:
    log: list[tuple[str, str]] = []

    class Slow(NoRollbackFlow):
        async def run(self, data: dict[str, Any]) -> None:
            await asyncio.sleep(10)

    chain = FlowChain("c", [Step("a", log), Slow()])
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await chain.start()
    assert log == [("run", "a"), ("rollback", "a")]


# --------------------------------------------------------------------------
# FlowChainBuilder
# --------------------------------------------------------------------------

CREATE_VM = [
    f"{HERE}.AllocateHost",
    f"{HERE}.AllocateVolume",
    f"{HERE}.AllocateNic",
    f"{HERE}.CreateOnHypervisor",
]


async def test_builder_from_dotted_paths() -> None:
    builder = FlowChainBuilder("create-vm", CREATE_VM)
    assert builder.name == "create-vm"
    assert builder.flow_paths == tuple(CREATE_VM)
    assert [type(f) for f in builder.flows] == [
        AllocateHost,
        AllocateVolume,
        AllocateNic,
        CreateOnHypervisor,
    ]
    chain = builder.build()
    assert chain.name == "create-vm"
    outcome = await chain.start()
    assert outcome.data["log"] == [
        "run:AllocateHost",
        "run:AllocateVolume",
        "run:AllocateNic",
        "run:CreateOnHypervisor",
    ]
    # every build shares the same instances
    assert builder.build().flows == chain.flows


async def test_builder_with_a_plugin_flow_inserted_in_the_config_list() -> None:
    config = list(CREATE_VM)
    config.insert(2, f"{HERE}.PluginExtraFlow")  # a plugin adds its flow to the chain
    builder = FlowChainBuilder("create-vm", config)
    outcome = await builder.build().start({"fail_at": "CreateOnHypervisor"})
    assert outcome.data["log"] == [
        "run:AllocateHost",
        "run:AllocateVolume",
        "run:PluginExtraFlow",
        "run:AllocateNic",
        "run:CreateOnHypervisor",
        "rollback:CreateOnHypervisor",
        "rollback:AllocateNic",
        "rollback:PluginExtraFlow",
        "rollback:AllocateVolume",
        "rollback:AllocateHost",
    ]
    assert outcome.steps[2].name == "plugin-extra"
    assert outcome.error is not None
    assert outcome.error.location == "create-vm: CreateOnHypervisor (5/5)"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("no_such_package.module.Flow", "cannot be imported"),
        (f"{HERE}.NoSuchClass", "cannot be imported"),
        (f"{HERE}.NotAFlow", "is not a Flow subclass"),
        (f"{HERE}.steps", "is not a Flow subclass"),
        (f"{HERE}.NeedsArgsFlow", "cannot be instantiated"),
        (f"{HERE}.AbstractOnlyFlow", "cannot be instantiated"),
        ("core.kernel.flow.FlowChain", "per-run"),
        ("NoDots", "dotted path"),
    ],
)
def test_builder_rejects_bad_paths(path: str, reason: str) -> None:
    with pytest.raises(FlowConfigError) as info:
        FlowChainBuilder("create-vm", [f"{HERE}.AllocateHost", path])
    message = str(info.value)
    assert "create-vm" in message
    assert path in message
    assert reason in message
    assert isinstance(info.value, ValueError)


def test_builder_rejects_a_string_instead_of_a_list() -> None:
    with pytest.raises(FlowConfigError):
        FlowChainBuilder("c", f"{HERE}.AllocateHost")


async def test_shared_flows_are_frozen() -> None:
    builder = FlowChainBuilder("create-vm", [*CREATE_VM, f"{HERE}.ConfiguredFlow"])
    host = builder.flows[0]
    with pytest.raises(TypeError, match=r"shared by every run of chain 'create-vm'.*data"):
        host.current_vm = "vm-1"  # type: ignore[attr-defined]
    configured = builder.flows[-1]
    with pytest.raises(TypeError):
        del configured.retries  # type: ignore[attr-defined]
    outcome = await builder.build().start()
    assert outcome.data["retries"] == 3  # set in __init__, before freezing

    # Flows not built by a builder stay mutable.
    free = AllocateHost()
    free.note = "ok"  # type: ignore[attr-defined]


async def test_a_shared_flow_keeping_per_run_state_fails_its_run() -> None:
    builder = FlowChainBuilder("c", [f"{HERE}.SetsAttributeFlow"])
    outcome = await builder.build().start()
    assert outcome.error is not None
    assert outcome.error.code == SysErrors.INTERNAL
    assert "per-run state" in outcome.error.description


async def test_concurrent_runs_of_one_builder_do_not_interfere() -> None:
    builder = FlowChainBuilder("create-vm", CREATE_VM)
    ok, failed = await asyncio.gather(
        builder.build().start({"vm": "ok"}),
        builder.build().start({"vm": "bad", "fail_at": "AllocateNic"}),
    )
    assert ok.succeeded
    assert ok.data["vm"] == "ok"
    assert ok.data["log"] == [f"run:{p.rsplit('.', 1)[1]}" for p in CREATE_VM]
    assert failed.status is FlowChainStatus.ROLLED_BACK
    assert failed.data["vm"] == "bad"
    assert failed.data["log"] == [
        "run:AllocateHost",
        "run:AllocateVolume",
        "run:AllocateNic",
        "rollback:AllocateNic",
        "rollback:AllocateVolume",
        "rollback:AllocateHost",
    ]
    assert ok.chain_id != failed.chain_id


# --------------------------------------------------------------------------
# Trace events
# --------------------------------------------------------------------------


async def test_trace_events_of_a_successful_chain() -> None:
    bus = EventBus()
    seen = trace(bus)
    chain = FlowChain("c", [Step("a", []), Step("b", [], skip=True), Step("c", [])], events=bus)
    await chain.start()

    assert [(e.kind, e.step, e.index) for e in seen] == [
        ("chain-start", None, None),
        ("step-start", "a", 1),
        ("step-done", "a", 1),
        ("step-skipped", "b", 2),
        ("step-start", "c", 3),
        ("step-done", "c", 3),
        ("chain-done", None, None),
    ]
    assert {e.chain_id for e in seen} == {chain.id}
    assert {e.chain_name for e in seen} == {"c"}
    assert {e.total for e in seen} == {3}
    assert {e.parent_chain_id for e in seen} == {None}
    for e in seen:
        if e.kind in ("step-done", "chain-done"):
            assert e.duration is not None and e.duration >= 0
    assert [e.at for e in seen] == sorted(e.at for e in seen)
    start = seen[0]
    assert isinstance(start, FlowChainStartEvent)
    assert start.steps == ("a", "b", "c")  # chain-start lists what is to come
    assert {type(e) for e in seen[1:]} == {FlowTraceEvent}
    assert {e.operation_id for e in seen} == {None}  # no operation: background work
    assert seen[-1].state == FlowChainStatus.SUCCEEDED == "SUCCEEDED"
    assert seen[2].state == "SUCCESS"
    assert seen[-1].error is None


async def test_trace_events_of_a_failure_with_a_broken_rollback() -> None:
    bus = EventBus()
    seen = trace(bus)
    flows = [Step("a", []), Step("b", [], rollback_fail=True), Step("c", [], fail=True)]
    await FlowChain("c", flows, events=bus).start()

    assert [(e.kind, e.index) for e in seen] == [
        ("chain-start", None),
        ("step-start", 1),
        ("step-done", 1),
        ("step-start", 2),
        ("step-done", 2),
        ("step-start", 3),
        ("step-failed", 3),
        ("rollback-start", None),
        ("step-reverted", 3),
        ("step-revert-failed", 2),
        ("step-reverted", 1),
        ("chain-done", None),
    ]
    by_kind = {e.kind: e for e in seen}
    failed = by_kind["step-failed"]
    assert failed.error is not None and failed.error.description == "c failed"
    assert failed.state == "FAILURE"
    revert_failed = by_kind["step-revert-failed"]
    assert revert_failed.state == "REVERT_FAILURE"
    assert revert_failed.error is not None and "cannot undo b" in revert_failed.error.description
    assert by_kind["rollback-start"].error == failed.error  # what the unwinding is for
    assert by_kind["step-reverted"].state == "REVERTED"
    done = seen[-1]
    assert done.state == "ROLLBACK_FAILED"
    assert done.error is not None and done.error.description == "c failed"
    assert all(e.duration is None or e.duration >= 0 for e in seen)


async def test_trace_events_of_nested_chains_carry_the_parent_id() -> None:
    bus = EventBus()
    seen = trace(bus)
    inner = FlowChain("inner", [Step("i1", [])])
    outer = FlowChain("outer", [Step("o1", []), inner], events=bus)
    await outer.start()

    inner_events = [e for e in seen if e.chain_id == inner.id]
    assert [e.kind for e in inner_events] == [
        "chain-start",
        "step-start",
        "step-done",
        "chain-done",
    ]
    assert {e.parent_chain_id for e in inner_events} == {outer.id}
    assert {e.chain_name for e in inner_events} == {"inner"}
    # the inner chain's events sit between the outer step's start and done
    kinds = [(e.chain_name, e.kind, e.step) for e in seen]
    start = kinds.index(("outer", "step-start", "inner"))
    done = kinds.index(("outer", "step-done", "inner"))
    assert start < kinds.index(("inner", "chain-start", None)) < done


async def test_trace_events_carry_the_operation_read_at_chain_start() -> None:
    bus = EventBus()
    seen = trace(bus)
    inner = FlowChain("inner", [Step("i1", [])])
    outer = FlowChain("outer", [Step("o1", []), inner, Step("o2", [], fail=True)], events=bus)
    token = current_operation.set("a" * 32)
    try:
        await outer.start()
    finally:
        current_operation.reset(token)
    assert outer.operation_id == inner.operation_id == "a" * 32
    assert {e.operation_id for e in seen} == {"a" * 32}  # reverts and nested chains too
    assert "step-reverted" in {e.kind for e in seen}


@pytest.mark.parametrize("bus_kind", ["none", "no-subscriber", "other-subscriber"])
async def test_no_trace_events_are_built_without_subscribers(
    bus_kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a FlowTraceEvent was built with nobody listening")

    monkeypatch.setattr(flow_mod, "FlowTraceEvent", explode)
    bus: EventBus | None = None
    if bus_kind != "none":
        bus = EventBus()
        if bus_kind == "other-subscriber":
            bus.subscribe("/vm/state/change", lambda ev: None)
    inner = FlowChain("inner", [Step("i1", [], rollback_fail=True)])
    flows = [Step("a", []), Step("b", [], skip=True), inner, Step("c", [], fail=True)]
    outcome = await FlowChain("c", flows, events=bus).start()
    assert outcome.status is FlowChainStatus.ROLLBACK_FAILED


# --------------------------------------------------------------------------
# Property: run 1..k then rollback k..1, skipped flows untouched
# --------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_property_run_then_reverse_rollback(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=0, max_value=10), label="n")
    fail_at = (
        data.draw(st.none() | st.integers(min_value=1, max_value=n), label="fail_at") if n else None
    )
    candidates = [i for i in range(1, n + 1) if i != fail_at]
    skipped = data.draw(
        st.sets(st.sampled_from(candidates)) if candidates else st.just(set()), label="skipped"
    )
    broken_rollbacks = data.draw(
        st.sets(st.sampled_from(range(1, n + 1))) if n else st.just(set()), label="broken"
    )

    log: list[tuple[str, str]] = []
    flows = [
        Step(
            str(i),
            log,
            fail=(i == fail_at),
            skip=(i in skipped),
            rollback_fail=(i in broken_rollbacks),
        )
        for i in range(1, n + 1)
    ]
    outcome: FlowOutcome = asyncio.run(FlowChain("p", flows).start())

    last = fail_at if fail_at is not None else n
    ran = [i for i in range(1, last + 1) if i not in skipped]
    expected = [("run", str(i)) for i in ran]
    if fail_at is not None:
        expected += [("rollback", str(i)) for i in reversed(ran)]
    assert log == expected

    if fail_at is None:
        assert outcome.status is FlowChainStatus.SUCCEEDED
    elif broken_rollbacks & set(ran):
        assert outcome.status is FlowChainStatus.ROLLBACK_FAILED
        assert [name for name, _ in outcome.rollback_errors] == [
            str(i) for i in reversed(ran) if i in broken_rollbacks
        ]
    else:
        assert outcome.status is FlowChainStatus.ROLLED_BACK


def test_fast_trace_event_constructor_builds_the_same_frozen_event() -> None:
    args = ("step-done", "c", "FCID_0000abcd", None, "a", 1, 3, 1.5, 0.25, "SUCCESS", None)
    fast = flow_mod._new_trace_event(*args)
    assert type(fast) is FlowTraceEvent
    assert fast == FlowTraceEvent(*args)
    assert fast.operation_id is None
    full = (*args, "f" * 32)
    assert flow_mod._new_trace_event(*full) == FlowTraceEvent(*full)
    assert hash(flow_mod._new_trace_event(*full)) == hash(FlowTraceEvent(*full))
    with pytest.raises(AttributeError):
        fast.kind = "other"  # type: ignore[misc]


class _Undoable(Flow):
    async def run(self, data: dict[str, Any]) -> None:
        return None

    async def rollback(self, data: dict[str, Any]) -> None:
        raise RuntimeError("could not undo")


class _Fails(NoRollbackFlow):
    async def run(self, data: dict[str, Any]) -> None:
        raise operr("boom")


async def test_raise_for_error_with_a_description_keeps_a_rollback_failure() -> None:
    outcome = await FlowChain("op", [_Undoable(), _Fails()]).start({})
    with pytest.raises(OperationError) as raised:
        outcome.raise_for_error("cannot start VM web1")
    error = raised.value.error
    assert (error.code, error.description) == (SysErrors.OPERATION_ERROR, "cannot start VM web1")
    assert error.cause is not None and error.cause.code == SysErrors.ROLLBACK_FAILED
    assert error.root_cause().description == "boom"

    clean = await FlowChain("op", [_Fails()]).start({})
    with pytest.raises(OperationError) as raised:
        clean.raise_for_error("cannot start VM web1")
    assert raised.value.error.cause is not None
    assert raised.value.error.cause.description == "boom"

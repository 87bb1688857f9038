"""Events as clients see them: one JSON conversion, bounded queues with an overflow notice."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import pytest

from contracts.events import GlobalConfigUpdated
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.event_json import OVERFLOW_PATH, EventQueue, NodeEvent, to_json
from core.kernel.events import EventBus
from core.kernel.flow import FlowChainStartEvent, FlowChainStatus, FlowTraceEvent


class Color(StrEnum):
    RED = "red"


@dataclass
class Inner:
    some_value: int
    when: datetime


def test_dataclasses_become_camel_case_dicts_and_error_codes_their_dict() -> None:
    error = ErrorCode(SysErrors.OPERATION_ERROR, "outer", cause=ErrorCode("X.1", "inner"))
    event = FlowTraceEvent(
        "chain-done", "c", "FCID_1", None, None, None, 2, 1.5, 0.25,
        FlowChainStatus.ROLLED_BACK, error, "a" * 32,
    )  # fmt: skip
    assert to_json(event) == {
        "kind": "chain-done",
        "chainName": "c",
        "chainId": "FCID_1",
        "parentChainId": None,
        "step": None,
        "index": None,
        "total": 2,
        "at": 1.5,
        "duration": 0.25,
        "state": "ROLLED_BACK",
        "error": error.to_dict(),
        "operationId": "a" * 32,
    }
    assert type(to_json(event)["state"]) is str
    start = FlowChainStartEvent(
        "chain-start", "c", "FCID_1", None, None, None, 2, 1.0, None, None, None, None,
        ("a", "b"),
    )  # fmt: skip
    assert to_json(start)["steps"] == ["a", "b"]
    assert to_json(
        GlobalConfigUpdated(category="kvm", name="reservedMemory", old_value="1G", new_value="2G")
    ) == {
        "category": "kvm",
        "name": "reservedMemory",
        "oldValue": "1G",
        "newValue": "2G",
    }


def test_everything_else_becomes_plain_json() -> None:
    value = {
        "enum": Color.RED,
        "tuple": (1, 2.5, None),
        "set": {"b", "a"},
        "nested": [Inner(3, datetime(2026, 1, 2, 3, 4, 5))],
        "path": Path("/x/y"),
        "nan": float("nan"),
        "bytes": b"ok",
        7: "int key",
        "object": object,
    }
    out = to_json(value)
    assert out == {
        "enum": "red",
        "tuple": [1, 2.5, None],
        "set": ["a", "b"],
        "nested": [{"someValue": 3, "when": "2026-01-02T03:04:05"}],
        "path": "/x/y",
        "nan": None,
        "bytes": "ok",
        "7": "int key",
        "object": "<class 'object'>",
    }
    assert json.loads(json.dumps(out)) == out  # survives the socket unchanged
    plain = {"a": [1, "x", True, None, 2.5]}
    assert to_json(plain) == plain


async def test_a_queue_converts_at_publish_so_later_changes_never_show() -> None:
    bus = EventBus()
    queue = EventQueue(bus, ["/vm/state/change"])
    data = {"vmUuid": "v", "inventory": {"state": "Running"}}
    bus.publish("/vm/state/change", data)
    data["inventory"]["state"] = "Stopped"
    bus.publish("/vm/other", {"ignored": True})
    assert await queue.get() == NodeEvent(
        "/vm/state/change", {"vmUuid": "v", "inventory": {"state": "Running"}}
    )
    assert queue.get_nowait() is None


async def test_patterns_with_tokens_and_an_event_matching_two_patterns_once() -> None:
    bus = EventBus()
    queue = EventQueue(
        bus, ["/globalConfig/update/{category}/{name}", "/globalConfig/update/kvm/{name}"]
    )
    bus.publish("/globalConfig/update/kvm/reservedMemory", 1)
    bus.publish("/globalConfig/update/vm/deletionPolicy", 2)
    bus.publish("/globalConfig/update/kvm", 3)  # one segment short: no match
    got = [queue.get_nowait(), queue.get_nowait(), queue.get_nowait()]
    assert got == [
        NodeEvent("/globalConfig/update/kvm/reservedMemory", 1),
        NodeEvent("/globalConfig/update/vm/deletionPolicy", 2),
        None,
    ]


async def test_overflow_drops_the_oldest_and_says_so_first() -> None:
    bus = EventBus()
    queue = EventQueue(bus, ["/n"], maxsize=3)
    for i in range(5):
        bus.publish("/n", i)
    assert queue.dropped == 2
    assert queue.ready() == 4
    assert await queue.get() == NodeEvent(OVERFLOW_PATH, {"dropped": 2, "totalDropped": 2})
    assert [(await queue.get()).data for _ in range(3)] == [2, 3, 4]  # type: ignore[union-attr]
    for i in range(5, 9):
        bus.publish("/n", i)
    assert await queue.get() == NodeEvent(OVERFLOW_PATH, {"dropped": 1, "totalDropped": 3})
    assert [e.data async for e in _take(queue, 3)] == [6, 7, 8]


async def _take(queue: EventQueue, n: int):  # type: ignore[no-untyped-def]
    for _ in range(n):
        yield await queue.__anext__()


async def test_end_delivers_what_is_queued_and_close_drops_it() -> None:
    bus = EventBus()
    ended: list[EventQueue] = []
    queue = EventQueue(bus, ["/n"], on_end=ended.append)
    bus.publish("/n", 1)
    queue.end()
    bus.publish("/n", 2)  # unsubscribed
    assert [e.data async for e in queue] == [1]
    assert ended == [queue] and queue.ended
    assert not bus.has_subscribers("/n")

    closing = EventQueue(bus, ["/n"])
    bus.publish("/n", 1)
    reader = asyncio.create_task(anext(closing, None))
    await asyncio.sleep(0)
    assert (await reader) == NodeEvent("/n", 1)
    waiting = asyncio.create_task(anext(closing, None))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await closing.close()
    assert await asyncio.wait_for(waiting, 5) is None  # a waiting reader sees the end


async def test_bad_patterns_are_argument_errors() -> None:
    bus = EventBus()
    for patterns in ([], ["no-slash"]):
        with pytest.raises(OperationError) as info:
            EventQueue(bus, patterns)
        assert info.value.error.code == SysErrors.INVALID_ARGUMENT
    assert not bus.has_subscribers("/n")


async def test_events_published_from_another_thread_reach_the_loop() -> None:
    bus = EventBus()
    queue = EventQueue(bus, ["/n"])
    thread = threading.Thread(target=bus.publish, args=("/n", {"from": "thread"}))
    thread.start()
    thread.join()
    assert await asyncio.wait_for(queue.get(), 5) == NodeEvent("/n", {"from": "thread"})

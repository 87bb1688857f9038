"""Canonical events: path patterns with {tokens}, isolation of subscribers, async callbacks."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from core.kernel.events import CanonicalEvent, EventBus


def collect(bus: EventBus, pattern: str) -> list[CanonicalEvent]:
    got: list[CanonicalEvent] = []
    bus.subscribe(pattern, got.append)
    return got


def test_literal_path() -> None:
    bus = EventBus()
    got = collect(bus, "/vm/state/change")
    bus.publish("/vm/state/change", {"state": "Running"})
    bus.publish("/vm/state/other", 1)
    assert [(e.path, e.data, e.tokens) for e in got] == [
        ("/vm/state/change", {"state": "Running"}, {})
    ]


def test_token_patterns_give_tokens() -> None:
    bus = EventBus()
    got = collect(bus, "/globalConfig/update/{category}/{name}")
    bus.publish("/globalConfig/update/kvm/reservedMemory", "x")
    bus.publish("/globalConfig/update/vm/deletionPolicy", "y")
    assert [(e.tokens, e.data) for e in got] == [
        ({"category": "kvm", "name": "reservedMemory"}, "x"),
        ({"category": "vm", "name": "deletionPolicy"}, "y"),
    ]


def test_token_matches_exactly_one_segment() -> None:
    bus = EventBus()
    got = collect(bus, "/vm/{uuid}/state")
    for path in ("/vm/state", "/vm/a/b/state", "/vm/a/state/x", "/host/a/state", "/vm/a/status"):
        bus.publish(path)
    assert got == []
    bus.publish("/vm/abc/state")
    assert [e.tokens for e in got] == [{"uuid": "abc"}]


def test_non_matching_lengths_are_not_delivered() -> None:
    bus = EventBus()
    short = collect(bus, "/a/{x}")
    long = collect(bus, "/a/{x}/{y}")
    bus.publish("/a/1")
    bus.publish("/a/1/2")
    bus.publish("/a/1/2/3")
    bus.publish("/a")
    assert [e.path for e in short] == ["/a/1"]
    assert [e.tokens for e in long] == [{"x": "1", "y": "2"}]


def test_pattern_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        EventBus().subscribe("vm/state", lambda e: None)


def test_malformed_token_is_a_literal() -> None:
    bus = EventBus()
    got = collect(bus, "/a/{1bad}")
    bus.publish("/a/anything")
    assert got == []
    bus.publish("/a/{1bad}")
    assert len(got) == 1 and got[0].tokens == {}


def test_subscribers_run_in_subscription_order() -> None:
    bus = EventBus()
    order: list[str] = []
    bus.subscribe("/x/{any}", lambda e: order.append("pattern"))
    bus.subscribe("/x/y", lambda e: order.append("literal"))
    bus.subscribe("/x/{other}", lambda e: order.append("pattern2"))
    bus.publish("/x/y")
    assert order == ["pattern", "literal", "pattern2"]


def test_unsubscribe() -> None:
    bus = EventBus()
    got: list[CanonicalEvent] = []
    sub = bus.subscribe("/a/{x}", got.append)
    kept = collect(bus, "/a/{x}")
    bus.publish("/a/1")  # fills the route cache
    sub.cancel()
    bus.publish("/a/1")
    bus.publish("/a/2")
    assert [e.path for e in got] == ["/a/1"]
    assert [e.path for e in kept] == ["/a/1", "/a/1", "/a/2"]
    sub.cancel()  # twice is harmless


def test_subscribe_after_a_publish_is_seen() -> None:
    bus = EventBus()
    assert not bus.has_subscribers("/a/1")
    bus.publish("/a/1")  # caches "nobody listens"
    got = collect(bus, "/a/{x}")
    assert bus.has_subscribers("/a/1")
    bus.publish("/a/1")
    assert len(got) == 1


def test_raising_subscriber_does_not_disturb_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    before = collect(bus, "/a")

    def broken(_e: CanonicalEvent) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe("/a", broken)
    after = collect(bus, "/a")
    with caplog.at_level(logging.ERROR, logger="core.kernel.events"):
        bus.publish("/a", 1)  # does not raise
        bus.publish("/a", 2)
    assert [e.data for e in before] == [1, 2]
    assert [e.data for e in after] == [1, 2]
    assert "subscriber /a of /a failed" in caplog.text
    assert "subscriber bug" in caplog.text


async def test_async_subscriber_is_scheduled() -> None:
    bus = EventBus()
    done = asyncio.Event()
    seen: list[dict[str, str]] = []

    async def on_event(event: CanonicalEvent) -> None:
        await asyncio.sleep(0)
        seen.append(event.tokens)
        done.set()

    bus.subscribe("/host/{uuid}/ping", on_event)
    bus.publish("/host/h1/ping")
    assert seen == []  # scheduled, not run inside publish
    await asyncio.wait_for(done.wait(), 5)
    assert seen == [{"uuid": "h1"}]


async def test_raising_async_subscriber_is_logged_and_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    finished = asyncio.Event()

    async def broken(_e: CanonicalEvent) -> None:
        raise RuntimeError("async bug")

    async def fine(_e: CanonicalEvent) -> None:
        finished.set()

    bus.subscribe("/a", broken)
    bus.subscribe("/a", fine)
    with caplog.at_level(logging.ERROR, logger="core.kernel.events"):
        bus.publish("/a")
        await asyncio.wait_for(finished.wait(), 5)
        for _ in range(5):
            await asyncio.sleep(0)
    assert "async subscriber of /a failed" in caplog.text


def test_async_subscriber_without_a_loop_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    ran: list[int] = []
    made: list[Coroutine[Any, Any, None]] = []

    async def on_event(_e: CanonicalEvent) -> None:
        ran.append(1)

    def subscriber(event: CanonicalEvent) -> Coroutine[Any, Any, None]:
        made.append(on_event(event))
        return made[-1]

    bus.subscribe("/a", subscriber)
    with caplog.at_level(logging.ERROR, logger="core.kernel.events"):
        bus.publish("/a")
    assert ran == []
    assert "dropped: no running event loop" in caplog.text
    # closed, so it is not reported as "never awaited" when collected
    assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED

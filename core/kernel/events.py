"""Canonical events: path-addressed publish/subscribe inside the management node.

Paths look like ``/vm/state/change`` or ``/globalConfig/update/kvm/reservedMemory``.
A subscription pattern may hold ``{token}`` segments, each matching exactly one
path segment; the matched values reach the subscriber as ``event.tokens``.

Callbacks run synchronously, in subscription order, on the publisher's thread.
A callback that returns an awaitable has it scheduled as a task on the running
loop.  A callback that raises is logged and never disturbs the publisher or the
other subscribers.  Publishing to a path nobody listens to costs one dict lookup.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(slots=True)
class CanonicalEvent:
    """One published event; subscribers must treat it as read-only (it is shared)."""

    path: str
    data: Any
    tokens: dict[str, str] = field(default_factory=dict)


EventCallback = Callable[[CanonicalEvent], Any]


class _Pattern:
    """One subscription pattern, split into literal and ``{token}`` segments."""

    __slots__ = ("parts", "text", "tokens")

    def __init__(self, text: str) -> None:
        if not text.startswith("/"):
            raise ValueError(f"event path pattern must start with '/': {text!r}")
        self.text = text
        self.parts = text.strip("/").split("/")
        self.tokens = [(_TOKEN.match(p).group(1) if _TOKEN.match(p) else None) for p in self.parts]

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.parts):
            return None
        found: dict[str, str] = {}
        for part, token, seg in zip(self.parts, self.tokens, segments, strict=True):
            if token is not None:
                found[token] = seg
            elif part != seg:
                return None
        return found


class Subscription:
    __slots__ = ("_bus", "callback", "pattern")

    def __init__(self, bus: EventBus, pattern: _Pattern, callback: EventCallback) -> None:
        self._bus = bus
        self.pattern = pattern
        self.callback = callback

    def cancel(self) -> None:
        self._bus._remove(self)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        # path -> [(subscription, tokens)], rebuilt lazily after (un)subscribe.
        self._routes: dict[str, list[tuple[Subscription, dict[str, str]]]] = {}

    def subscribe(self, pattern: str, callback: EventCallback) -> Subscription:
        sub = Subscription(self, _Pattern(pattern), callback)
        with self._lock:
            self._subs.append(sub)
            self._routes = {}
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
                self._routes = {}

    def has_subscribers(self, path: str) -> bool:
        return bool(self._route(path))

    def _route(self, path: str) -> list[tuple[Subscription, dict[str, str]]]:
        routes = self._routes
        hit = routes.get(path)
        if hit is None:
            segments = path.strip("/").split("/")
            with self._lock:
                hit = [
                    (s, tokens)
                    for s in self._subs
                    if (tokens := s.pattern.match(segments)) is not None
                ]
                if len(routes) < 4096:  # bounded: paths carrying uuids are unbounded
                    routes[path] = hit
        return hit

    def publish(self, path: str, data: Any = None) -> None:
        route = self._route(path)
        if not route:
            return
        for sub, tokens in route:
            try:
                result = sub.callback(CanonicalEvent(path, data, tokens))
                if result is not None and inspect.isawaitable(result):
                    _schedule(result, path)
            except Exception:
                log.exception("subscriber %s of %s failed", sub.pattern.text, path)


def _schedule(awaitable: Any, path: str) -> None:
    async def guarded() -> None:
        try:
            await awaitable
        except Exception:
            log.exception("async subscriber of %s failed", path)

    coro = guarded()
    try:
        task = asyncio.get_running_loop().create_task(coro)
    except RuntimeError:
        coro.close()  # never run: close both, or Python warns they were never awaited
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        log.error("async subscriber of %s dropped: no running event loop", path)
        return
    _background.add(task)  # keep a reference until done, or the task may be collected
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()

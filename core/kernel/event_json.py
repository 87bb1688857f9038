"""Canonical events as clients see them: JSON-able data in a bounded queue.

A UI gets the node's events either in-process or over the node's socket; both
go through :class:`EventQueue`, which converts each event's data with
:func:`to_json` when it is published, so both kinds of client see the same dicts
(and a publisher's later changes to its objects never show in queued events).

A queue holds at most ``maxsize`` events: when its reader falls behind, the
oldest are dropped and the reader next gets a synthetic event at
:data:`OVERFLOW_PATH` (``{"dropped": n, "totalDropped": total}``): events were
lost there, so refresh what you show.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import PurePath
from typing import Any, Self

from contracts.base import Wire
from core.kernel.db import camel
from core.kernel.errors import argerr
from core.kernel.events import CanonicalEvent, EventBus, Subscription

OVERFLOW_PATH = "/client/overflow"
DEFAULT_MAX_QUEUED = 10_000

_PLAIN = frozenset({str, int, bool, type(None)})


@dataclasses.dataclass(frozen=True, slots=True)
class NodeEvent:
    """One canonical event as a client gets it."""

    path: str
    data: Any
    """JSON-able: dicts with string keys, lists, str, int, float, bool, None."""


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data, the one conversion of event data for clients.

    Dataclasses (e.g. ``FlowTraceEvent``) become dicts with camelCase keys; a contract's
    model (``contracts.base.Wire``) its ``to_json()``; objects with ``to_dict()``
    (``ErrorCode``) its result; enums their value; datetimes ISO
    strings; tuples and sets lists; non-finite floats None; anything else its str().
    """
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, Mapping):
        return {_key(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [to_json(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, Wire):  # a contract's model (contracts.events): its JSON
        return value.to_json()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_json(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {camel(f.name): to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, str):  # subclasses of the plain types
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return to_json(float.__float__(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def _key(key: Any) -> str:
    if type(key) is str:
        return key
    if isinstance(key, enum.Enum):
        return str(key.value)
    return str(key)


class _Patterns:
    """Which of several patterns is the first to match a path (so an event matching two
    patterns of one queue is queued once)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._parts = [p.strip("/").split("/") for p in patterns]
        self._first: dict[str, int] = {}

    def first_match(self, path: str) -> int:
        hit = self._first.get(path)
        if hit is None:
            segments = path.strip("/").split("/")
            hit = next((i for i, parts in enumerate(self._parts) if _matches(parts, segments)), -1)
            if len(self._first) < 4096:
                self._first[path] = hit
        return hit


def _matches(parts: list[str], segments: list[str]) -> bool:
    return len(parts) == len(segments) and all(
        part == seg or (part.startswith("{") and part.endswith("}"))
        for part, seg in zip(parts, segments, strict=True)
    )


class EventQueue:
    """One client's subscription to an EventBus: a bounded queue of :class:`NodeEvent`.

    Iterate it (``async for event in queue``) or call :meth:`get`.  :meth:`end`
    (the node stops) lets the reader take what is queued, then ends the iteration;
    :meth:`close` (the reader is done) drops what is queued and ends it at once.
    Must be made on the event loop that reads it; events published from other
    threads are handed over to that loop.
    """

    def __init__(
        self,
        bus: EventBus,
        patterns: Sequence[str],
        *,
        maxsize: int = DEFAULT_MAX_QUEUED,
        on_end: Callable[[EventQueue], None] | None = None,
    ) -> None:
        patterns = [patterns] if isinstance(patterns, str) else list(dict.fromkeys(patterns))
        if not patterns:
            raise argerr("subscribe to at least one event path pattern")
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.patterns = patterns
        self.maxsize = maxsize
        self.dropped = 0
        """Events dropped so far because the reader fell behind."""
        self._loop = asyncio.get_running_loop()
        self._items: deque[NodeEvent] = deque()
        self._unreported = 0
        self._wake = asyncio.Event()
        self._ended = False
        self._on_end = on_end
        self._subs: list[Subscription] = []
        many = _Patterns(patterns) if len(patterns) > 1 else None
        try:
            for i, pattern in enumerate(patterns):
                self._subs.append(bus.subscribe(pattern, self._callback(i, many)))
        except ValueError as exc:
            self._unsubscribe()
            raise argerr(str(exc)) from None

    def _callback(self, index: int, many: _Patterns | None) -> Callable[[CanonicalEvent], None]:
        def on_event(event: CanonicalEvent) -> None:
            if many is not None and many.first_match(event.path) != index:
                return
            item = NodeEvent(event.path, to_json(event.data))
            try:
                same_loop = asyncio.get_running_loop() is self._loop
            except RuntimeError:
                same_loop = False
            if same_loop:
                self._push(item)
            else:
                self._loop.call_soon_threadsafe(self._push, item)

        return on_event

    def _push(self, item: NodeEvent) -> None:
        if self._ended:
            return
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
            self._unreported += 1
        self._items.append(item)
        self._wake.set()

    @property
    def ended(self) -> bool:
        return self._ended

    def ready(self) -> int:
        """How many events :meth:`get_nowait` can give now."""
        return len(self._items) + (1 if self._unreported else 0)

    def get_nowait(self) -> NodeEvent | None:
        """The next event if one is queued, else None."""
        if self._unreported:
            dropped, self._unreported = self._unreported, 0
            return NodeEvent(OVERFLOW_PATH, {"dropped": dropped, "totalDropped": self.dropped})
        if self._items:
            return self._items.popleft()
        return None

    async def get(self) -> NodeEvent | None:
        """The next event; None once the queue has ended and is empty."""
        while True:
            item = self.get_nowait()
            if item is not None or self._ended:
                return item
            self._wake.clear()
            await self._wake.wait()

    def end(self) -> None:
        """Take no more events; the reader still gets those already queued."""
        if self._ended:
            return
        self._ended = True
        self._unsubscribe()
        self._wake.set()
        if self._on_end is not None:
            self._on_end(self)

    async def close(self) -> None:
        """Unsubscribe and drop what is queued: the iteration ends at once."""
        self.end()
        self._items.clear()
        self._unreported = 0

    def _unsubscribe(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs.clear()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> NodeEvent:
        item = await self.get()
        if item is None:
            raise StopAsyncIteration
        return item

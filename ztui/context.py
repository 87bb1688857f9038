"""What the views, dialogs and widgets of ztui share, instead of the app itself.

The app makes one :class:`ZtuiContext` and exposes it as ``app.context``; a screen
or dialog reaches it with :func:`context_of` (``context_of(self.app)``), so nothing
under ``ztui`` but ``ztui/app.py`` imports the app, as Textual's own widgets never
know the App subclass they run in.  What a screen asks of the app proper (switch
mode, push a screen, run an action) goes through Textual's ``App`` API.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from textual.message import Message
from textual.screen import Screen

from ztui.formatting import Formatter
from ztui.messages import NodeEvent, OperationUpdated
from ztui.operations import OperationTracker
from ztui.session import NodeSession
from ztui.views import DEFAULT_MODE, VIEWS, View

RECENT_EVENTS = 200
"""How many recent events the dashboard keeps."""


@dataclass(frozen=True)
class RecentEvent:
    """One line of the dashboard's recent events."""

    at: datetime
    path: str
    data: Any


def _recent_events() -> deque[RecentEvent]:
    return deque(maxlen=RECENT_EVENTS)


@dataclass(eq=False)
class ZtuiContext:
    """The link to the node and the state every view shares, and the open views that
    get the node's events."""

    session: NodeSession
    formatter: Formatter
    read_only: bool = False
    """Started with ``--read-only``: every action that changes something is disabled."""
    views: tuple[View, ...] = VIEWS
    operations: OperationTracker = field(default_factory=OperationTracker)
    recent_events: deque[RecentEvent] = field(default_factory=_recent_events)
    connected: bool = False
    """Whether the session reached the node (views query it only then)."""
    trace_shown: bool = True
    """Whether views show the flow-chain panel of the followed operation."""
    previous_mode: str = DEFAULT_MODE
    """The view shown before the current one (Esc on the help goes back to it)."""
    open_views: list[Screen[Any]] = field(default_factory=list)
    """The mounted views: each gets the node's events."""

    def register_view(self, screen: Screen[Any]) -> None:
        """A view is mounted: it gets events from now on."""
        if screen not in self.open_views:
            self.open_views.append(screen)

    def unregister_view(self, screen: Screen[Any]) -> None:
        with suppress(ValueError):
            self.open_views.remove(screen)

    def broadcast(self, message: Callable[[], Message]) -> None:
        """Post a new message made by ``message`` to every open view."""
        for screen in list(self.open_views):
            screen.post_message(message())

    def dispatch_event(self, path: str, data: Any) -> None:
        """Give one event to every open view (operations through the tracker first)."""
        if path == "/operation/update" and isinstance(data, dict):
            self.operations.update(data)
            self.broadcast(lambda: OperationUpdated(data))
            return
        self.recent_events.append(RecentEvent(datetime.now(), path, data))
        self.broadcast(lambda: NodeEvent(path, data))


def context_of(app: object) -> ZtuiContext:
    """The context of the ztui app ``app`` (a screen passes ``self.app``)."""
    context = getattr(app, "context", None)
    if not isinstance(context, ZtuiContext):
        raise TypeError(f"{type(app).__name__} has no ztui context")
    return context

"""The node's recent canonical events, newest first, one readable line each:
``12:04:31  VM web1  Starting → Running``.

After a restart of ztui the events start from the node's operations log: its latest
finished operations come in as ``OPERATION`` entries (``op StopVmInstance web1
Succeeded``).

Only the lines that fit are built, when the widget is drawn, so a burst of
thousands of events costs one redraw per frame, not one per event.  Of an
image's download progress only the newest report is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ztui.context import RecentEvent
from ztui.formatting import STATE_STYLES, Formatter
from ztui.widgets.flow_chain_panel import status_style

PROGRESS = "/image/download/progress"
OPERATION = "ztui/operation-log"
"""Not an event: a finished operation from the operations log (its record as data)."""
CONFIG_PREFIX = "/globalConfig/update/"
NO_EVENTS = "no events yet: VM, host, router, image and config changes show here"
ARROW = " → "


def _name(
    data: Mapping[str, Any], uuid_field: str, names: Mapping[str, str], fmt: Formatter
) -> str:
    """The resource's name from the event's inventory, else from ``names``, else its uuid."""
    inventory = data.get("inventory")
    if isinstance(inventory, Mapping) and inventory.get("name"):
        return str(inventory["name"])
    uuid = data.get(uuid_field)
    if uuid is not None and str(uuid) in names:
        return names[str(uuid)]
    return fmt.volatile(uuid, "uuid")


def _change(kind: str, name: str, old: Any, new: Any, fmt: Formatter) -> Text:
    line = Text.assemble((f"{kind} ", "dim"), (name, "bold"), "  ")
    if old:
        line.append_text(fmt.state(old))
        line.append(ARROW)
    line.append_text(fmt.state(new))
    return line


def _progress(data: Mapping[str, Any], names: Mapping[str, str], fmt: Formatter) -> Text:
    name = _name(data, "imageUuid", names, fmt)
    stage = fmt.text(data.get("stage")) or "downloading"
    done, total = data.get("progress"), data.get("total")
    line = Text.assemble(("image ", "dim"), (name, "bold"), "  ", (stage, "yellow"))
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        line.append(f" {min(100, done * 100 // total)}% ({fmt.size(done)}/{fmt.size(total)})")
    elif isinstance(done, int) and done > 0:
        line.append(f" {fmt.size(done)}")
    return line


def _operation(record: Mapping[str, Any], names: Mapping[str, str], fmt: Formatter) -> Text:
    """``op StopVmInstance web1  Succeeded`` (and a failure's reason)."""
    api = record.get("apiName") or record.get("name") or "operation"
    params = record.get("params")
    name = params.get("name") if isinstance(params, Mapping) else None
    resource = record.get("resourceUuid")
    if not name and resource:
        name = names.get(str(resource))
    status = str(record.get("status") or "")
    line = Text.assemble(("op ", "dim"), (str(api), "bold"))
    if name:
        line.append(f" {name}")
    line.append("  ")
    line.append(status, style=status_style(status))
    error = record.get("error")
    if isinstance(error, Mapping) and error.get("description"):
        line.append(f": {error['description']}")
    return line


def describe_event(path: str, data: Any, names: Mapping[str, str], fmt: Formatter) -> Text:
    """One line that says what an event means (the path itself for an unknown one)."""
    d: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    if path == "/vm/state/change":
        name = _name(d, "vmUuid", names, fmt)
        return _change("VM", name, d.get("oldState"), d.get("newState"), fmt)
    if path == "/vm/deleted":
        return Text.assemble(("VM ", "dim"), (_name(d, "vmUuid", names, fmt), "bold"), "  deleted")
    if path == "/host/status/change":
        name = _name(d, "hostUuid", names, fmt)
        return _change("host", name, d.get("oldStatus"), d.get("newStatus"), fmt)
    if path == "/appliance-vm/status/change":
        name = _name(d, "applianceVmUuid", names, fmt)
        return _change("router", name, d.get("oldStatus"), d.get("newStatus"), fmt)
    if path == "/appliance-vm/repaired":
        name = _name(d, "applianceVmUuid", names, fmt)
        repaired = d.get("repaired")
        what = "; ".join(map(str, repaired)) if isinstance(repaired, list) else fmt.text(repaired)
        return Text.assemble(
            ("router ", "dim"), (name, "bold"), ("  repaired", "yellow"), f": {what}"
        )
    if path == PROGRESS:
        return _progress(d, names, fmt)
    if path.startswith(CONFIG_PREFIX):
        key = ".".join(path.removeprefix(CONFIG_PREFIX).split("/", 1))
        return Text.assemble(
            ("config ", "dim"),
            (key, "bold"),
            f"  {fmt.text(d.get('oldValue'))}{ARROW}{fmt.text(d.get('newValue'))}",
        )
    if path == OPERATION:
        return _operation(d, names, fmt)
    if path == "/client/overflow":
        return Text(
            f"{fmt.text(d.get('dropped'))} events dropped: the views reloaded",
            style=STATE_STYLES["Unknown"],
        )
    return Text(path, style="dim")


def newest_first(events: Iterable[RecentEvent]) -> list[RecentEvent]:
    """Newest first, keeping only the newest progress report of each image."""
    shown: list[RecentEvent] = []
    images: set[str] = set()
    for event in reversed(list(events)):
        if event.path == PROGRESS and isinstance(event.data, Mapping):
            image = str(event.data.get("imageUuid"))
            if image in images:
                continue
            images.add(image)
        shown.append(event)
    return shown


class EventLog(Widget):
    """The app's ``recent_events``, newest on top, as many as fit."""

    DEFAULT_CSS = """
    EventLog {
        height: 1fr;
        min-height: 3;
        padding: 0 1;
        border-top: solid $primary;
        border-title-color: $text;
        border-title-style: bold;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    events: reactive[tuple[RecentEvent, ...]] = reactive((), always_update=True)
    """The events to show, oldest first (as the app's deque holds them)."""

    def __init__(self, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fmt = fmt
        self.names: dict[str, str] = {}
        """uuid -> name, for events that carry no inventory (deleted VMs, image progress)."""
        self.border_title = "Recent events"

    def time(self, at: datetime) -> str:
        return self._fmt.volatile(at.strftime("%H:%M:%S"), "time")

    def lines(self, limit: int | None = None) -> list[Text]:
        shown = newest_first(self.events)
        if not shown:
            return [Text(NO_EVENTS, style="dim")]
        return [
            Text.assemble(
                (self.time(event.at), "dim"),
                "  ",
                describe_event(event.path, event.data, self.names, self._fmt),
            )
            for event in shown[:limit]
        ]

    def render(self) -> Text:
        return Text("\n").join(self.lines(max(1, self.content_size.height)))

    @property
    def text(self) -> str:
        """Every line, newest first, as plain text (for tests)."""
        return "\n".join(line.plain for line in self.lines())

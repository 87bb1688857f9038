"""The operations log: every API call that changed something, and the node's own
background work, newest first, live from ``/operation/update``.

Below the table, the selected operation in full: its parameters, its flow
chains step by step with timings, failures and rollbacks, and its error's
cause chain.  ``/`` searches the rows and the errors' full text (so an error
code finds the operations that failed with it); Enter makes the selected
operation the one the flow-chain panel of the other views follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input

from ztui.columns import Column
from ztui.formatting import Formatter
from ztui.screens.base import ResourceScreen
from ztui.widgets.flow_chain_panel import (
    error_text,
    failed_step,
    operation_title,
    status_style,
)
from ztui.widgets.operation_detail import OperationDetail
from ztui.widgets.resource_table import ResourceTable
from ztui.widgets.searchable_table import SearchableTable

Record = dict[str, Any]
Row = dict[str, Any]
LOAD_LIMIT = 500
"""Finished operations fetched at load (the newest; ``QueryOperationLog`` has them all)."""
KEEP_ROWS = 1000
"""Rows kept as live operations come in (the oldest go first)."""
SEARCH_FIELD = "searchText"
SHORT_UUID = 8


# -- cells ----------------------------------------------------------------------------


class Sortable(str):
    """A shown cell that sorts by the value behind it (a full timestamp, seconds), not
    by its text (``14:03:27``, ``12ms``, or masked)."""

    sort_value: str | float

    def __new__(cls, shown: str, sort_value: str | float) -> Sortable:
        cell = super().__new__(cls, shown)
        cell.sort_value = sort_value
        return cell


def sort_key(cell: str | Text) -> tuple[int, float, str]:
    """Numbers first by amount, then text (a Sortable by its value)."""
    value = getattr(cell, "sort_value", str(cell))
    if isinstance(value, int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def when(value: Any, fmt: Formatter, now: datetime | None = None) -> str:
    """A start time in local time: ``14:03:27`` today, ``03-14 09:12`` before."""
    if fmt.mask_volatile or not isinstance(value, str):
        return fmt.date(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # the core stores UTC
    local = parsed.astimezone()
    today = (now or datetime.now(UTC)).astimezone().date()
    return local.strftime("%H:%M:%S" if local.date() == today else "%m-%d %H:%M")


@dataclass(frozen=True)
class WhenColumn(Column):
    def cell(self, row: Mapping[str, Any], fmt: Formatter) -> str | Text:
        value = row.get(self.field)
        return Sortable(when(value, fmt), str(value or ""))

    def sort_key(self, cell: str | Text) -> tuple[int, float, str]:
        return sort_key(cell)


@dataclass(frozen=True)
class OperationColumn(Column):
    """The API's name, or the background chain's name (dimmed); ``↳`` marks an
    operation another one started."""

    def cell(self, row: Mapping[str, Any], fmt: Formatter) -> str | Text:
        nested = "↳ " if row.get("parentUuid") else ""  # called by another operation
        if row.get("apiName"):
            return Text(nested + str(row["apiName"]))
        return Text(nested + str(row.get("name") or "background"), style="dim italic")


@dataclass(frozen=True)
class ResourceColumn(Column):
    """The resource's name when known, else the start of its uuid."""

    def cell(self, row: Mapping[str, Any], fmt: Formatter) -> str | Text:
        if row.get(self.field):
            return Text(str(row[self.field]))
        uuid = row.get("resourceUuid")
        return fmt.volatile(str(uuid)[:SHORT_UUID], "uuid") if uuid else ""


@dataclass(frozen=True)
class StatusColumn(Column):
    def cell(self, row: Mapping[str, Any], fmt: Formatter) -> str | Text:
        status = fmt.text(row.get(self.field))
        return Text(status, style=status_style(status))


@dataclass(frozen=True)
class DurationColumn(Column):
    def cell(self, row: Mapping[str, Any], fmt: Formatter) -> str | Text:
        value = row.get(self.field)
        if not isinstance(value, int | float):
            return Sortable("", "")  # still running
        return Sortable(fmt.duration(value), float(value))

    def sort_key(self, cell: str | Text) -> tuple[int, float, str]:
        return sort_key(cell)


@dataclass(frozen=True)
class FailedStepColumn(Column):
    def cell(self, row: Mapping[str, Any], fmt: Formatter) -> str | Text:
        return Text(fmt.text(row.get(self.field)), style="red")


OPERATION_COLUMNS: tuple[Column, ...] = (
    WhenColumn("createDate", "when"),
    OperationColumn("apiName", "operation"),
    ResourceColumn("resourceName", "resource"),
    StatusColumn("status", "status"),
    FailedStepColumn("failedStep", "failed at"),
    DurationColumn("duration", "took"),
)


# -- rows -----------------------------------------------------------------------------


def is_finished(record: Mapping[str, Any]) -> bool:
    return record.get("status") not in (None, "Running")


def search_text(record: Mapping[str, Any]) -> str:
    """What ``/`` matches beyond the shown cells: the full text of the operation's error
    and of its steps' errors, its parameters, its uuids."""
    parts = [error_text(record.get("error"))]
    for chain in record.get("chains") or []:
        for step in chain.get("steps") or []:
            if step.get("error"):
                parts.append(error_text(step["error"]))
    params = record.get("params")
    if isinstance(params, Mapping):
        parts += [f"{name}={value}" for name, value in params.items()]
    parts += [str(record.get("uuid") or ""), str(record.get("resourceUuid") or "")]
    return "\n".join(p for p in parts if p)


def operation_row(record: Mapping[str, Any], names: Mapping[str, str]) -> Row:
    """A record with what the table shows beside it: resource name, failed step, and
    the hidden search text."""
    params = record.get("params")
    name = params.get("name") if isinstance(params, Mapping) else None
    resource = record.get("resourceUuid")
    return {
        **record,
        "resourceName": str(name) if name else names.get(str(resource), "") if resource else "",
        "failedStep": failed_step(record),
        SEARCH_FIELD: search_text(record),
    }


def merge(
    finished: Iterable[Record], running: Iterable[Record], live: Iterable[Record]
) -> dict[str, Record]:
    """One record per operation: the log's, the running ones', and what events brought.

    An operation may finish between the queries, or its last event may still be on
    its way: a finished record always wins over a running one; otherwise the newest
    source (events) wins.
    """
    merged: dict[str, Record] = {}
    for source in (finished, running, live):
        for record in source:
            uuid = str(record.get("uuid"))
            known = merged.get(uuid)
            if known is None or not is_finished(known) or is_finished(record):
                merged[uuid] = record
    return merged


def as_records(found: Any) -> list[Record]:
    """An API answer (a list, or one inventory) as a list of records."""
    if isinstance(found, list):
        return [r for r in found if isinstance(r, dict)]
    if isinstance(found, dict):
        return [found]
    return []


# -- the view -------------------------------------------------------------------------


class OperationsScreen(ResourceScreen):
    VIEW = "ops"
    COLUMNS = OPERATION_COLUMNS

    DEFAULT_CSS = """
    OperationsScreen FlowChainPanel.-shown {
        display: none;
    }
    OperationsScreen #table {
        height: auto;
        min-height: 3;
        max-height: 50%;
    }
    OperationsScreen.-zoomed #table {
        display: none;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "follow", "Follow", id="ztui.ops.follow", show=False),
        Binding("z", "zoom", "Zoom", id="ztui.ops.zoom"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[str, str] = {}
        """Resource names the log taught us (a create's ``name`` parameter), by uuid."""

    @property
    def detail(self) -> OperationDetail:
        return self.query_one(OperationDetail)

    def compose_body(self) -> ComposeResult:
        table = SearchableTable(self.COLUMNS, search_field=SEARCH_FIELD, fmt=self.fmt, id="table")
        table.sort_field, table.sort_reverse = "createDate", True  # newest first
        yield table
        yield OperationDetail(self.fmt, id="detail")
        yield Input(placeholder="/regex  (!regex inverts; Enter keeps, Esc clears)", id="filter")

    # -- loading ------------------------------------------------------------------

    async def load(self) -> None:
        finished, running = await asyncio.gather(
            self.api_query(
                "QueryOperationLog",
                {"sortBy": "createDate", "sortDirection": "desc", "limit": LOAD_LIMIT},
            ),
            self.api_call("GetRunningOperations"),
        )
        live = self.context.operations.newest_first()
        records = merge(finished, as_records(running), reversed(live)).values()
        for record in records:
            self._learn_name(record)
        self.table.show([operation_row(r, self.names) for r in records])
        self._show_selected()
        self.status.show_info(self.summary())

    def on_operation(self, record: dict[str, Any]) -> None:
        """Add or update the operation's row (and the detail pane if it is selected)."""
        uuid = str(record.get("uuid"))
        self._learn_name(record)
        table = self.table
        before = table.rows_by_key.get(uuid)
        at_top = table.cursor_row == 0 and not table.row_filter.active
        table.upsert(operation_row(record, self.names))
        if before is None:
            self._drop_oldest()
            if at_top and table.row_count:
                table.move_cursor(row=0)  # the newest operation stays under the cursor
        if before is None or before.get("status") != record.get("status"):
            self.status.show_info(self.summary())
        self._show_selected()

    def _learn_name(self, record: Mapping[str, Any]) -> None:
        if record.get("status") != "Succeeded":
            return  # until it is done, a create's resource is one of its inputs
        params = record.get("params")
        if isinstance(params, Mapping) and params.get("name") and record.get("resourceUuid"):
            self.names[str(record["resourceUuid"])] = str(params["name"])

    def _drop_oldest(self) -> None:
        rows = self.table.rows_by_key
        while len(rows) > KEEP_ROWS:
            oldest = min(rows, key=lambda k: str(rows[k].get("createDate") or ""))
            self.table.remove(oldest)

    # -- selection ----------------------------------------------------------------

    @on(ResourceTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self._show_selected()

    def _show_selected(self) -> None:
        row = self.table.cursor_row_data
        record = None if row is None else dict(row)
        detail = self.detail
        if record != detail.record:
            detail.record = record

    @on(ResourceTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_follow()

    def action_follow(self) -> None:
        """Make the selected operation the one the flow-chain panel follows (binding
        ``ztui.ops.follow``, Enter)."""
        row = self.table.cursor_row_data
        if row is None:
            return
        uuid = str(row["uuid"])
        tracker = self.context.operations
        record = tracker.records.get(uuid) or {
            k: v for k, v in row.items() if k not in ("resourceName", "failedStep", SEARCH_FIELD)
        }
        tracker.follow(uuid)
        self.context.dispatch_event("/operation/update", record)  # every view's panel shows it
        hint = "" if self.context.trace_shown else " (t shows the panel)"
        self.status.show_info(f"following {operation_title(record)} in the flow panel{hint}")

    def action_zoom(self) -> None:
        """Give the whole screen to the selected operation, or back to the table
        (binding ``ztui.ops.zoom``)."""
        zoomed = not self.has_class("-zoomed")
        self.set_class(zoomed, "-zoomed")
        (self.detail if zoomed else self.table).focus()

    def action_clear(self) -> None:
        """Esc also leaves the zoomed detail."""
        self.remove_class("-zoomed")
        super().action_clear()

    def summary(self) -> str:
        table = self.table
        text = f"{len(table.rows_by_key)} operations"
        if table.row_filter.active:
            text += f" · {table.row_count} match /{table.row_filter.text}"
        running = sum(1 for r in self.table.rows_by_key.values() if not is_finished(r))
        failed = sum(
            1
            for r in self.table.rows_by_key.values()
            if is_finished(r) and r.get("status") != "Succeeded"
        )
        if running:
            text += f" · {running} running"
        if failed:
            text += f" · {failed} failed"
        return text

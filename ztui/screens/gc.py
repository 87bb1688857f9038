"""The GC jobs view: clean-ups the node could not do when they were due (core.gc), with
their status, attempts, next run and last error, kept live from ``/gc/job/update`` and
``/gc/job/deleted``; under the table, the job at the cursor (runner, context, triggers,
the whole error with its causes).  ``T`` runs the marked jobs (or the cursor's) now,
``d`` deletes them (asks first)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from ztui.columns import Column, Kind
from ztui.dialogs.confirm import ConfirmDialog, Wording, question
from ztui.formatting import Formatter
from ztui.screens.base import ResourceScreen

Row = dict[str, Any]
UPDATE_EVENT, DELETED_EVENT = "/gc/job/update", "/gc/job/deleted"
"""core.gc.runner's events (ztui does not import the core's modules)."""

GC_COLUMNS = (
    Column("name", "name"),
    Column("status", "status", Kind.STATE),
    Column("attempts", "tries"),
    Column("nextRunTime", "next run", Kind.DATE),
    Column("error", "last error"),
    Column("createDate", "age", Kind.AGE),
    Column("uuid", "uuid", Kind.UUID),
)
"""A GC job row is its inventory plus ``error``, its last error on one line."""


def error_line(error: Any) -> str:
    """An error dict (ErrorCode.to_dict) on one line: ``code: description``, then the root
    cause's description when it says more."""
    if not isinstance(error, Mapping):
        return ""
    text = f"{error.get('code', '')}: {error.get('description', '')}"
    root = error
    while isinstance(root.get("cause"), Mapping):
        root = root["cause"]
    if root is not error:
        text += f" ← {root.get('description', '')}"
    return text


def gc_row(inventory: Mapping[str, Any]) -> Row:
    return {**inventory, "error": error_line(inventory.get("lastError"))}


class GcJobDetail(Static):
    """The job under the cursor: what runs it, on what, when, and why it failed."""

    DEFAULT_CSS = """
    GcJobDetail {
        height: auto;
        max-height: 9;
        padding: 0 1;
        border-top: solid $primary;
        border-title-color: $text;
        border-title-style: bold;
    }
    """

    def __init__(self, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fmt = fmt
        self.text = ""

    def show_job(self, job: Mapping[str, Any] | None) -> None:
        if job is None:
            self.border_title = "GC job"
            self.text = "no GC job selected"
            self.update(Text(self.text, style="dim"))
            return
        fmt = self._fmt
        self.border_title = f"GC job {fmt.text(job.get('name'))}"
        lines = [
            ("Runner", fmt.text(job.get("runner"))),
            (
                "On",
                fmt.volatile(job.get("resourceUuid"), "uuid") if job.get("resourceUuid") else "-",
            ),
            ("Context", json.dumps(job.get("context") or {}, sort_keys=True)),
            ("When", ", ".join(job.get("triggerEvents") or ()) or "its next run time"),
        ]
        error = job.get("lastError")
        causes: list[str] = []
        while isinstance(error, Mapping):
            causes.append(f"{error.get('code', '')}: {error.get('description', '')}")
            error = error.get("cause")
        lines += [("Error" if i == 0 else "", c) for i, c in enumerate(causes)]
        text = Text()
        for i, (label, value) in enumerate(lines):
            if i:
                text.append("\n")
            text.append(label.ljust(8), "bold")
            text.append(value, "red" if label == "Error" or (not label and causes) else "")
        self.text = text.plain
        self.update(text)


class GcScreen(ResourceScreen):
    VIEW = "GC jobs"
    COLUMNS = GC_COLUMNS
    MARKABLE = True
    MUTATING = frozenset({"trigger", "delete"})

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("T", "trigger", "Run now", id="ztui.gc.trigger"),
        Binding("d", "delete", "Delete", id="ztui.gc.delete"),
    ]

    @property
    def detail(self) -> GcJobDetail:
        return self.query_one(GcJobDetail)

    def compose_body(self) -> ComposeResult:
        yield from super().compose_body()
        yield GcJobDetail(self.fmt, id="detail")

    async def load(self) -> None:
        self.status.show_info("loading…")
        jobs = await self.api_query("QueryGarbageCollector", {"sortBy": "createDate"})
        self.table.show([gc_row(j) for j in jobs])
        self.show_detail()
        self.show_loaded(self.summary())

    def summary(self) -> str:
        text = super().summary()
        pending = sum(1 for r in self.table.rows_by_key.values() if r.get("status") != "Done")
        return f"{text} · {pending} pending" if pending else text

    def on_node_event(self, path: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            return
        uuid = str(data.get("uuid"))
        if path == DELETED_EVENT:
            if uuid in self.table.rows_by_key:
                self.table.remove(uuid)
                self.show_detail()
                self.status.show_info(self.summary())
            return
        if path != UPDATE_EVENT:
            return
        inventory = data.get("inventory")
        if isinstance(inventory, Mapping):
            row = gc_row(inventory)
        elif uuid in self.table.rows_by_key:  # claimed: only the status changed
            row = {**self.table.rows_by_key[uuid], "status": data.get("newStatus")}
        else:
            self.reload()
            return
        self.table.upsert(row)
        if self.table.cursor_key == uuid or len(self.table.rows_by_key) == 1:
            self.show_detail()
        self.status.show_info(self.summary())

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        self.detail.show_job(self.table.cursor_row_data)

    # -- verbs ----------------------------------------------------------------------

    def action_trigger(self) -> None:
        """Run the marked GC jobs, or the one under the cursor, now (TriggerGarbageCollector;
        binding ``ztui.gc.trigger``)."""
        rows = [r for r in self.table.selection() if r.get("status") != "Done"]
        if not rows:
            self.notify("No pending GC job selected.", severity="warning")
            return
        self.trigger_jobs(rows)

    @work(group="verbs", exit_on_error=False)
    async def trigger_jobs(self, rows: list[Mapping[str, Any]]) -> None:
        self.table.clear_marks()
        self.status.show_info(f"running {', '.join(str(r['name']) for r in rows)}…")
        results = await asyncio.gather(
            *(self.api_call("TriggerGarbageCollector", {"uuid": r["uuid"]}) for r in rows)
        )
        for result in results:
            if isinstance(result, Mapping):
                self.table.upsert(gc_row(result))
        self.show_detail()
        if all(r is not None for r in results):
            self.status.show_info(f"{', '.join(str(r['name']) for r in rows)} done")

    def action_delete(self) -> None:
        """Delete the marked GC jobs, or the one under the cursor, after asking
        (DeleteGarbageCollector; binding ``ztui.gc.delete``)."""
        rows = self.table.selection()
        if not rows:
            self.notify("No GC job selected.", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_jobs(rows)

        text = question(
            "Delete",
            Wording("GC job", "GC jobs"),
            [str(r["name"]) for r in rows],
            Wording("What it would clean up stays as it is.", "What they would clean up stays."),
        )
        self.app.push_screen(ConfirmDialog(text, "Delete"), answered)

    @work(group="verbs", exit_on_error=False)
    async def delete_jobs(self, rows: list[Mapping[str, Any]]) -> None:
        self.table.clear_marks()
        results = await asyncio.gather(
            *(self.session.call("DeleteGarbageCollector", {"uuid": r["uuid"]}) for r in rows)
        )
        for row, reply in zip(rows, results, strict=True):
            if reply.success:
                self.table.remove(str(row["uuid"]))
            else:
                self.status.show_error(f"DeleteGarbageCollector: {reply.error}")
        self.show_detail()
        if all(r.success for r in results):
            self.status.show_info(self.summary())

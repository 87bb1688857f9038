"""The hosts view: every host with its status in colour, type, acceleration, capacity
and agent address, kept live from ``/host/status/change``; under the table, the host
at the cursor with capacity bars and its tags.  ``c`` reconnects the marked hosts or
the one under the cursor (there is no API to enable or disable a host).

Capacity changes with the VMs, which no host event tells: after VM events the
hosts are fetched again, at most once a second (a handful of rows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from ztui.columns import HOST_COLUMNS
from ztui.formatting import Formatter
from ztui.screens.base import ResourceScreen
from ztui.widgets.capacity_panel import HostCapacity
from ztui.widgets.host_detail import HostDetail

Row = dict[str, Any]
CAPACITY_DELAY = 1.0
"""Seconds between a VM event and fetching the hosts' capacity again (at most once)."""
CAPACITY_EVENTS = ("/vm/state/change", "/vm/deleted", "/appliance-vm/status/change")


def host_row(inventory: Mapping[str, Any], fmt: Formatter) -> Row:
    """A host inventory with the capacity texts the table shows (used/total)."""
    capacity = HostCapacity.of(inventory)
    return {
        **inventory,
        "cpu": f"{capacity.cpu_used}/{capacity.cpu_total}",
        "memory": f"{fmt.size(capacity.memory_used)}/{fmt.size(capacity.memory_total)}",
        "reservedMemory": capacity.reserved_memory,
    }


class HostsScreen(ResourceScreen):
    VIEW = "hosts"
    COLUMNS = HOST_COLUMNS
    MARKABLE = True
    MUTATING = frozenset({"reconnect"})

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "reconnect", "Reconnect", id="ztui.host.reconnect"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.host_tags: dict[str, tuple[str, ...]] = {}
        """System then user tags by host uuid, as fetched (dropped when a host reconnects)."""
        self.capacity_refreshes = 0
        """How many capacity refreshes have been shown (tests wait on it)."""
        self._capacity_timer: Any = None

    @property
    def detail(self) -> HostDetail:
        return self.query_one(HostDetail)

    def compose_body(self) -> ComposeResult:
        yield from super().compose_body()
        yield HostDetail(self.fmt, id="detail")

    # -- loading ------------------------------------------------------------------

    async def load(self) -> None:
        self.status.show_info("loading…")  # an error this load shows stays up
        hosts = await self.api_query("QueryHost", {"sortBy": "createDate"})
        self.host_tags.clear()
        self.table.show([host_row(h, self.fmt) for h in hosts])
        self.show_detail()
        self._show_summary()

    def on_node_event(self, path: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            return
        inventory = data.get("inventory")
        if path == "/host/status/change" and isinstance(inventory, Mapping):
            self.apply_host(inventory, reconnected=data.get("newStatus") == "Connected")
        elif path in CAPACITY_EVENTS or path.startswith("/globalConfig/update/"):
            self.schedule_capacity_refresh()

    def apply_host(self, inventory: Mapping[str, Any], *, reconnected: bool = False) -> None:
        """Show a host's new inventory in its row (and the pane, if it is the cursor's)."""
        uuid = str(inventory["uuid"])
        known = uuid in self.table.rows_by_key
        if reconnected:
            self.host_tags.pop(uuid, None)  # its facts were recorded again
        self.table.upsert(host_row(inventory, self.fmt))
        if not known:
            self._show_summary()
        if not known or self.table.cursor_key == uuid:
            self.show_detail()

    def schedule_capacity_refresh(self) -> None:
        """Fetch the hosts again in a second (once, however many events come meanwhile)."""
        if self._capacity_timer is None:
            self._capacity_timer = self.set_timer(CAPACITY_DELAY, self._capacity_due)

    def _capacity_due(self) -> None:
        self._capacity_timer = None
        self.refresh_capacity()

    @work(exclusive=True, group="capacity", exit_on_error=False)
    async def refresh_capacity(self) -> None:
        """Every host's row again (a host deleted meanwhile goes; a failure changes nothing)."""
        hosts = await self.api_call("QueryHost", {"sortBy": "createDate", "limit": 1_000_000})
        if hosts is None:
            return
        for host in hosts:
            self.table.upsert(host_row(host, self.fmt))
        for gone in set(self.table.rows_by_key) - {str(h["uuid"]) for h in hosts}:
            self.table.remove(gone)
        self.show_detail()
        self._show_summary()
        self.capacity_refreshes += 1

    def _show_summary(self) -> None:
        """The count on the status line, unless it shows an error."""
        if not self.status.has_class("-error"):
            self.status.show_info(self.summary())

    def summary(self) -> str:
        text = super().summary()
        return text.replace("1 hosts", "1 host", 1) if text.startswith("1 hosts") else text

    # -- the pane under the table -------------------------------------------------

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        """Show the host under the cursor, fetching its tags the first time."""
        row = self.table.cursor_row_data
        self.detail.host = row
        if row is None:
            self.detail.tags = ()
            return
        uuid = str(row["uuid"])
        self.detail.tags = self.host_tags.get(uuid)
        if uuid not in self.host_tags:
            self.fetch_tags(uuid)

    @work(exclusive=True, group="tags", exit_on_error=False)
    async def fetch_tags(self, host_uuid: str) -> None:
        conditions = {"conditions": [f"resourceUuid={host_uuid}"], "sortBy": "createDate"}
        system, user = await asyncio.gather(
            self.api_query("QuerySystemTag", conditions),
            self.api_query("QueryUserTag", conditions),
        )
        self.host_tags[host_uuid] = tuple(str(t["tag"]) for t in (*system, *user))
        if self.table.cursor_key == host_uuid:
            self.detail.tags = self.host_tags[host_uuid]

    # -- verbs --------------------------------------------------------------------

    def action_reconnect(self) -> None:
        """Reconnect the marked hosts, or the one under the cursor
        (binding ``ztui.host.reconnect``)."""
        rows = self.table.selection()
        if not rows:
            self.notify("No host selected.", severity="warning")
            return
        self.reconnect_hosts(rows)

    @work(group="verbs", exit_on_error=False)
    async def reconnect_hosts(self, rows: list[Mapping[str, Any]]) -> None:
        """Reconnect hosts in parallel; their rows follow the status events."""
        self.table.clear_marks()
        names = ", ".join(str(r["name"]) for r in rows)
        self.status.show_info(f"reconnecting {names}…")
        results = await asyncio.gather(
            *(self.api_call("ReconnectHost", {"uuid": r["uuid"]}) for r in rows)
        )
        done = [
            str(r["name"]) for r, result in zip(rows, results, strict=True) if result is not None
        ]
        for result in results:
            if isinstance(result, dict) and result.get("uuid"):
                self.apply_host(result, reconnected=True)
        if len(done) == len(rows):
            self.status.show_info(f"{', '.join(done)} reconnected")

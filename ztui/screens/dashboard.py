"""The dashboard, ztui's first view: which node this is, host capacity, VMs by state,
networks with their virtual routers, and the node's recent events.

Live without reloading: VM counts follow ``/vm/state/change`` and ``/vm/deleted``
one VM at a time (a 10,000-VM lab costs one dict update per event), hosts and
routers take the inventory their status events carry, and what no event
carries (capacity the VMs hold, addresses taken) is fetched again at most once
a second after a change, by queries that cost the same for ten VMs or ten
thousand (hosts, L3 networks, routers and one count per network).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.containers import Horizontal

from ztui.context import RecentEvent
from ztui.screens.base import ZtuiScreen
from ztui.screens.help import keys_of
from ztui.views import View
from ztui.widgets.capacity_panel import CapacityPanel
from ztui.widgets.event_log import OPERATION, PROGRESS, EventLog
from ztui.widgets.network_panel import NetworkPanel
from ztui.widgets.node_summary import NodeSummary, hint_line
from ztui.widgets.state_counts import StateCounts

Row = dict[str, Any]
USAGE_DELAY = 1.0
"""Seconds between a change and fetching capacity and addresses again (at most once)."""
NODE_STATUS_INTERVAL = 5.0
"""Seconds between two looks at the node's uptime and problems."""
HISTORY = 50
"""Finished operations of the log the recent events start from (ztui just started:
no event came yet)."""
USAGE_EVENTS = ("/vm/state/change", "/vm/deleted", "/appliance-vm/status/change")
"""Events after which capacity, addresses or the networks' routers may have changed."""


def range_size(ip_range: Mapping[str, Any]) -> int:
    """How many addresses an IP range hands out (0 if it cannot be read)."""
    try:
        start = int(ipaddress.ip_address(str(ip_range.get("startIp"))))
        end = int(ipaddress.ip_address(str(ip_range.get("endIp"))))
    except ValueError:
        return 0
    return max(end - start + 1, 0)


def key_hints(app: App[Any], views: Iterable[View], *, first_vm: bool) -> tuple[Text, ...]:
    """What a newcomer does next, with the keys as the keymap has them now: the views'
    keys, how to make a (first) VM, help and the command bar."""
    views = [
        f"{keys_of(app, f'ztui.view.{v.name}', v.key)} {v.name}"
        for v in views
        if v.name not in ("dashboard", "help")
    ]
    vms, new = keys_of(app, "ztui.view.vms", "2"), keys_of(app, "ztui.vm.create", "n")
    help_key, command = keys_of(app, "ztui.view.help", "?"), keys_of(app, "ztui.command", ":")
    vm = "your first VM" if first_vm else "a new VM"
    return (
        hint_line("Views", " · ".join(views)),
        hint_line("Start", f"{vms} then {new}: {vm} · {help_key} help · {command} a view by name"),
    )


def finished_at(record: Mapping[str, Any]) -> datetime:
    """When an operation of the log ended, in local time (its createDate is UTC)."""
    try:
        start = datetime.fromisoformat(str(record.get("createDate")))
    except ValueError:
        return datetime.now()
    took = record.get("duration")
    seconds = float(took) if isinstance(took, int | float) else 0.0
    local = start.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)
    return local + timedelta(seconds=seconds)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class DashboardScreen(ZtuiScreen):
    VIEW = "dashboard"

    DEFAULT_CSS = """
    DashboardScreen #top {
        height: auto;
    }
    DashboardScreen #capacity {
        width: 1fr;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.vm_states: dict[str, str] = {}
        """Every VM's state by uuid, as last loaded or told by an event."""
        self.vm_counts: Counter[str] = Counter()
        self.hosts: dict[str, Row] = {}
        self.routers: dict[str, Row] = {}
        self.names: dict[str, str] = {}
        """uuid -> name of VMs, hosts, routers and images, for events without inventory."""
        self.usage_refreshes = 0
        """How many capacity/address refreshes have been shown (tests wait on it)."""
        self._pending: list[tuple[str, Any]] | None = None
        self._dirty: set[str] = set()
        self._usage_timer: Any = None
        self._asked_names: set[str] = set()
        self.history_loaded = False
        """Whether the recent events were started from the operations log."""

    # -- widgets ------------------------------------------------------------------

    @property
    def summary_panel(self) -> NodeSummary:
        return self.query_one(NodeSummary)

    @property
    def capacity(self) -> CapacityPanel:
        return self.query_one(CapacityPanel)

    @property
    def counts(self) -> StateCounts:
        return self.query_one(StateCounts)

    @property
    def networks(self) -> NetworkPanel:
        return self.query_one(NetworkPanel)

    @property
    def event_log(self) -> EventLog:
        return self.query_one(EventLog)

    def compose_body(self) -> ComposeResult:
        yield NodeSummary(self.session.data_dir, self.fmt, id="node")
        with Horizontal(id="top"):
            yield CapacityPanel(self.fmt, id="capacity")
            yield StateCounts(id="vm-states")
        yield NetworkPanel(self.fmt, id="networks")
        yield EventLog(self.fmt, id="events")

    def on_mount(self) -> None:
        self.event_log.names = self.names
        self.event_log.events = tuple(self.context.recent_events)
        self.summary_panel.hints = key_hints(self.app, self.context.views, first_vm=True)
        super().on_mount()
        self.set_interval(NODE_STATUS_INTERVAL, self.refresh_node_status)

    @work(exclusive=True, group="node-status", exit_on_error=False)
    async def refresh_node_status(self) -> None:
        """The node's uptime and problems again (they change without an event)."""
        reply = await self.session.call("GetManagementNodeStatus")
        if reply.success:
            self._show_status(reply.inventory)

    def _show_status(self, status: Any) -> None:
        """The node's status on top, and its hosts' problems by their hosts."""
        self.summary_panel.show_node(self.session.in_process, status)
        if isinstance(status, Mapping):
            self.capacity.node_status = status

    # -- loading ------------------------------------------------------------------

    async def load(self) -> None:
        """Everything once; events that come meanwhile are applied after it."""
        self.status.show_info("loading…")  # an error this load shows stays up
        pending: list[tuple[str, Any]] = []
        self._pending = pending
        try:
            status, hosts, vms, routers, images = await asyncio.gather(
                self.api_call("GetManagementNodeStatus"),
                self.api_call("QueryHost", {"sortBy": "createDate", "limit": 1_000_000}),
                self.api_query("QueryVmInstance"),
                self.api_query("QueryVirtualRouterVm", {"sortBy": "createDate"}),
                self.api_query("QueryImage"),
            )
            networks = await self._networks()
        finally:
            if self._pending is pending:  # not replaced by a newer load
                self._pending = None
        self._show_status(status)
        self.names.update({str(i["uuid"]): str(i["name"]) for i in (*vms, *images)})
        self.vm_states = {str(vm["uuid"]): str(vm["state"]) for vm in vms}
        self.vm_counts = Counter(self.vm_states.values())
        self._show_hosts(hosts)
        self._show_routers(routers)
        self.summary_panel.hints = key_hints(self.app, self.context.views, first_vm=not vms)
        self.networks.networks = tuple(networks or ())
        self.counts.counts = dict(self.vm_counts)
        for path, data in pending:
            self.apply_event(path, data)
        if not self.history_loaded:
            await self._load_history()
        self.event_log.events = tuple(self.context.recent_events)
        self._show_summary()

    async def _load_history(self) -> None:
        """Put the latest finished operations among the recent events, by time (once)."""
        records = await self.api_query(
            "QueryOperationLog",
            {
                "conditions": ["parentUuid is null"],
                "sortBy": "createDate",
                "sortDirection": "desc",
                "limit": HISTORY,
            },
        )
        events = self.context.recent_events
        past = [RecentEvent(finished_at(r), OPERATION, r) for r in records]
        merged = sorted([*past, *events], key=lambda e: e.at)
        events.clear()
        events.extend(merged)  # the deque keeps the newest
        self.history_loaded = True

    async def _networks(self) -> list[Row] | None:
        """L3 networks with the addresses their ranges hold and how many are taken
        (None if a query failed: the error is shown)."""
        every = {"sortBy": "createDate", "limit": 1_000_000}
        l3s, ranges = await asyncio.gather(
            self.api_call("QueryL3Network", every), self.api_call("QueryIpRange", every)
        )
        if l3s is None or ranges is None:
            return None
        totals: Counter[str] = Counter()
        for ip_range in ranges:
            totals[str(ip_range.get("l3NetworkUuid"))] += range_size(ip_range)
        used = await asyncio.gather(
            *(
                self._count("QueryVmNic", [f"l3NetworkUuid={l3['uuid']}", "usedIpUuid not null"])
                for l3 in l3s
            )
        )
        return [
            {**l3, "usedIps": n, "totalIps": totals[str(l3["uuid"])]}
            for l3, n in zip(l3s, used, strict=True)
        ]

    async def _count(self, api: str, conditions: list[str]) -> int:
        """How many resources match (0, with the error shown, if the query failed)."""
        reply = await self.session.call(api, {"count": True, "conditions": conditions})
        if not reply.success:
            self.status.show_error(f"{api}: {reply.error}")
            return 0
        return reply.total or 0

    def summary(self) -> str:
        vms = sum(self.vm_counts.values())
        return " · ".join(
            (
                _plural(len(self.hosts), "host"),
                _plural(vms, "VM"),
                _plural(len(self.networks.networks), "L3 network"),
                _plural(len(self.routers), "router"),
            )
        )

    def _show_summary(self) -> None:
        """The counts on the status line, unless it shows an error."""
        if not self.status.has_class("-error"):
            self.status.show_info(self.summary())

    def _show_hosts(self, hosts: list[Row] | None) -> None:
        """Show the hosts (None: QueryHost failed, the error is shown: none are known)."""
        self.hosts = {str(h["uuid"]): h for h in hosts or ()}
        self.names.update({uuid: str(h["name"]) for uuid, h in self.hosts.items()})
        self.capacity.listed = hosts is not None
        self.capacity.hosts = tuple(self.hosts.values())

    def _show_routers(self, routers: list[Row]) -> None:
        self.routers = {str(r["uuid"]): r for r in routers}
        self.names.update({uuid: str(r["name"]) for uuid, r in self.routers.items()})
        self.networks.routers = tuple(self.routers.values())

    # -- live ---------------------------------------------------------------------

    def on_node_event(self, path: str, data: Any) -> None:
        self._changed("events")
        if self._pending is not None:
            self._pending.append((path, data))  # a load is running: applied after it
            return
        self.apply_event(path, data)

    def _changed(self, *parts: str) -> None:
        """Mark parts of the view to redraw once the events queued now are handled, so a
        burst of events updates each widget once, not once per event."""
        if not self._dirty:
            self.call_later(self._redraw)
        self._dirty.update(parts)

    def _redraw(self) -> None:
        dirty, self._dirty = self._dirty, set()
        if "events" in dirty:
            self.event_log.events = tuple(self.context.recent_events)
        if "counts" in dirty:
            self.counts.counts = dict(self.vm_counts)
        if "hosts" in dirty:
            self.capacity.hosts = tuple(self.hosts.values())
        if "routers" in dirty:
            self.networks.routers = tuple(self.routers.values())
        if "summary" in dirty:
            self._show_summary()

    def apply_event(self, path: str, data: Any) -> None:
        """Change what is shown by what one event says (never a full reload)."""
        if not isinstance(data, Mapping):
            return
        inventory = data.get("inventory")
        if path == "/vm/state/change" and isinstance(inventory, Mapping):
            self._vm_state(str(inventory["uuid"]), str(inventory.get("state")))
            self.names[str(inventory["uuid"])] = str(inventory.get("name"))
        elif path == "/vm/deleted":
            self._vm_state(str(data.get("vmUuid")), None)
        elif path == "/host/status/change" and isinstance(inventory, Mapping):
            known = len(self.hosts)
            self.hosts[str(inventory["uuid"])] = dict(inventory)
            self.names[str(inventory["uuid"])] = str(inventory.get("name"))
            self._changed("hosts", *(("summary",) if len(self.hosts) != known else ()))
            self.refresh_node_status()  # a host's problem comes or goes with its status
        elif path == "/appliance-vm/status/change":
            self._router_status(data)
        elif path == PROGRESS:
            image = str(data.get("imageUuid"))
            if image not in self.names and image not in self._asked_names:
                self._asked_names.add(image)
                self._name_image(image)
        if path in USAGE_EVENTS or path.startswith("/globalConfig/update/"):
            self.schedule_usage_refresh()

    def _vm_state(self, uuid: str, state: str | None) -> None:
        """Move one VM between the counts (None: it is gone)."""
        old = self.vm_states.pop(uuid, None)
        if old is not None:
            self.vm_counts[old] -= 1
            if self.vm_counts[old] <= 0:
                del self.vm_counts[old]
        if state is not None:
            self.vm_states[uuid] = state
            self.vm_counts[state] += 1
        if old != state:
            self._changed("counts")
        if old is None or state is None:
            self._changed("summary")

    def _router_status(self, data: Mapping[str, Any]) -> None:
        uuid = str(data.get("applianceVmUuid"))
        inventory = data.get("inventory")
        if data.get("newStatus") == "Destroyed" or not isinstance(inventory, Mapping):
            self.routers.pop(uuid, None)
        else:
            self.routers[uuid] = dict(inventory)
            self.names[uuid] = str(inventory.get("name"))
        self._changed("routers", "summary")

    @property
    def usage_refresh_due(self) -> bool:
        """True while a usage refresh is scheduled and has not started."""
        return self._usage_timer is not None

    def schedule_usage_refresh(self) -> None:
        """Fetch capacity and addresses again in a second (once, however many events)."""
        if self._usage_timer is None:
            self._usage_timer = self.set_timer(USAGE_DELAY, self._usage_due)

    def _usage_due(self) -> None:
        self._usage_timer = None
        self.refresh_usage()

    @work(exclusive=True, group="usage", exit_on_error=False)
    async def refresh_usage(self) -> None:
        """Hosts' capacity, the networks' addresses and the routers, without the VMs."""
        every = {"sortBy": "createDate", "limit": 1_000_000}
        (hosts, routers), networks = await asyncio.gather(
            asyncio.gather(
                self.api_call("QueryHost", every), self.api_call("QueryVirtualRouterVm", every)
            ),
            self._networks(),
        )
        if hosts is not None:  # a failed query (shown) leaves what was there
            self._show_hosts(hosts)
        if routers is not None:
            self._show_routers(routers)
        if networks is not None:
            self.networks.networks = tuple(networks)
        self._show_summary()
        self.usage_refreshes += 1

    @work(group="names", exit_on_error=False)
    async def _name_image(self, uuid: str) -> None:
        """Learn the name of an image an event speaks of (asked once per image)."""
        images = await self.api_query("QueryImage", {"conditions": [f"uuid={uuid}"]})
        if images:
            self.names[uuid] = str(images[0]["name"])
            self._changed("events")

"""The networks view: L3 networks, L2 networks, IP ranges and virtual routers, one tab
each, and under the routers the DHCP entries the router under the cursor serves; on a
node with VIPs (a plugin brings their APIs), a Reach tab: port-forwarding rules, EIPs
and unused VIPs, and how each guest is reached; on a node with security groups (a plugin
too), a Sec. groups tab: the groups, and under them the rules and NICs of the group
under the cursor, with verbs to make and change them.

Everything comes from Query APIs.  IP usage is computed: an IP range holds
``endIp - startIp + 1`` addresses, and a NIC that holds a used IP (``usedIpUuid``
set) inside the range uses one (a router's guest NIC takes the gateway, which is
outside every range, and holds none).  A router's DHCP entries are what
``core.virtual_router.sync.all_dhcp_entries`` pushes to it: the VM NICs on its
guest L3 whose VM may be running, with the hostname made by ``hostname_of``.

Live: ``/appliance-vm/status/change`` updates one router's row; VM changes
re-read the NICs (IP usage, public IPs, DHCP entries), coalesced; a finished VIP,
rule or EIP operation (from any view or client) re-reads the Reach tab, and a finished
security-group operation the Sec. groups tab.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static, TabbedContent, TabPane

from core.network.l3.nics import VM_NIC
from core.virtual_router.sync import GUEST, PUBLIC, SERVED_STATES, hostname_of
from ztui.columns import Column, Kind
from ztui.dialogs.choice import ChoiceDialog
from ztui.dialogs.confirm import ConfirmDialog, Wording, question
from ztui.dialogs.security_group import NewGroup, NewGroupDialog, RuleDialog
from ztui.formatting import Formatter
from ztui.reach import KIND_EIP, KIND_PF, KIND_VIP, REACH_APIS, ReachData
from ztui.screens.base import ResourceScreen
from ztui.security_groups import SG_APIS, SgData
from ztui.widgets.resource_table import ResourceTable

Row = dict[str, Any]
Inventory = Mapping[str, Any]

REFRESH_DELAY = 0.2
"""Seconds to wait for more VM events before re-reading the NICs (a burst costs one read)."""

L3_COLUMNS = (
    Column("name", "name"),
    Column("category", "category"),
    Column("cidr", "CIDR"),
    Column("gateway", "gateway"),
    Column("ipUsage", "IPs used"),
    Column("services", "services"),
    Column("l2Name", "L2"),
    Column("dnsDomain", "domain"),
)
L2_COLUMNS = (
    Column("name", "name"),
    Column("type", "type"),
    Column("switch", "switch"),
    Column("vlan", "VLAN"),
    Column("physicalInterface", "interface"),
    Column("bridge", "bridge"),
    Column("clusters", "clusters"),
)
RANGE_COLUMNS = (
    Column("name", "name"),
    Column("l3Name", "L3"),
    Column("startIp", "start"),
    Column("endIp", "end"),
    Column("ipUsage", "IPs used"),
    Column("networkCidr", "CIDR"),
    Column("gateway", "gateway"),
)
ROUTER_COLUMNS = (
    Column("name", "name"),
    Column("status", "status", Kind.STATE),
    Column("state", "state", Kind.STATE),
    Column("hostName", "host"),
    Column("guestName", "serves"),
    Column("publicIp", "public IP"),
    Column("pid", "pid"),
)
REACH_COLUMNS = (
    Column("kind", "what"),
    Column("vip", "VIP"),
    Column("target", "to"),
    Column("protocol", "proto"),
    Column("reach", "reach it"),
    Column("allowed", "from"),
    Column("attached", "attached"),
    Column("name", "name"),
)
SG_COLUMNS = (
    Column("name", "name"),
    Column("l3Names", "L3 networks"),
    Column("ruleCount", "rules"),
    Column("nicCount", "NICs"),
    Column("description", "description"),
)
SG_RULE_COLUMNS = (
    Column("direction", "direction"),
    Column("protocol", "proto"),
    Column("ports", "ports"),
    Column("peer", "from/to"),
)
SG_NIC_COLUMNS = (
    Column("vmName", "VM"),
    Column("ip", "IP"),
    Column("l3Name", "L3"),
)
DHCP_COLUMNS = (
    Column("vmName", "VM"),
    Column("ip", "IP"),
    Column("macAddress", "MAC"),
    Column("fqdn", "hostname"),
    Column("default", "default"),
)


@dataclass(frozen=True)
class Tab:
    id: str
    title: str
    columns: tuple[Column, ...]
    markable: bool = False
    noun: str = "row"
    """What one row is (the status line counts them)."""

    def count(self, n: int) -> str:
        return f"{n} {self.noun}{'' if n == 1 else 's'}"


TABS = (
    Tab("l3", "L3 networks", L3_COLUMNS, markable=True, noun="L3 network"),
    Tab("l2", "L2 networks", L2_COLUMNS, noun="L2 network"),
    Tab("ranges", "IP ranges", RANGE_COLUMNS, noun="IP range"),
    Tab("routers", "Routers", ROUTER_COLUMNS, markable=True, noun="router"),
    Tab("reach", "Reach", REACH_COLUMNS, markable=True, noun="item"),
    Tab("sg", "Sec. groups", SG_COLUMNS, markable=True, noun="security group"),
)
"""The Reach tab (VIPs, port forwarding, EIPs) and the Sec. groups tab are shown only
when the node has their APIs (plugins bring them)."""
PLUGIN_TABS = ("reach", "sg")
TAB_BY_ID = {tab.id: tab for tab in TABS}
ACTION_TAB = {
    "delete_l3": "l3",
    "reconnect": "routers",
    "destroy": "routers",
    "delete_reach": "reach",
    "detach": "reach",
    "new_sg": "sg",
    "add_sg_rule": "sg",
    "delete_sg_rule": "sg",
    "add_sg_nic": "sg",
    "remove_sg_nic": "sg",
    "delete_sg": "sg",
}
"""The tab on which each verb acts (elsewhere it is hidden)."""
ROUTER_NOUN = Wording("virtual router", "virtual routers")
ROUTER_WARNING = Wording(
    "Its VMs lose DHCP, DNS and SNAT until one of them needs it again "
    "(a VM start makes a new one).",
    "Their VMs lose DHCP, DNS and SNAT until one of them needs a router again "
    "(a VM start makes a new one).",
)
REACH_NOUN = Wording("the", "items")
REACH_DELETE_WARNING = Wording(
    "A rule or EIP is detached first: the guest is no longer reached through it. "
    "A VIP goes once nothing uses it.",
    "Rules and EIPs are detached first: their guests are no longer reached through them. "
    "VIPs go last, once nothing uses them.",
)
SG_NOUN = Wording("security group", "security groups")
SG_WARNING = Wording(
    "Its rules go with it, its NICs leave it (unguarded if in no other group), and rules "
    "of other groups that name it go too.",
    "Their rules go with them, their NICs leave them (unguarded if in no other group), and "
    "rules of other groups that name them go too.",
)
L3_NOUN = Wording("L3 network", "L3 networks")
L3_WARNING = Wording(
    "Its IP ranges go with it, and the virtual router that serves it is destroyed. "
    "Refused while a VM NIC uses it.",
    "Their IP ranges go with them, and the virtual routers that serve them are destroyed. "
    "They go one after the other; the first one a VM NIC uses is refused and stops the rest.",
)


# -- the data ----------------------------------------------------------------------------


def ip_int(text: Any) -> int | None:
    try:
        return int(ipaddress.IPv4Address(str(text)))
    except ValueError:
        return None


def range_size(ip_range: Inventory) -> int:
    start, end = ip_int(ip_range.get("startIp")), ip_int(ip_range.get("endIp"))
    return 0 if start is None or end is None else max(0, end - start + 1)


def in_range(ip_range: Inventory, ip: Any) -> bool:
    value = ip_int(ip)
    start, end = ip_int(ip_range.get("startIp")), ip_int(ip_range.get("endIp"))
    return None not in (value, start, end) and start <= value <= end  # type: ignore[operator]


def usage(used: int, total: int) -> str:
    return f"{used}/{total}"


def unique(values: Iterable[Any]) -> list[str]:
    """The non-empty values, each once, in their first order."""
    return list(dict.fromkeys(str(v) for v in values if v))


@dataclass
class NetworkData:
    """The inventories the view shows, and the rows built from them (with the volatile
    values a row shows, bridge names, MACs and pids, through ``fmt``)."""

    fmt: Formatter = field(default_factory=Formatter)
    l2s: list[Inventory] = field(default_factory=list)
    l3s: list[Inventory] = field(default_factory=list)
    ranges: list[Inventory] = field(default_factory=list)
    routers: list[Inventory] = field(default_factory=list)
    nics: list[Inventory] = field(default_factory=list)
    vms: list[Inventory] = field(default_factory=list)
    refs: list[Inventory] = field(default_factory=list)
    providers: list[Inventory] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)
    clusters: dict[str, str] = field(default_factory=dict)

    def name_of(self, items: Sequence[Inventory], uuid: Any) -> str:
        return next((str(i["name"]) for i in items if i["uuid"] == uuid), "")

    def ranges_of(self, l3_uuid: str) -> list[Inventory]:
        return [r for r in self.ranges if r["l3NetworkUuid"] == l3_uuid]

    def used_in(self, ip_range: Inventory) -> int:
        return sum(
            1
            for nic in self.nics
            if nic.get("usedIpUuid")
            and nic["l3NetworkUuid"] == ip_range["l3NetworkUuid"]
            and in_range(ip_range, nic.get("ip"))
        )

    def services_of(self, l3_uuid: str) -> str:
        """``DHCP,DNS,SNAT (VirtualRouter)``: each provider with the services it gives."""
        by_provider: dict[str, list[str]] = {}
        for ref in self.refs:
            if ref["l3NetworkUuid"] == l3_uuid:
                by_provider.setdefault(ref["networkServiceProviderUuid"], []).append(
                    str(ref["networkServiceType"])
                )
        parts = []
        for provider_uuid, types in by_provider.items():
            provider = next((p for p in self.providers if p["uuid"] == provider_uuid), {})
            offered = str(provider.get("networkServiceTypes") or "").split(",")
            types.sort(key=lambda t: (offered.index(t) if t in offered else len(offered), t))
            parts.append(f"{','.join(types)} ({provider.get('type') or provider_uuid})")
        return "; ".join(sorted(parts))

    def service_types(self, l3_uuid: str) -> set[str]:
        return {str(r["networkServiceType"]) for r in self.refs if r["l3NetworkUuid"] == l3_uuid}

    # -- rows -------------------------------------------------------------------------

    def l3_row(self, l3: Inventory) -> Row:
        ranges = self.ranges_of(str(l3["uuid"]))
        return {
            **l3,
            "cidr": ", ".join(unique(r.get("networkCidr") for r in ranges)),
            "gateway": ", ".join(unique(r.get("gateway") for r in ranges)),
            "ipUsage": usage(sum(self.used_in(r) for r in ranges), sum(map(range_size, ranges)))
            if ranges
            else "",
            "services": self.services_of(str(l3["uuid"])),
            "l2Name": self.name_of(self.l2s, l3.get("l2NetworkUuid")),
        }

    def l2_row(self, l2: Inventory) -> Row:
        """``clusters`` names the clusters of ``attachedClusterUuids`` (QueryL2Network's);
        ``switch`` is the vSwitch type, flagged when no enabled plugin realises it."""
        attached = l2.get("attachedClusterUuids") or []
        switch = str(l2.get("vSwitchType") or "")
        return {
            **l2,
            "switch": switch if l2.get("realizable", True) else f"{switch} (no plugin)",
            "vlan": "" if l2.get("vlan") is None else str(l2["vlan"]),
            "bridge": self.fmt.volatile(l2.get("bridgeName"), "bridge"),
            "clusters": ", ".join(sorted(self.clusters.get(str(c), str(c)) for c in attached)),
        }

    def range_row(self, ip_range: Inventory) -> Row:
        return {
            **ip_range,
            "l3Name": self.name_of(self.l3s, ip_range.get("l3NetworkUuid")),
            "ipUsage": usage(self.used_in(ip_range), range_size(ip_range)),
        }

    def router_nic(self, router_uuid: str, role: str) -> Inventory | None:
        return next(
            (
                n
                for n in self.nics
                if n["vmInstanceUuid"] == router_uuid and n.get("metaData") == role
            ),
            None,
        )

    def router_row(self, router: Inventory) -> Row:
        uuid = str(router["uuid"])
        guest, public = self.router_nic(uuid, GUEST), self.router_nic(uuid, PUBLIC)
        return {
            **router,
            "hostName": self.hosts.get(str(router.get("hostUuid")), ""),
            "guestName": self.name_of(self.l3s, router.get("guestNetworkUuid")),
            "guestIp": (guest or {}).get("ip") or "",
            "publicIp": (public or {}).get("ip") or "",
            "pid": self.fmt.volatile(router.get("agentPid"), "pid"),
        }

    def dhcp_rows(self, router: Inventory) -> list[Row]:
        """What the router serves: the VM NICs of its guest L3 whose VM may be running."""
        l3_uuid = router.get("guestNetworkUuid")
        l3 = next((n for n in self.l3s if n["uuid"] == l3_uuid), {})
        domain = str(l3.get("dnsDomain") or "")
        vms = {str(v["uuid"]): v for v in self.vms}
        rows = []
        for nic in self.nics:
            vm = vms.get(str(nic["vmInstanceUuid"]))
            if (
                nic["l3NetworkUuid"] != l3_uuid
                or nic.get("type") != VM_NIC
                or vm is None
                or vm.get("state") not in SERVED_STATES
            ):
                continue
            hostname = hostname_of(str(vm["name"]), str(vm["uuid"]))
            default_l3 = vm.get("defaultL3NetworkUuid") or l3_uuid
            rows.append(
                {
                    "mac": nic["mac"],
                    "macAddress": self.fmt.volatile(nic["mac"], "mac"),
                    "ip": nic.get("ip") or "",
                    "vmName": vm["name"],
                    "fqdn": f"{hostname}.{domain}" if domain else hostname,
                    "default": "yes" if default_l3 == l3_uuid else "",
                }
            )
        return sorted(rows, key=lambda r: ip_int(r["ip"]) or 0)

    def unserved(self, router: Inventory) -> int:
        """VM NICs on the router's guest L3 whose VM is not running (no DHCP entry)."""
        l3_uuid = router.get("guestNetworkUuid")
        vms = {str(v["uuid"]): v for v in self.vms}
        return sum(
            1
            for nic in self.nics
            if nic["l3NetworkUuid"] == l3_uuid
            and nic.get("type") == VM_NIC
            and vms.get(str(nic["vmInstanceUuid"]), {}).get("state") not in SERVED_STATES
        )


def by_name(items: Iterable[Inventory]) -> list[Inventory]:
    return sorted(items, key=lambda i: (str(i.get("name") or ""), str(i.get("uuid"))))


def sync_rows(table: ResourceTable, rows: Iterable[Row]) -> None:
    """Make the table hold exactly ``rows``, touching only rows that changed."""
    rows = list(rows)
    keys = {str(r[table.key_field]) for r in rows}
    if not table.rows_by_key:
        table.show(rows)  # first load: one rebuild, in the given order
        return
    for key in [k for k in table.rows_by_key if k not in keys]:
        table.remove(key)
    for row in rows:
        table.upsert(row)


# -- the screen ----------------------------------------------------------------------------


class NetworksScreen(ResourceScreen):
    """Tabs L3 / L2 / IP ranges / Routers, each a ResourceTable with ``/`` filter, ``o``
    sort and (L3, routers) space marks of its own; under the routers, the DHCP entries of
    the router under the cursor."""

    VIEW = "networks"
    MUTATING = frozenset(
        {
            "reconnect",
            "destroy",
            "delete_l3",
            "delete_reach",
            "detach",
            "new_sg",
            "add_sg_rule",
            "delete_sg_rule",
            "add_sg_nic",
            "remove_sg_nic",
            "delete_sg",
        }
    )

    DEFAULT_CSS = """
    NetworksScreen TabbedContent {
        height: 1fr;
    }
    NetworksScreen ContentSwitcher {
        height: 1fr;
    }
    NetworksScreen TabPane {
        height: 1fr;
        padding: 0;
    }
    NetworksScreen #routers-table {
        height: auto;
        max-height: 50%;
        min-height: 3;
    }
    NetworksScreen #dhcp {
        height: 1fr;
    }
    NetworksScreen #dhcp-title {
        height: 1;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    NetworksScreen #sg-table {
        height: auto;
        max-height: 50%;
        min-height: 3;
    }
    NetworksScreen #sg-members {
        height: 1fr;
    }
    NetworksScreen #sg-rules {
        width: 3fr;
    }
    NetworksScreen #sg-nics {
        width: 2fr;
    }
    NetworksScreen #sg-title {
        height: 1;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    NetworksScreen #l3-detail, NetworksScreen #reach-detail {
        height: auto;
        max-height: 3;
        padding: 0 1;
        background: $panel;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right_square_bracket", "next_tab(1)", "Next tab", id="ztui.net.tab.next"),
        Binding(
            "left_square_bracket", "next_tab(-1)", "Prev tab", id="ztui.net.tab.prev", show=False
        ),
        Binding("c", "reconnect", "Reconnect", id="ztui.net.router.reconnect"),
        Binding("d", "destroy", "Destroy", id="ztui.net.router.destroy"),
        Binding("d", "delete_l3", "Delete", id="ztui.net.l3.delete"),
        Binding("d", "delete_reach", "Delete", id="ztui.net.reach.delete"),
        Binding("x", "detach", "Detach", id="ztui.net.reach.detach"),
        Binding("n", "new_sg", "New group", id="ztui.net.sg.new"),
        Binding("a", "add_sg_rule", "Add rule", id="ztui.net.sg.rule.add"),
        Binding("x", "delete_sg_rule", "Del rule", id="ztui.net.sg.rule.delete"),
        Binding("i", "add_sg_nic", "Add NIC", id="ztui.net.sg.nic.add"),
        Binding("u", "remove_sg_nic", "Remove NIC", id="ztui.net.sg.nic.remove", show=False),
        Binding("d", "delete_sg", "Delete", id="ztui.net.sg.delete"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.data = NetworkData()
        self.dhcp_router: str | None = None
        """The uuid of the router whose DHCP entries are shown."""
        self.reach: ReachData | None = None
        """VIPs, rules and EIPs; None while the node has no such APIs (no Reach tab)."""
        self.sg: SgData | None = None
        """Security groups; None while the node has no such APIs (no Sec. groups tab)."""
        self.sg_attached: dict[str, set[str]] = {}
        """Group uuid → the L3 networks this view attached it to (the node does not say)."""

    # -- layout -------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        with TabbedContent(initial=TABS[0].id):
            for tab in TABS:
                with TabPane(tab.title, id=tab.id):
                    table = ResourceTable(
                        tab.columns, markable=tab.markable, fmt=self.fmt, id=f"{tab.id}-table"
                    )
                    with Vertical():
                        yield table
                        if tab.id == "l3":
                            yield Static("", id="l3-detail")
                        elif tab.id == "reach":
                            yield Static("", id="reach-detail")
                        elif tab.id == "sg":
                            yield Static("", id="sg-title")
                            with Horizontal(id="sg-members"):
                                yield ResourceTable(SG_RULE_COLUMNS, fmt=self.fmt, id="sg-rules")
                                yield ResourceTable(SG_NIC_COLUMNS, fmt=self.fmt, id="sg-nics")
                        elif tab.id == "routers":
                            yield Static("", id="dhcp-title")
                            yield ResourceTable(
                                DHCP_COLUMNS, key_field="mac", fmt=self.fmt, id="dhcp"
                            )
        yield Input(placeholder="/regex  (!regex inverts; Enter keeps, Esc clears)", id="filter")

    def on_mount(self) -> None:
        super().on_mount()
        for tab_id in PLUGIN_TABS:  # until the node says it has their APIs
            self.query_one(TabbedContent).hide_tab(tab_id)
        self.table.focus()

    @property
    def shown_tabs(self) -> list[Tab]:
        """The tabs shown: Reach only on a node with VIPs, Security groups only on a node
        with security groups."""
        return [tab for tab in TABS if tab.id not in PLUGIN_TABS or self.plugin_data(tab.id)]

    def plugin_data(self, tab_id: str) -> bool:
        """Whether the node has the APIs of a plugin's tab."""
        return (self.reach if tab_id == "reach" else self.sg) is not None

    def table_of(self, tab_id: str) -> ResourceTable:
        return self.query_one(f"#{tab_id}-table", ResourceTable)

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active or TABS[0].id

    @property
    def table(self) -> ResourceTable:
        """The active tab's table (what filter, sort and marks act on)."""
        return self.table_of(self.active_tab)

    @property
    def dhcp(self) -> ResourceTable:
        return self.query_one("#dhcp", ResourceTable)

    def show_tab(self, tab_id: str) -> None:
        self.query_one(TabbedContent).active = tab_id

    def action_next_tab(self, step: int) -> None:
        """Go to the next (or previous) tab (bindings ``ztui.net.tab.next`` / ``.prev``)."""
        ids = [tab.id for tab in self.shown_tabs]
        self.show_tab(ids[(ids.index(self.active_tab) + step) % len(ids)])

    @on(TabbedContent.TabActivated)
    def _tab_activated(self) -> None:
        table = self.table
        box = self.query_one("#filter", Input)
        with box.prevent(Input.Changed):
            box.value = table.row_filter.text
        box.set_class(bool(box.value), "-shown")
        table.focus()
        self.refresh_bindings()
        self.status.show_info(self.summary())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        tab = ACTION_TAB.get(action)
        if tab is not None and tab != self.active_tab:
            return False  # another tab's verb: hidden
        return super().check_action(action, parameters)

    def summary(self) -> str:
        """The status line: the active tab's count and filter."""
        table, tab = self.table, TAB_BY_ID[self.active_tab]
        text = tab.count(len(table.rows_by_key))
        if table.row_filter.active:
            text += f" · {table.row_count} match /{table.row_filter.text}"
        if table.marked:
            text += f" · {len(table.marked)} marked"
        return text

    # -- loading ------------------------------------------------------------------

    async def load(self) -> None:
        (
            l2s,
            l3s,
            ranges,
            routers,
            nics,
            vms,
            refs,
            providers,
            hosts,
            clusters,
            reach,
            sg,
        ) = await asyncio.gather(
            self.api_query("QueryL2Network"),
            self.api_query("QueryL3Network"),
            self.api_query("QueryIpRange"),
            self.api_query("QueryVirtualRouterVm"),
            self.api_query("QueryVmNic"),
            self.api_query("QueryVmInstance"),
            self.api_query("QueryNetworkServiceL3NetworkRef"),
            self.api_query("QueryNetworkServiceProvider"),
            self.api_query("QueryHost"),
            self.api_query("QueryCluster"),
            self.query_reach(),
            self.query_sg(),
        )
        self.data = NetworkData(
            fmt=self.fmt,
            l2s=by_name(l2s),
            l3s=by_name(l3s),
            ranges=sorted(
                ranges,
                key=lambda r: (
                    next((str(n["name"]) for n in l3s if n["uuid"] == r["l3NetworkUuid"]), ""),
                    ip_int(r.get("startIp")) or 0,
                ),
            ),
            routers=by_name(routers),
            nics=nics,
            vms=vms,
            refs=refs,
            providers=providers,
            hosts={str(h["uuid"]): str(h["name"]) for h in hosts},
            clusters={str(c["uuid"]): str(c["name"]) for c in clusters},
        )
        self.reach, self.sg = reach, sg
        self.show_data()

    async def query_reach(self) -> ReachData | None:
        """VIPs, rules and EIPs; None when the node has no VIP API (no plugin)."""
        vips = await self.plugin_query("QueryVip")
        if vips is None:
            return None
        rules, eips = await asyncio.gather(
            self.api_query("QueryPortForwardingRule"), self.api_query("QueryEip")
        )
        return ReachData(vips, rules, eips)

    async def query_sg(self) -> SgData | None:
        """Security groups, their rules and NICs; None when the node has no such API."""
        groups = await self.plugin_query("QuerySecurityGroup")
        if groups is None:
            return None
        rules, refs = await asyncio.gather(
            self.api_query("QuerySecurityGroupRule"), self.api_query("QueryVmNicInSecurityGroup")
        )
        return SgData(by_name(groups), rules, refs)

    def sg_rows(self) -> list[Row]:
        if self.sg is None:
            return []
        sg = self.sg
        sg.nics, sg.vms, sg.l3s, sg.attached = (
            self.data.nics,
            self.data.vms,
            self.data.l3s,
            self.sg_attached,
        )
        return sg.group_rows()

    def reach_rows(self) -> list[Row]:
        if self.reach is None:
            return []
        self.reach.nics, self.reach.vms, self.reach.l3s = (
            self.data.nics,
            self.data.vms,
            self.data.l3s,
        )
        return self.reach.rows()

    def show_data(self, summary: bool = True) -> None:
        """Every table from ``self.data``; ``summary``: the status line too."""
        data = self.data
        sync_rows(self.table_of("l3"), [data.l3_row(n) for n in data.l3s])
        sync_rows(self.table_of("l2"), [data.l2_row(n) for n in data.l2s])
        sync_rows(self.table_of("ranges"), [data.range_row(r) for r in data.ranges])
        sync_rows(self.table_of("routers"), [data.router_row(r) for r in data.routers])
        sync_rows(self.table_of("reach"), self.reach_rows())
        sync_rows(self.table_of("sg"), self.sg_rows())
        self.show_plugin_tabs()
        self.show_counts()
        self.show_l3_detail()
        self.show_reach_detail()
        self.show_sg_members()
        self.show_dhcp()
        if summary:
            self.status.show_info(self.summary())

    def show_plugin_tabs(self) -> None:
        """Show the Reach tab on a node with VIPs, the Sec. groups tab on a node with
        security groups; hide them on one without."""
        tabs = self.query_one(TabbedContent)
        for tab_id in PLUGIN_TABS:
            if self.plugin_data(tab_id):
                tabs.show_tab(tab_id)
            else:
                if self.active_tab == tab_id:
                    self.show_tab(TABS[0].id)
                tabs.hide_tab(tab_id)

    def show_counts(self) -> None:
        tabs = self.query_one(TabbedContent)
        for tab in TABS:
            count = len(self.table_of(tab.id).rows_by_key)
            tabs.get_tab(tab.id).label = f"{tab.title} {count}"

    def show_dhcp(self) -> None:
        """The DHCP entries of the router under the cursor, with a title line."""
        title = self.query_one("#dhcp-title", Static)
        router = self.table_of("routers").cursor_row_data
        self.dhcp_router = None if router is None else str(router["uuid"])
        if router is None:
            self.dhcp.show([])
            title.update(
                "No virtual router: one is made when a VM first needs one on an L3 network "
                "it serves."
            )
            return
        rows = self.data.dhcp_rows(router)
        self.dhcp.show(rows)
        l3 = next((n for n in self.data.l3s if n["uuid"] == router.get("guestNetworkUuid")), {})
        head = f"DHCP of {router['name']}"
        if router.get("guestIp"):
            head += f" on {router['guestIp']}"
        parts = [f"{head}: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}"]
        if "DNS" in self.data.service_types(str(l3.get("uuid"))) and router.get("guestIp"):
            parts.append(f"DNS {router['guestIp']}")
        if l3.get("dnsDomain"):
            parts.append(f"domain {l3['dnsDomain']}")
        unserved = self.data.unserved(router)
        if unserved:
            parts.append(f"{unserved} stopped NIC{'s' if unserved > 1 else ''} not served")
        title.update(Text(" · ".join(parts)))

    def show_l3_detail(self) -> None:
        """What the L3 table's narrow columns leave out, for the L3 under the cursor."""
        detail = self.query_one("#l3-detail", Static)
        row = self.table_of("l3").cursor_row_data
        if row is None:
            detail.update("No L3 network.")
            return
        parts = [f"{row['name']}: {row.get('category')} on L2 {row.get('l2Name') or '?'}"]
        if row.get("dnsDomain"):
            parts.append(f"domain {row['dnsDomain']}")
        parts.append(f"services {row['services']}" if row.get("services") else "no network service")
        router = next(
            (r for r in self.data.routers if r.get("guestNetworkUuid") == row["uuid"]), None
        )
        if router is not None:
            parts.append(f"router {router['name']} ({router.get('status')})")
        ranges = len(self.data.ranges_of(str(row["uuid"])))
        parts.append(f"{ranges} IP range{'' if ranges == 1 else 's'}")
        if row.get("ipUsage"):
            parts.append(f"{row['ipUsage']} IPs used")
        detail.update(Text(" · ".join(parts)))

    def show_reach_detail(self) -> None:
        """The row under the cursor in full (the narrow columns cut the reach line)."""
        detail = self.query_one("#reach-detail", Static)
        row = self.table_of("reach").cursor_row_data
        detail.update(
            "No VIP: the VM verbs f (port forward) and e (EIP) make them."
            if row is None
            else Text(reach_detail(row))
        )

    def show_sg_members(self) -> None:
        """The rules and NICs of the group under the cursor, with a title line."""
        title = self.query_one("#sg-title", Static)
        rules, nics = (
            self.query_one("#sg-rules", ResourceTable),
            self.query_one("#sg-nics", ResourceTable),
        )
        group = self.table_of("sg").cursor_row_data
        if group is None or self.sg is None:
            rules.show([])
            nics.show([])
            title.update("No security group: n makes one.")
            return
        uuid = str(group["uuid"])
        rules.show(self.sg.rule_rows(uuid))
        nics.show(self.sg.nic_rows(uuid))
        n_rules, n_nics = len(self.sg.rules_of(uuid)), len(self.sg.refs_of(uuid))
        parts = [
            f"{group['name']}: {n_rules} rule{'' if n_rules == 1 else 's'}",
            f"{n_nics} NIC{'' if n_nics == 1 else 's'}",
            f"on {group['l3Names']}" if group.get("l3Names") else "attached to no L3 known",
            "a add/x delete rule · i add/u remove NIC",
        ]
        title.update(Text(" · ".join(parts)))

    @on(DataTable.RowHighlighted, "#sg-table")
    def _sg_highlighted(self) -> None:
        self.show_sg_members()

    @on(DataTable.RowHighlighted, "#reach-table")
    def _reach_highlighted(self) -> None:
        self.show_reach_detail()

    @on(DataTable.RowHighlighted, "#l3-table")
    def _l3_highlighted(self) -> None:
        self.show_l3_detail()

    @on(DataTable.RowHighlighted, "#routers-table")
    def _router_highlighted(self) -> None:
        router = self.table_of("routers").cursor_row_data
        if (None if router is None else str(router["uuid"])) != self.dhcp_router:
            self.show_dhcp()

    # -- events -------------------------------------------------------------------

    def on_node_event(self, path: str, data: Any) -> None:
        if path == "/appliance-vm/status/change" and isinstance(data, dict):
            self.apply_router_status(data)
        elif path in ("/vm/state/change", "/vm/deleted"):
            self.refresh_nics()

    def on_operation(self, record: dict[str, Any]) -> None:
        """A VIP, rule or EIP was made, changed or deleted (here or by a VM verb)."""
        if record.get("apiName") in REACH_APIS and record.get("status") != "Running":
            self.refresh_reach()
        if record.get("apiName") in SG_APIS and record.get("status") != "Running":
            self.refresh_sg()

    @work(exclusive=True, group="sg", exit_on_error=False)
    async def refresh_sg(self) -> None:
        """Read the security groups again, with the NICs and VMs they lead to."""
        await asyncio.sleep(REFRESH_DELAY)
        sg, nics, vms = await asyncio.gather(
            self.query_sg(), self.api_query("QueryVmNic"), self.api_query("QueryVmInstance")
        )
        self.sg, self.data.nics, self.data.vms = sg, nics, vms
        self.show_data(summary=False)

    @work(exclusive=True, group="reach", exit_on_error=False)
    async def refresh_reach(self) -> None:
        """Read the VIPs, rules and EIPs again, with the NICs and VMs they lead to."""
        await asyncio.sleep(REFRESH_DELAY)
        reach, nics, vms = await asyncio.gather(
            self.query_reach(), self.api_query("QueryVmNic"), self.api_query("QueryVmInstance")
        )
        self.reach, self.data.nics, self.data.vms = reach, nics, vms
        self.show_data(summary=False)

    def apply_router_status(self, data: Mapping[str, Any]) -> None:
        """One router's status changed: update its row (a new or destroyed router also
        changes NICs and IP usage: read them again)."""
        uuid = str(data.get("applianceVmUuid"))
        routers = self.table_of("routers")
        if data.get("newStatus") == "Destroyed":
            self.data.routers = [r for r in self.data.routers if r["uuid"] != uuid]
            routers.remove(uuid)
            self.refresh_nics()
        else:
            inventory = data.get("inventory")
            known = next((r for r in self.data.routers if r["uuid"] == uuid), None)
            if isinstance(inventory, Mapping):
                router = dict(inventory)
            elif known is not None:
                router = {**known, "status": data.get("newStatus")}
            else:
                self.refresh_nics()
                return
            self.data.routers = by_name(
                [*(r for r in self.data.routers if r["uuid"] != uuid), router]
            )
            routers.upsert(self.data.router_row(router))
            if known is None:
                self.refresh_nics()
        self.show_counts()
        self.show_l3_detail()
        if self.dhcp_router == uuid or self.dhcp_router is None:
            self.show_dhcp()
        self.status.show_info(self.summary())

    @work(exclusive=True, group="nics", exit_on_error=False)
    async def refresh_nics(self) -> None:
        """Read the NICs, VMs and routers again (after a short pause that gathers a burst
        of events into one read) and update usage, public IPs and DHCP entries."""
        await asyncio.sleep(REFRESH_DELAY)
        nics, vms, routers, reach, sg = await asyncio.gather(
            self.api_query("QueryVmNic"),
            self.api_query("QueryVmInstance"),
            self.api_query("QueryVirtualRouterVm"),
            self.query_reach(),  # an expunged VM's rules and EIPs are detached
            self.query_sg(),  # and its NICs leave their groups
        )
        self.data.nics, self.data.vms, self.data.routers = nics, vms, by_name(routers)
        self.reach, self.sg = reach, sg
        self.show_data(summary=False)  # the status line may say what a verb did

    def filter_applied(self) -> None:
        if self.active_tab == "routers":
            self.show_dhcp()
        elif self.active_tab == "sg":
            self.show_sg_members()

    # -- verbs --------------------------------------------------------------------

    def action_reconnect(self) -> None:
        """Reconnect the marked routers, or the one under the cursor
        (binding ``ztui.net.router.reconnect``)."""
        rows = self.table_of("routers").selection()
        if not rows:
            self.notify("No router selected.", severity="warning")
            return
        self.reconnect_routers(rows)

    @work(group="verbs", exit_on_error=False)
    async def reconnect_routers(self, rows: list[Mapping[str, Any]]) -> None:
        routers = self.table_of("routers")
        routers.clear_marks()
        names = ", ".join(str(r["name"]) for r in rows)
        self.status.show_info(f"reconnecting {names}…")
        results = await asyncio.gather(
            *(self.api_call("ReconnectVirtualRouter", {"uuid": r["uuid"]}) for r in rows)
        )
        for result in results:
            if isinstance(result, dict) and result.get("uuid"):
                self.apply_router_status(
                    {"applianceVmUuid": result["uuid"], "newStatus": result.get("status"),
                     "inventory": result}
                )  # fmt: skip
        if all(result is not None for result in results):
            self.status.show_info(f"{names} reconnected")

    def action_destroy(self) -> None:
        """Destroy the marked routers, or the one under the cursor, after a confirmation
        (binding ``ztui.net.router.destroy``)."""
        rows = self.table_of("routers").selection()
        if not rows:
            self.notify("No router selected.", severity="warning")
            return
        names = [str(r["name"]) for r in rows]
        text = question("Destroy", ROUTER_NOUN, names, ROUTER_WARNING)

        def answered(yes: bool | None) -> None:
            if yes:
                self.destroy_routers(rows)

        self.app.push_screen(ConfirmDialog(text, "Destroy"), answered)

    @work(group="verbs", exit_on_error=False)
    async def destroy_routers(self, rows: list[Mapping[str, Any]]) -> None:
        self.table_of("routers").clear_marks()
        done = await asyncio.gather(*(self.call_ok("DestroyVirtualRouter", r) for r in rows))
        for row, ok in zip(rows, done, strict=True):
            if ok:
                self.apply_router_status({"applianceVmUuid": row["uuid"], "newStatus": "Destroyed"})
        if all(done):
            self.status.show_info(f"{', '.join(str(r['name']) for r in rows)} destroyed")

    async def call_ok(self, api: str, row: Mapping[str, Any]) -> bool:
        """Call ``api`` on the row's resource; a failure is shown.  For APIs that answer
        no inventory, where ``api_call``'s None does not tell success from failure."""
        return await self.api_ok(api, {"uuid": row["uuid"]}, str(row["name"]))

    def action_delete_l3(self) -> None:
        """Delete the marked L3 networks, or the one under the cursor, after a confirmation
        (binding ``ztui.net.l3.delete``)."""
        rows = self.table_of("l3").selection()
        if not rows:
            self.notify("No L3 network selected.", severity="warning")
            return
        names = [str(r["name"]) for r in rows]
        text = question("Delete", L3_NOUN, names, L3_WARNING)

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_l3s(rows)

        self.app.push_screen(ConfirmDialog(text, "Delete"), answered)

    @work(group="verbs", exit_on_error=False)
    async def delete_l3s(self, rows: list[Mapping[str, Any]]) -> None:
        """One after the other (a router's public network can go only after its guests)."""
        self.table_of("l3").clear_marks()
        deleted = []
        for row in rows:
            if not await self.call_ok("DeleteL3Network", row):
                break  # the refusal is shown
            deleted.append(str(row["name"]))
        if not deleted:
            return
        refusal = self.status.text if len(deleted) < len(rows) else None
        await self.load()  # ranges, routers and usage go with it
        if refusal is not None:
            self.status.show_error(refusal)
        else:
            self.status.show_info(f"deleted {', '.join(deleted)}")

    # -- the Reach tab's verbs ----------------------------------------------------

    def action_delete_reach(self) -> None:
        """Delete the marked rules, EIPs and unused VIPs, or the one under the cursor,
        after a confirmation (binding ``ztui.net.reach.delete``)."""
        rows = self.table_of("reach").selection()
        if not rows:
            self.notify("Nothing selected.", severity="warning")
            return
        text = question("Delete", REACH_NOUN, [reach_name(r) for r in rows], REACH_DELETE_WARNING)

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_reach(rows)

        self.app.push_screen(ConfirmDialog(text, "Delete"), answered)

    @work(group="verbs", exit_on_error=False)
    async def delete_reach(self, rows: list[Mapping[str, Any]]) -> None:
        """One after the other, VIPs last (a VIP goes only once nothing uses it); the
        first refusal stops the rest."""
        self.table_of("reach").clear_marks()
        deleted = []
        for row in sorted(rows, key=lambda r: r["kind"] == KIND_VIP):
            if not await self.api_ok(DELETE_API[row["kind"]], {"uuid": row["uuid"]}, row["vip"]):
                break
            deleted.append(reach_name(row))
        await self.reload_reach()
        if len(deleted) == len(rows):
            self.status.show_info(f"deleted {', '.join(deleted)}")

    def action_detach(self) -> None:
        """Detach the marked rules and EIPs, or the one under the cursor, from their
        guests (binding ``ztui.net.reach.detach``)."""
        rows = [r for r in self.table_of("reach").selection() if r.get("vmNicUuid")]
        if not rows:
            self.notify("Nothing attached is selected: a rule or an EIP on a guest.")
            return
        self.detach_reach(rows)

    @work(group="verbs", exit_on_error=False)
    async def detach_reach(self, rows: list[Mapping[str, Any]]) -> None:
        self.table_of("reach").clear_marks()
        done = await asyncio.gather(
            *(self.api_ok(DETACH_API[r["kind"]], {"uuid": r["uuid"]}, r["vip"]) for r in rows)
        )
        await self.reload_reach()
        if all(done):
            self.status.show_info(f"detached {', '.join(reach_name(r) for r in rows)}")

    async def reload_reach(self) -> None:
        """Show the Reach tab as the node has it now (after a verb)."""
        reach = await self.query_reach()
        self.reach = reach
        self.show_data(summary=False)

    # -- the Sec. groups tab's verbs ------------------------------------------

    def cursor_group(self) -> Row | None:
        """The group under the cursor; None (said) when there is none."""
        group = self.table_of("sg").cursor_row_data
        if group is None or self.sg is None:
            self.notify("No security group selected (n makes one).", severity="warning")
            return None
        return dict(group)

    async def reload_sg(self, select: str | None = None) -> None:
        """Show the Sec. groups tab as the node has it now (after a verb), the cursor
        on group ``select`` if given."""
        self.sg = await self.query_sg()
        self.show_data(summary=False)
        if select is not None and self.table_of("sg").select_key(select):
            self.show_sg_members()

    def action_new_sg(self) -> None:
        """A new security group, attached to an L3 network (binding ``ztui.net.sg.new``)."""
        l3s = [
            (str(n["name"]), str(n["uuid"]))
            for n in self.data.l3s
            if n.get("category") == "Private"
        ]

        def answered(request: NewGroup | None) -> None:
            if request is not None:
                self.create_sg(request)

        self.app.push_screen(NewGroupDialog(l3s), answered)

    @work(group="verbs", exit_on_error=False)
    async def create_sg(self, request: NewGroup) -> None:
        """Create the group, then attach it; a refused attach deletes the group again."""
        self.status.show_info(f"creating security group {request.name}…")
        group = await self.api_call("CreateSecurityGroup", {"name": request.name})
        if not isinstance(group, dict):
            return
        uuid = str(group["uuid"])
        where = ""
        if request.l3_uuid is not None:
            attach = {"securityGroupUuid": uuid, "l3NetworkUuid": request.l3_uuid}
            if not await self.api_ok("AttachSecurityGroupToL3Network", attach, request.name):
                refusal = self.status.text
                await self.session.call("DeleteSecurityGroup", {"uuid": uuid})
                await self.reload_sg()
                self.status.show_error(refusal)
                return
            self.sg_attached.setdefault(uuid, set()).add(request.l3_uuid)
            where = f" on {self.data.name_of(self.data.l3s, request.l3_uuid)}"
        await self.reload_sg(select=uuid)
        self.status.show_info(f"created security group {request.name}{where}")

    def action_add_sg_rule(self) -> None:
        """Add a rule to the group under the cursor (binding ``ztui.net.sg.rule.add``)."""
        group = self.cursor_group()
        if group is None or self.sg is None:
            return
        groups = [(str(g["name"]), str(g["uuid"])) for g in self.sg.groups]

        def answered(params: dict[str, Any] | None) -> None:
            if params is not None:
                self.add_sg_rule(group, params)

        self.app.push_screen(RuleDialog(str(group["name"]), groups), answered)

    @work(group="verbs", exit_on_error=False)
    async def add_sg_rule(self, group: Row, params: dict[str, Any]) -> None:
        rule = await self.api_call(
            "AddSecurityGroupRule", {"securityGroupUuid": group["uuid"], **params}
        )
        if not isinstance(rule, dict):
            return
        await self.reload_sg(select=str(group["uuid"]))
        text = self.sg.rule_text(rule) if self.sg is not None else "a rule"
        self.status.show_info(f"{group['name']}: added {text}")

    def action_delete_sg_rule(self) -> None:
        """Delete one of the rules of the group under the cursor, chosen in a dialog
        (binding ``ztui.net.sg.rule.delete``)."""
        group = self.cursor_group()
        if group is None or self.sg is None:
            return
        sg = self.sg
        rules = sg.rule_rows(str(group["uuid"]))
        if not rules:
            self.notify(f"Security group {group['name']} has no rule.", severity="warning")
            return
        choices = [(sg.rule_text(r), str(r["uuid"])) for r in rules]
        texts = dict((v, k) for k, v in choices)

        def answered(uuid: str | None) -> None:
            if uuid is not None:
                self.delete_sg_rule(group, uuid, texts[uuid])

        dialog = ChoiceDialog(
            f"Delete a rule of {group['name']}", "The rule to delete:", choices, "Delete"
        )
        self.app.push_screen(dialog, answered)

    @work(group="verbs", exit_on_error=False)
    async def delete_sg_rule(self, group: Row, uuid: str, text: str) -> None:
        if not await self.api_ok("DeleteSecurityGroupRule", {"ruleUuids": [uuid]}, text):
            return
        await self.reload_sg(select=str(group["uuid"]))
        self.status.show_info(f"{group['name']}: deleted {text}")

    def action_add_sg_nic(self) -> None:
        """Put a VM's NIC in the group under the cursor, chosen among the NICs on its L3
        networks (binding ``ztui.net.sg.nic.add``)."""
        group = self.cursor_group()
        if group is None or self.sg is None:
            return
        private = {str(n["uuid"]) for n in self.data.l3s if n.get("category") == "Private"}
        nics = self.sg.candidates(group, private)
        if not nics:
            self.notify(
                f"No VM NIC can join security group {group['name']}: none with an address on "
                "a Private L3 network is out of it.",
                severity="warning",
            )
            return
        choices = [(f"{n['vmName']} {n.get('ip')} on {n['l3Name']}", str(n["uuid"])) for n in nics]
        texts = dict((v, k) for k, v in choices)

        def answered(uuid: str | None) -> None:
            if uuid is not None:
                self.add_sg_nic(group, uuid, texts[uuid])

        dialog = ChoiceDialog(
            f"Add a NIC to {group['name']}",
            "The VM NIC to guard with this group (the group must be attached to its L3 network):",
            choices,
            "Add",
        )
        self.app.push_screen(dialog, answered)

    @work(group="verbs", exit_on_error=False)
    async def add_sg_nic(self, group: Row, nic_uuid: str, text: str) -> None:
        params = {"securityGroupUuid": group["uuid"], "vmNicUuids": [nic_uuid]}
        if await self.api_call("AddVmNicToSecurityGroup", params) is None:
            return
        await self.reload_sg(select=str(group["uuid"]))
        self.status.show_info(f"{group['name']}: added NIC {text}")

    def action_remove_sg_nic(self) -> None:
        """Take one NIC out of the group under the cursor, chosen in a dialog (binding
        ``ztui.net.sg.nic.remove``)."""
        group = self.cursor_group()
        if group is None or self.sg is None:
            return
        rows = self.sg.nic_rows(str(group["uuid"]))
        if not rows:
            self.notify(f"Security group {group['name']} has no NIC.", severity="warning")
            return
        choices = [(f"{r['vmName']} {r['ip']}".strip(), str(r["vmNicUuid"])) for r in rows]
        texts = dict((v, k) for k, v in choices)

        def answered(uuid: str | None) -> None:
            if uuid is not None:
                self.remove_sg_nic(group, uuid, texts[uuid])

        dialog = ChoiceDialog(
            f"Remove a NIC from {group['name']}", "The NIC to take out:", choices, "Remove"
        )
        self.app.push_screen(dialog, answered)

    @work(group="verbs", exit_on_error=False)
    async def remove_sg_nic(self, group: Row, nic_uuid: str, text: str) -> None:
        params = {"securityGroupUuid": group["uuid"], "vmNicUuids": [nic_uuid]}
        if not await self.api_ok("DeleteVmNicFromSecurityGroup", params, text):
            return
        await self.reload_sg(select=str(group["uuid"]))
        self.status.show_info(f"{group['name']}: removed NIC {text}")

    def action_delete_sg(self) -> None:
        """Delete the marked groups, or the one under the cursor, after a confirmation
        (binding ``ztui.net.sg.delete``)."""
        rows = self.table_of("sg").selection()
        if not rows:
            self.notify("No security group selected.", severity="warning")
            return
        text = question("Delete", SG_NOUN, [str(r["name"]) for r in rows], SG_WARNING)

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_sgs(rows)

        self.app.push_screen(ConfirmDialog(text, "Delete"), answered)

    @work(group="verbs", exit_on_error=False)
    async def delete_sgs(self, rows: list[Mapping[str, Any]]) -> None:
        """One after the other; the first refusal stops the rest."""
        self.table_of("sg").clear_marks()
        deleted = []
        for row in rows:
            if not await self.call_ok("DeleteSecurityGroup", row):
                break
            self.sg_attached.pop(str(row["uuid"]), None)
            deleted.append(str(row["name"]))
        refusal = self.status.text if len(deleted) < len(rows) else None
        await self.reload_sg()
        if refusal is not None:
            self.status.show_error(refusal)
        elif deleted:
            self.status.show_info(f"deleted security group{'s' if len(deleted) > 1 else ''} "
                                  f"{', '.join(deleted)}")  # fmt: skip


DELETE_API = {
    KIND_PF: "DeletePortForwardingRule",
    KIND_EIP: "DeleteEip",
    KIND_VIP: "DeleteVip",
}
DETACH_API = {KIND_PF: "DetachPortForwardingRule", KIND_EIP: "DetachEip"}
REACH_KINDS = {KIND_PF: "port forwarding rule", KIND_EIP: "EIP", KIND_VIP: "VIP"}


def reach_detail(row: Mapping[str, Any]) -> str:
    """``port forwarding rule ssh: TCP 192.168.253.10:2222 → web 10.0.10.5:22 · from any ·
    reach it: ssh -p 2222 root@192.168.253.10``."""
    head = f"{REACH_KINDS[row['kind']]} {row.get('name')}"
    if row["kind"] == KIND_VIP:
        return f"{head}: {row['vip']}, {row['target']}; d deletes it"
    if row["kind"] == KIND_PF:
        text = f"{head}: {row['protocol']} {row['vip']} → {row['target']}"
    else:
        text = f"{head}: {row['vip']} ↔ {row['target']} (all traffic, both ways)"
    text += f" · from {row['allowed']}"
    if row.get("reach"):
        return f"{text} · reach it: {row['reach']}"
    return f"{text} · detached"


def reach_name(row: Mapping[str, Any]) -> str:
    """``port forwarding rule web-tcp-2222 (192.168.253.10:2222)``: a Reach row in words."""
    return f"{REACH_KINDS[row['kind']]} {row.get('name')} ({row['vip']})"

"""One VM in full: its inventory, NICs, tags, past operations and the tail of its serial
console, one tab each, kept live; the VMs view's one-key verbs act on it.

Pushed from the VMs view (Enter); Esc goes back.  Everything comes from the core's
APIs: ``QueryVmInstance``, ``QueryVmNic``, ``QuerySystemTag`` / ``QueryUserTag``,
``QueryOperationLog`` (and ``GetRunningOperations``) on the VM's uuid, and names from
the hosts, images, offerings and networks.  The console tab shows the last lines of
the console log, read from the console stream's history (opened for a moment when the
tab is shown: a Running or Paused VM only, and it takes the console from another
viewer, as any new viewer does).  Live: ``/vm/state/change`` updates the VM (and
re-reads its NICs), ``/operation/update`` adds its operations, ``/vm/deleted`` says it
is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

from core.kernel.errors import OperationError
from ztui import vm_disks, vm_reach, vm_verbs
from ztui.addressing import NO_DHCP, SERVICE_REFS, Services, dns_names, shown_ip
from ztui.columns import Column, Kind
from ztui.formatting import Formatter
from ztui.screens.base import ZtuiScreen
from ztui.screens.operations import (
    SEARCH_FIELD,
    DurationColumn,
    FailedStepColumn,
    OperationColumn,
    StatusColumn,
    WhenColumn,
    as_records,
    merge,
    operation_row,
)
from ztui.session import NodeSession, NotConnected
from ztui.vm_verbs import Verb, verb_bindings
from ztui.volumes import device_name
from ztui.widgets.operation_detail import OperationDetail
from ztui.widgets.resource_table import ResourceTable
from ztui.widgets.serial_terminal import SerialTerminal, mask_plain

Row = dict[str, Any]
Inventory = Mapping[str, Any]

TABS: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("nics", "NICs"),
    ("tags", "Tags"),
    ("ops", "Operations"),
    ("console", "Console"),
)
TAIL_LINES = 20
"""Lines of the console log the console tab shows."""
TAIL_TIMEOUT = 10.0
"""Seconds to wait for the console log's tail."""
OPS_LIMIT = 200
"""The VM's newest finished operations fetched."""
CONSOLE_STATES = ("Running", "Paused")

NIC_COLUMNS = (
    Column("name", "device"),
    Column("ip", "IP"),
    Column("macShown", "MAC"),
    Column("l3Name", "L3 network"),
    Column("gateway", "gateway"),
    Column("tap", "tap"),
    Column("bridge", "bridge"),
)
TAG_COLUMNS = (
    Column("type", "type"),
    Column("tag", "tag"),
    Column("createDate", "created", Kind.DATE),
)
OPERATION_COLUMNS: tuple[Column, ...] = (
    WhenColumn("createDate", "when"),
    OperationColumn("apiName", "operation"),
    StatusColumn("status", "status"),
    DurationColumn("duration", "took"),
    FailedStepColumn("failedStep", "failed step"),
)


# -- the data ----------------------------------------------------------------------------


def names(items: list[dict[str, Any]]) -> dict[str, str]:
    return {str(i["uuid"]): str(i.get("name") or "") for i in items}


def nic_row(
    nic: Inventory,
    l3s: Mapping[str, Inventory],
    l2s: Inventory,
    fmt: Formatter,
    services: Services | None = None,
) -> Row:
    """A NIC with its L3 network's name and the tap and bridge it is plugged through
    (MACs, taps and bridges differ between runs: masked for screenshots); an address no
    DHCP serves is marked ``(static)``."""
    l3 = l3s.get(str(nic.get("l3NetworkUuid")), {})
    l2 = l2s.get(str(l3.get("l2NetworkUuid")), {})
    return {
        **nic,
        "ip": shown_ip(nic, services),
        "macShown": fmt.volatile(nic.get("mac"), "mac"),
        "l3Name": l3.get("name", ""),
        "tap": fmt.volatile(nic.get("internalName"), "tap") if nic.get("internalName") else "",
        "bridge": fmt.volatile(l2.get("bridgeName"), "bridge") if l2.get("bridgeName") else "",
    }


def is_about(record: Inventory, vm_uuid: str) -> bool:
    """Whether an operation acted on the VM."""
    return record.get("resourceUuid") == vm_uuid or vm_uuid in (record.get("resourceUuids") or [])


def address_lines(
    vm: Inventory,
    nics: Sequence[Inventory],
    l3s: Mapping[str, Inventory],
    services: Services,
) -> list[tuple[str, str | Text]]:
    """``IPs`` (one NIC a line: the address, its network, and where no DHCP serves it,
    that the guest must be given it) and ``DNS names`` (as the network's virtual router
    answers them)."""
    ips: list[Text] = []
    names: list[str] = []
    for nic in sorted(nics, key=lambda n: int(n.get("deviceId") or 0)):
        if not nic.get("ip"):
            continue
        l3 = l3s.get(str(nic.get("l3NetworkUuid")), {})
        line = Text(f"{nic['ip']} on {l3.get('name') or '?'}")
        if not services.dhcp(nic.get("l3NetworkUuid")):
            line.append(f" — {NO_DHCP}", style="yellow")
        ips.append(line)
        names += [n for n in dns_names(vm, l3, services) if n not in names]
    return [
        ("IPs", Text("\n").join(ips) if ips else "none"),
        ("DNS names", ", ".join(names) if names else "none (no network serves DNS for it)"),
    ]


def render_overview(
    vm: Inventory,
    found: Mapping[str, str],
    fmt: Formatter,
    addresses: Sequence[tuple[str, str | Text]] = (),
) -> Table:
    """The VM's inventory, one field a line; ``found`` holds the names of its host,
    image, offering and default L3 network (keys ``host``, ``image``…) and its disks
    (``disks``: :func:`disks_line`), ``addresses`` the lines of :func:`address_lines`."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")
    running_on = vm.get("hostUuid")
    host = found.get("host", "")
    if not running_on and host:
        host = f"{host} (last)"
    lines: list[tuple[str, str | Text]] = [
        ("name", fmt.text(vm.get("name"))),
        ("state", fmt.state(vm.get("state"))),
        ("uuid", fmt.volatile(vm.get("uuid"), "uuid")),
        ("host", host),
        ("cpu / memory", f"{fmt.text(vm.get('cpuNum'))} vCPU · {fmt.size(vm.get('memorySize'))}"),
        ("image", found.get("image", "")),
        ("offering", found.get("offering", "")),
        ("default L3", found.get("l3", "")),
        *addresses,
        (
            "type",
            " · ".join(
                fmt.text(vm.get(k)) for k in ("type", "hypervisorType", "platform") if vm.get(k)
            ),
        ),
        ("root volume", fmt.volatile(vm.get("rootVolumeUuid"), "uuid")),
        ("disks", found.get("disks", "")),
        ("created", fmt.date(vm.get("createDate"))),
        ("last changed", fmt.date(vm.get("lastOpDate"))),
    ]
    if vm.get("description"):
        lines.append(("description", fmt.text(vm["description"])))
    for label, value in lines:
        grid.add_row(label, value)
    return grid


def disks_line(volumes: Sequence[Inventory], fmt: Formatter) -> str:
    """``vda 64M · vdb 1G data-1``: the VM's volumes by device, a data volume named."""
    parts = []
    for volume in sorted(volumes, key=lambda v: int(v.get("deviceId") or 0)):
        part = f"{device_name(volume.get('deviceId'))} {fmt.size(volume.get('size'))}"
        if volume.get("type") != "Root":
            part += f" {volume.get('name')}"
        parts.append(part)
    return " · ".join(parts) if parts else "none"


async def console_tail(session: NodeSession, vm_uuid: str) -> bytes:
    """The console log's tail, as a new console viewer gets it first (the console is
    opened for that moment only)."""
    stream = await session.open_console(vm_uuid)
    try:
        data = b""
        while len(data) < stream.history:
            chunk = await asyncio.wait_for(stream.read(), TAIL_TIMEOUT)
            if not chunk:
                break
            data += chunk
        return data[: stream.history]
    finally:
        await stream.close()


# -- the screen --------------------------------------------------------------------------


class VmDetailScreen(ZtuiScreen):
    """Tabs overview / NICs / tags / operations / console of one VM."""

    MUTATING = frozenset({"verb", "port_forward", "eip", "root_snapshot", "root_image"})

    DEFAULT_CSS = """
    VmDetailScreen TabbedContent {
        height: 1fr;
    }
    VmDetailScreen ContentSwitcher {
        height: 1fr;
    }
    VmDetailScreen TabPane {
        height: 1fr;
        padding: 0;
    }
    VmDetailScreen #overview-scroll {
        height: 1fr;
        padding: 0 1;
    }
    VmDetailScreen #gone {
        height: auto;
        padding: 0 1;
        background: $error 30%;
        display: none;
    }
    VmDetailScreen.-gone #gone {
        display: block;
    }
    VmDetailScreen #op-detail {
        display: none;
        border-top: none;
    }
    VmDetailScreen.-op-detail #op-detail {
        display: block;
    }
    VmDetailScreen.-op-detail #ops-table {
        display: none;
    }
    VmDetailScreen #tail-note {
        height: 1;
        padding: 0 1;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="ztui.back"),
        *verb_bindings("ztui.vm.detail"),
        *vm_reach.reach_bindings("ztui.vm.detail"),
        *vm_disks.disk_bindings("ztui.vm.detail"),
        Binding("c", "console", "Console", id="ztui.vm.detail.console"),
        Binding("right_square_bracket", "next_tab(1)", "Next tab", id="ztui.vm.detail.tab.next"),
        Binding(
            "left_square_bracket",
            "next_tab(-1)",
            "Prev tab",
            id="ztui.vm.detail.tab.prev",
            show=False,
        ),
    ]

    def __init__(self, vm_uuid: str) -> None:
        super().__init__()
        self.vm_uuid = vm_uuid
        self.vm: dict[str, Any] | None = None
        """The VM's inventory (None until loaded, or when it was never found)."""
        self.gone = False
        """The VM was deleted (expunged) while shown, or is not there."""
        self.found: dict[str, str] = {}
        """Names of the VM's host, image, offering and default L3 network."""
        self.l3s: dict[str, dict[str, Any]] = {}
        self.l2s: dict[str, dict[str, Any]] = {}
        self.hosts: dict[str, str] = {}
        self.nics: list[dict[str, Any]] = []
        self.services: Services | None = None
        """The network services of each L3 network (None until loaded)."""
        self.tails_read = 0
        """How many times the console tab's tail was read (tests wait on it)."""

    # -- layout -------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        yield Static(id="gone")
        with TabbedContent(initial="overview"):
            with TabPane("Overview", id="overview"), VerticalScroll(id="overview-scroll"):
                yield Static(Text("Loading…", style="dim"), id="overview-body")
            with TabPane("NICs", id="nics"):
                yield ResourceTable(NIC_COLUMNS, fmt=self.fmt, id="nics-table")
            with TabPane("Tags", id="tags"):
                yield ResourceTable(TAG_COLUMNS, fmt=self.fmt, id="tags-table")
            with TabPane("Operations", id="ops"):
                table = ResourceTable(OPERATION_COLUMNS, fmt=self.fmt, id="ops-table")
                table.sort_field, table.sort_reverse = "createDate", True  # newest first
                yield table
                yield OperationDetail(self.fmt, id="op-detail")
            with TabPane("Console", id="console"):
                yield Static(id="tail-note")
                yield SerialTerminal(self.fmt, max_lines=TAIL_LINES, show_cursor=False, id="tail")

    def on_mount(self) -> None:
        # (ZtuiScreen.on_mount runs after this one: Textual calls every class's handler)
        self.sub_title = self._title()
        self.query_one("#overview-scroll").focus()

    def _title(self) -> str:
        name = self.vm.get("name") if self.vm else None
        title = f"VM {name}" if name else "VM"
        return f"{title} · read-only" if self.context.read_only else title

    def table_of(self, tab: str) -> ResourceTable:
        return self.query_one(f"#{tab}-table", ResourceTable)

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active or TABS[0][0]

    def show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_next_tab(self, step: int) -> None:
        """Go to the next (or previous) tab (bindings ``ztui.vm.detail.tab.next`` / ``.prev``)."""
        ids = [tab for tab, _title in TABS]
        self.show_tab(ids[(ids.index(self.active_tab) + step) % len(ids)])

    @on(TabbedContent.TabActivated)
    def _tab_activated(self) -> None:
        tab = self.active_tab
        focus = {
            "overview": "#overview-scroll",
            "nics": "#nics-table",
            "tags": "#tags-table",
            "ops": "#op-detail" if self.has_class("-op-detail") else "#ops-table",
            "console": "#tail",
        }[tab]
        self.query_one(focus).focus()
        if tab == "console":
            self.read_tail()

    def on_screen_resume(self) -> None:
        """Back from the console: its tail shows what happened there."""
        if self.context.connected and self.active_tab == "console":
            self.read_tail()

    # -- loading ------------------------------------------------------------------

    async def load(self) -> None:
        uuid = self.vm_uuid
        on_vm = {"conditions": [f"resourceUuid={uuid}"]}
        (
            vms,
            nics,
            system_tags,
            user_tags,
            finished,
            running,
            hosts,
            images,
            offerings,
            l3s,
            l2s,
            refs,
            volumes,
        ) = await asyncio.gather(
            self.api_query("QueryVmInstance", {"conditions": [f"uuid={uuid}"]}),
            self.api_query("QueryVmNic", {"conditions": [f"vmInstanceUuid={uuid}"]}),
            self.api_query("QuerySystemTag", on_vm),
            self.api_query("QueryUserTag", on_vm),
            self.api_query(
                "QueryOperationLog",
                {**on_vm, "sortBy": "createDate", "sortDirection": "desc", "limit": OPS_LIMIT},
            ),
            self.api_call("GetRunningOperations", {"resourceUuid": uuid}),
            self.api_query("QueryHost"),
            self.api_query("QueryImage"),
            self.api_query("QueryInstanceOffering"),
            self.api_query("QueryL3Network"),
            self.api_query("QueryL2Network"),
            self.api_query(SERVICE_REFS),
            self.api_query("QueryVolume", {"conditions": [f"vmInstanceUuid={uuid}"]}),
        )
        if not vms:
            if not self.load_failed:
                self.mark_gone("no longer exists")
            return
        self.l3s = {str(n["uuid"]): n for n in l3s}
        self.l2s = {str(n["uuid"]): n for n in l2s}
        vm = vms[0]
        self.found = {
            "host": names(hosts).get(str(vm.get("hostUuid") or vm.get("lastHostUuid")), ""),
            "image": names(images).get(str(vm.get("imageUuid")), ""),
            "offering": names(offerings).get(str(vm.get("instanceOfferingUuid")), ""),
            "l3": names(l3s).get(str(vm.get("defaultL3NetworkUuid")), ""),
            "disks": disks_line(volumes, self.fmt),
        }
        self.hosts = names(hosts)
        self.services = Services.of(refs)
        self.nics = nics
        self.show_vm(vm)
        self.show_nics(nics)
        tags = [{**t, "type": "system"} for t in system_tags]
        tags += [{**t, "type": "user"} for t in user_tags]
        self.table_of("tags").show(sorted(tags, key=lambda t: (t["type"], str(t.get("tag")))))
        live = [r for r in self.context.operations.newest_first() if is_about(r, uuid)]
        records = merge(finished, as_records(running), reversed(live)).values()
        self.table_of("ops").show([self._operation_row(r) for r in records])
        self._show_counts()
        if self.active_tab == "console":
            self.read_tail()
        self.show_loaded(self.summary())

    def show_vm(self, vm: dict[str, Any]) -> None:
        """Show the VM's inventory (after a load or a state change)."""
        self.vm = vm
        host_uuid = vm.get("hostUuid") or vm.get("lastHostUuid")
        if host_uuid and str(host_uuid) in self.hosts:
            self.found["host"] = self.hosts[str(host_uuid)]
        self._show_overview()
        self.sub_title = self._title()
        self.refresh_bindings()

    def _show_overview(self) -> None:
        if self.vm is None:
            return
        addresses = (
            address_lines(self.vm, self.nics, self.l3s, self.services)
            if self.services is not None
            else ()
        )
        body = render_overview(self.vm, self.found, self.fmt, addresses)
        self.query_one("#overview-body", Static).update(body)

    def show_nics(self, nics: list[dict[str, Any]]) -> None:
        """Show the NICs (their addresses on the overview too)."""
        self.nics = nics
        self._show_overview()
        rows = [nic_row(n, self.l3s, self.l2s, self.fmt, self.services) for n in nics]
        self.table_of("nics").show(sorted(rows, key=lambda n: int(n.get("deviceId") or 0)))
        self._show_counts()

    def _operation_row(self, record: Mapping[str, Any]) -> Row:
        name = self.vm.get("name") if self.vm else None
        return operation_row(record, {self.vm_uuid: str(name)} if name else {})

    def _show_counts(self) -> None:
        tabs = self.query_one(TabbedContent)
        for tab, title in TABS:
            if tab in ("nics", "tags", "ops"):
                tabs.get_tab(tab).label = f"{title} {len(self.table_of(tab).rows_by_key)}"

    def summary(self) -> str:
        if self.vm is None:
            return ""
        return f"VM {self.vm.get('name')} · {self.vm.get('state')}"

    # -- the console's tail -------------------------------------------------------

    @work(exclusive=True, group="tail", exit_on_error=False)
    async def read_tail(self) -> None:
        """Show the console log's last lines (a Running or Paused VM's only)."""
        note = self.query_one("#tail-note", Static)
        tail = self.query_one("#tail", SerialTerminal)
        vm = self.vm
        name = vm.get("name") if vm else "the VM"
        if self.gone or vm is None:
            note.update("The VM is gone: no console to read.")
        elif vm.get("state") not in CONSOLE_STATES:
            note.update(f"VM {name} is {vm.get('state')}: its console can be read while it runs.")
        else:
            note.update(f"reading the console log of {name}…")
            try:
                data = await console_tail(self.session, self.vm_uuid)
            except (OperationError, TimeoutError) as exc:
                why = str(exc.error) if isinstance(exc, OperationError) else "no answer in time"
                text = f"cannot read the console of {name}: {why}"
                text = mask_plain(text.replace(self.vm_uuid, str(name)), self.fmt)
                note.update(Text(text, style="red"))
            except NotConnected:
                return
            else:
                tail.clear()
                tail.write(data, answer=False)
                if not data:
                    note.update(f"The console log of {name} is empty · c opens the console")
                else:
                    note.update(
                        f"The last {TAIL_LINES} lines of the console log · c opens the console"
                    )
        self.tails_read += 1

    # -- live ---------------------------------------------------------------------

    def on_node_event(self, path: str, data: Any) -> None:
        if not isinstance(data, dict) or data.get("vmUuid") != self.vm_uuid or self.gone:
            return
        if path == "/vm/state/change" and isinstance(data.get("inventory"), dict):
            self.show_vm(data["inventory"])
            self.status.show_info(self.summary())
            self._refresh_nics()
        elif path == "/vm/deleted":
            self.mark_gone("was deleted")

    @work(exclusive=True, group="nics", exit_on_error=False)
    async def _refresh_nics(self) -> None:
        """A state change may give or take the NICs' addresses."""
        nics = await self.api_query(
            "QueryVmNic", {"conditions": [f"vmInstanceUuid={self.vm_uuid}"]}
        )
        if not self.gone:
            self.show_nics(nics)

    def on_operation(self, record: dict[str, Any]) -> None:
        if not is_about(record, self.vm_uuid):
            return
        table = self.table_of("ops")
        is_new = str(record.get("uuid")) not in table.rows_by_key
        at_top = table.cursor_row == 0
        table.upsert(self._operation_row(record))
        if is_new and at_top and table.row_count:
            table.move_cursor(row=0)  # the newest operation stays under the cursor
        self._show_counts()
        detail = self.query_one(OperationDetail)
        if detail.record is not None and detail.record.get("uuid") == record.get("uuid"):
            detail.record = record

    def mark_gone(self, how: str) -> None:
        """The VM is no more: say so, keep what was shown, take the verbs away."""
        self.gone = True
        name = self.vm.get("name") if self.vm else self.fmt.volatile(self.vm_uuid, "uuid")
        text = f"VM {name} {how}: it is gone · Esc goes back"
        self.query_one("#gone", Static).update(Text(text, style="bold"))
        self.add_class("-gone")
        self.status.show_error(text)
        self.refresh_bindings()

    # -- operations ---------------------------------------------------------------

    @on(ResourceTable.RowSelected, "#ops-table")
    def _operation_selected(self) -> None:
        """Enter on an operation shows its flow chains step by step (Esc: the list)."""
        row = self.table_of("ops").cursor_row_data
        if row is None:
            return
        detail = self.query_one(OperationDetail)
        detail.record = {
            k: v for k, v in row.items() if k not in ("resourceName", "failedStep", SEARCH_FIELD)
        }
        self.add_class("-op-detail")
        detail.focus()

    # -- verbs and leaving --------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("verb", "console", "port_forward", "eip", "root_snapshot", "root_image") and (
            self.gone or self.vm is None
        ):
            return False
        return super().check_action(action, parameters)

    def action_verb(self, name: str) -> None:
        """Run a verb on this VM (bindings ``ztui.vm.detail.*``: the VMs view's keys)."""
        vm_verbs.ask_verb(self, name, [self.vm] if self.vm else [], self.run_verb)

    @work(group="verbs", exit_on_error=False)
    async def run_verb(self, verb: Verb, rows: list[Mapping[str, Any]]) -> None:
        results = await vm_verbs.run_verb(self, verb, rows)
        for inventory in vm_verbs.vm_inventories(results):
            if inventory.get("uuid") == self.vm_uuid and not self.gone:
                self.show_vm(inventory)

    def action_port_forward(self) -> None:
        """Forward a port of this VM (binding ``ztui.vm.detail.port-forward``)."""
        vm_reach.port_forward(self, self.vm)

    def action_eip(self) -> None:
        """Give this VM an EIP, or take it away (binding ``ztui.vm.detail.eip``)."""
        vm_reach.toggle_eip(self, self.vm)

    def action_root_snapshot(self) -> None:
        """Snapshot this VM's root volume (binding ``ztui.vm.detail.snapshot``)."""
        vm_disks.snapshot(self, self.vm)

    def action_root_image(self) -> None:
        """Make an image of this VM's root volume (binding ``ztui.vm.detail.image``)."""
        vm_disks.create_image(self, self.vm)

    def action_console(self) -> None:
        """Attach to the VM's serial console (binding ``ztui.vm.detail.console``)."""
        if self.vm is None:
            return
        from ztui.screens.console import ConsoleScreen

        self.app.push_screen(ConsoleScreen(self.vm_uuid, str(self.vm.get("name"))))

    def action_back(self) -> None:
        """Esc: from an operation's steps back to the list, else back to where the
        detail was opened (binding ``ztui.back``)."""
        if self.has_class("-op-detail") and self.active_tab == "ops":
            self.remove_class("-op-detail")
            self.table_of("ops").focus()
            return
        self.dismiss()

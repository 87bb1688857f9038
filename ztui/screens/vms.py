"""The VMs view: every VM with its state in colour, IPs, host, size, image and age,
kept live from ``/vm/state/change``; one-key verbs act on the marked VMs or the
one under the cursor."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from textual import on, work
from textual.binding import Binding, BindingType

from ztui import vm_disks, vm_reach, vm_verbs
from ztui.addressing import SERVICE_REFS, Services, shown_ip
from ztui.columns import VM_COLUMNS
from ztui.dialogs.create_vm import CreateVmDialog, VmRequest
from ztui.screens.base import ResourceScreen
from ztui.vm_verbs import Verb, verb_bindings
from ztui.widgets.resource_table import ResourceTable

Row = dict[str, Any]


def vm_row(
    inventory: Mapping[str, Any],
    ips: Mapping[str, str],
    hosts: Mapping[str, str],
    images: Mapping[str, str],
) -> Row:
    """A VM inventory with what the table shows beside it: IPs, host and image names."""
    uuid = str(inventory["uuid"])
    host_uuid = inventory.get("hostUuid") or inventory.get("lastHostUuid")
    return {
        **inventory,
        "ips": ips.get(uuid, ""),
        "hostName": hosts.get(str(host_uuid), "") if host_uuid else "",
        "imageName": images.get(str(inventory.get("imageUuid")), ""),
    }


def ips_by_vm(nics: list[dict[str, Any]], services: Services | None = None) -> dict[str, str]:
    """``{vm uuid: "10.0.0.5, 192.168.1.7 (static)"}`` (default NIC first, as the NICs are
    ordered; an address no DHCP serves is marked: the guest must be given it)."""
    found: dict[str, list[str]] = {}
    for nic in sorted(nics, key=lambda n: int(n.get("deviceId") or 0)):
        if nic.get("ip"):
            found.setdefault(str(nic["vmInstanceUuid"]), []).append(shown_ip(nic, services))
    return {vm: ", ".join(ips) for vm, ips in found.items()}


class VmsScreen(ResourceScreen):
    VIEW = "vms"
    COLUMNS = VM_COLUMNS
    MARKABLE = True
    MUTATING = frozenset({"create", "verb", "port_forward", "eip", "root_snapshot", "root_image"})

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "create", "New", id="ztui.vm.create"),
        *verb_bindings("ztui.vm"),
        *vm_reach.reach_bindings("ztui.vm"),
        *vm_disks.disk_bindings("ztui.vm"),
        Binding("c", "console", "Console", id="ztui.vm.console"),
        Binding("enter", "details", "Details", id="ztui.vm.details", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.hosts: dict[str, str] = {}
        self.images: dict[str, str] = {}
        self.services: Services | None = None
        """The network services of each L3 network (an address without DHCP is marked)."""

    # -- loading ------------------------------------------------------------------

    async def load(self) -> None:
        vms, nics, hosts, images, refs = await asyncio.gather(
            self.api_query("QueryVmInstance", {"sortBy": "createDate"}),
            self.api_query("QueryVmNic"),
            self.api_query("QueryHost"),
            self.api_query("QueryImage"),
            self.api_query(SERVICE_REFS),
        )
        self.hosts = {str(h["uuid"]): str(h["name"]) for h in hosts}
        self.images = {str(i["uuid"]): str(i["name"]) for i in images}
        self.services = Services.of(refs)
        ips = ips_by_vm(nics, self.services)
        self.table.show([vm_row(vm, ips, self.hosts, self.images) for vm in vms])
        self.show_loaded(self.summary())

    def on_node_event(self, path: str, data: Any) -> None:
        if path == "/vm/state/change" and isinstance(data, dict) and data.get("inventory"):
            self.apply_state_change(data["inventory"])
        elif path == "/vm/deleted" and isinstance(data, dict):
            self.table.remove(str(data.get("vmUuid")))
            self.status.show_info(self.summary())

    def apply_state_change(self, inventory: Mapping[str, Any]) -> None:
        """Update one VM's row from its new inventory (and fetch its IPs once it runs)."""
        uuid = str(inventory["uuid"])
        before = self.table.rows_by_key.get(uuid)
        ips = {uuid: str(before.get("ips", ""))} if before else {}
        row = vm_row(inventory, ips, self.hosts, self.images)
        self.table.upsert(row)
        if inventory.get("state") == "Running" and not row["ips"]:
            self._fetch_ips(uuid)
        elif before is None:
            self.status.show_info(self.summary())

    @work(group="ips", exit_on_error=False)
    async def _fetch_ips(self, vm_uuid: str) -> None:
        nics = await self.api_query("QueryVmNic", {"conditions": [f"vmInstanceUuid={vm_uuid}"]})
        row = self.table.rows_by_key.get(vm_uuid)
        if row is not None:
            if str(row.get("hostUuid")) not in self.hosts:
                hosts = await self.api_query("QueryHost")
                self.hosts = {str(h["uuid"]): str(h["name"]) for h in hosts}
            ips = ips_by_vm(nics, self.services)
            self.table.upsert(vm_row(row, ips, self.hosts, self.images))

    @on(ResourceTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_details()

    # -- verbs --------------------------------------------------------------------

    def action_create(self) -> None:
        """Open the create-VM dialog (binding ``ztui.vm.create``)."""
        self.app.push_screen(CreateVmDialog(), self._create_requested)

    def _create_requested(self, request: VmRequest | None) -> None:
        if request is not None:
            self.create_vms(request)

    @work(group="verbs", exit_on_error=False)
    async def create_vms(self, request: VmRequest) -> None:
        """Create the VMs one after the other; their rows come with their events."""
        made = 0
        for name in request.names:
            self.status.show_info(f"creating {name}…")
            inventory = await self.api_call("CreateVmInstance", request.params(name))
            if inventory is None:
                break  # the error is shown; do not go on with the others
            made += 1
            self.apply_state_change(inventory)
        if made == len(request.names):
            self.status.show_info(f"created {', '.join(request.names)}")

    def action_verb(self, name: str) -> None:
        """Run a verb on the marked VMs, or the one under the cursor (bindings ``ztui.vm.*``)."""
        vm_verbs.ask_verb(self, name, self.table.selection(), self.run_verb)

    @work(group="verbs", exit_on_error=False)
    async def run_verb(self, verb: Verb, rows: list[Mapping[str, Any]]) -> None:
        self.table.clear_marks()
        results = await vm_verbs.run_verb(self, verb, rows)
        for inventory in vm_verbs.vm_inventories(results):
            self.apply_state_change(inventory)

    def action_port_forward(self) -> None:
        """Forward a port of the VM under the cursor (binding ``ztui.vm.port-forward``)."""
        vm_reach.port_forward(self, self.table.cursor_row_data)

    def action_eip(self) -> None:
        """Give the VM under the cursor an EIP, or take it away (binding ``ztui.vm.eip``)."""
        vm_reach.toggle_eip(self, self.table.cursor_row_data)

    def action_root_snapshot(self) -> None:
        """Snapshot the root volume of the VM under the cursor (binding ``ztui.vm.snapshot``)."""
        vm_disks.snapshot(self, self.table.cursor_row_data)

    def action_root_image(self) -> None:
        """Make an image of the root volume of the VM under the cursor (binding
        ``ztui.vm.image``)."""
        vm_disks.create_image(self, self.table.cursor_row_data)

    def action_console(self) -> None:
        """Attach to the serial console of the VM under the cursor (binding ``ztui.vm.console``)."""
        row = self.table.cursor_row_data
        if row is None:
            return
        from ztui.screens.console import ConsoleScreen

        self.app.push_screen(ConsoleScreen(str(row["uuid"]), str(row["name"])))

    def action_details(self) -> None:
        """Show the VM under the cursor (binding ``ztui.vm.details``)."""
        row = self.table.cursor_row_data
        if row is None:
            return
        from ztui.screens.vm_detail import VmDetailScreen

        self.app.push_screen(VmDetailScreen(str(row["uuid"])))

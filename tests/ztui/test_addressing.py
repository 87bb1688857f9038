"""A VM on a network without DHCP (the default ``public``) is told plainly that its address
must be configured in the guest: in the create-VM dialog, the VMs table and the VM detail;
the VM detail names the DNS names the virtual router serves; the network checkboxes read
without colour."""

from __future__ import annotations

from pathlib import Path

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.virtual_router.conftest import make_net_lab
from tests.ztui.conftest import LARGE, SMALL, app_on, shown, wait_until
from tests.ztui.test_vm_detail import overview
from ztui.addressing import Services, dns_names, network_label, shown_ip
from ztui.dialogs.create_vm import CreateVmDialog, NetworkList
from ztui.screens.vm_detail import VmDetailScreen
from ztui.screens.vms import VmsScreen

PUBLIC_LABEL = "public (Public) — no DHCP: configure the IP in the guest"


def test_addresses_without_dhcp_are_marked() -> None:
    services = Services.of(
        [{"l3NetworkUuid": "priv", "networkServiceType": t} for t in ("DHCP", "DNS", "SNAT")]
    )
    assert shown_ip({"ip": "10.0.0.5", "l3NetworkUuid": "priv"}, services) == "10.0.0.5"
    assert shown_ip({"ip": "192.168.1.9", "l3NetworkUuid": "pub"}, services) == (
        "192.168.1.9 (static)"
    )
    assert shown_ip({"ip": "192.168.1.9", "l3NetworkUuid": "pub"}, None) == "192.168.1.9"
    public = {"uuid": "pub", "name": "public", "category": "Public"}
    assert network_label(public, services) == PUBLIC_LABEL
    private = {"uuid": "priv", "name": "private", "category": "Private", "dnsDomain": "lab.lan"}
    assert network_label(private, services) == "private (Private)"
    vm = {"uuid": "0123456789abcdef", "name": "Web_1"}
    assert dns_names(vm, private, services) == ["web-1.lab.lan", "web-1"]
    assert dns_names(vm, {**private, "dnsDomain": None}, services) == ["web-1"]
    assert dns_names(vm, public, services) == []


async def test_the_dialog_says_which_network_has_no_dhcp_and_reads_without_colour(
    node: ManagementNode, tmp_path: Path
) -> None:
    await make_net_lab(node, tmp_path)
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        await shown(pilot, VmsScreen)
        await pilot.press("n")
        dialog = await shown(pilot, CreateVmDialog)
        await wait_until(pilot, lambda: dialog.loaded, what="the dialog's choices")
        networks = dialog.query_one("#networks", NetworkList)
        await pilot.pause()
        plain = [networks.render_line(y).text.rstrip() for y in range(2)]
        assert plain == ["▐X▌ private (Private)", f"▐ ▌ {PUBLIC_LABEL}"]
        networks.focus()
        networks.highlighted = 1
        await pilot.press("space")  # mark public too
        await pilot.pause()
        assert len(networks.selected) == 2
        assert networks.render_line(1).text.startswith("▐X▌ public")


async def test_the_table_and_the_detail_say_the_ip_is_static(
    node: ManagementNode, tmp_path: Path
) -> None:
    net = await make_net_lab(node, tmp_path)
    vm = await ok(
        node,
        "CreateVmInstance",
        name="web1",
        instanceOfferingUuid=net.lab.offering["uuid"],
        imageUuid=net.lab.image_uuid,
        l3NetworkUuids=[net.private_l3["uuid"], net.public_l3["uuid"]],
    )
    nics = sorted(
        await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"]),
        key=lambda n: n["deviceId"],
    )
    private_ip, public_ip = nics[0]["ip"], nics[1]["ip"]
    app = app_on(node)
    async with app.run_test(size=LARGE) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        [row] = screen.table.rows_by_key.values()
        assert row["ips"] == f"{private_ip}, {public_ip} (static)"
        await pilot.press("enter")
        detail = await shown(pilot, VmDetailScreen)
        lines = [line.rstrip() for line in overview(detail).splitlines()]
        assert f"IPs           {private_ip} on private" in lines
        assert any(
            line.endswith(f"{public_ip} on public — no DHCP: configure the IP in the guest")
            for line in lines
        )
        assert "DNS names     web1.lab.lan, web1" in lines
        nic_ips = detail.table_of("nics").column_values("ip")
        assert nic_ips == [private_ip, f"{public_ip} (static)"]

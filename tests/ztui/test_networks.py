"""Pilot tests of the networks view on a simulator lab with a virtual router: each tab's
rows, the router's DHCP entries, the verbs (reconnect, destroy, delete L3) through their
keys, live router status, per-tab filter, read-only."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from core.kernel.node import ManagementNode
from core.virtual_router.plugin import STATUS_EVENT, VirtualRouterPlugin
from tests.conftest import ok
from tests.core.virtual_router.conftest import NetLab, make_net_lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from ztui.dialogs.confirm import ConfirmDialog
from ztui.screens.networks import NetworkData, NetworksScreen
from ztui.widgets.resource_table import ResourceTable


def router_agents(data_dir: Path) -> list[str]:
    """The pids of the virtual-router agents of this data dir's simulated hosts."""
    found = subprocess.run(
        ["pgrep", "-f", f"virtual_router.main --socket .*{data_dir}"],
        capture_output=True,
        text=True,
    )
    return found.stdout.split()


@pytest.fixture
async def net_lab(node: ManagementNode, tmp_path: Path) -> AsyncIterator[NetLab]:
    """The virtual-router lab with two VMs on the private L3 (so its router exists).

    Stopping the node stops the simulated host, which ends the router agents it started
    (as in tests/core/virtual_router): checked at the end."""
    lab = await make_net_lab(node, tmp_path)
    await lab.create_vm("web-1")
    await lab.create_vm("web-2")
    yield lab
    if node.running:
        await node.stop()
    assert router_agents(node.data_dir) == []


def cells(table: ResourceTable, *fields: str) -> list[tuple[str, ...]]:
    columns = [table.column_values(f) for f in fields]
    return list(zip(*columns, strict=True))


def column(table: ResourceTable, key: str, field: str) -> dict[str, str]:
    """``{key column value: field value}`` of every shown row."""
    return dict(zip(table.column_values(key), table.column_values(field), strict=True))


async def open_view(pilot: Pilot, tab: str = "l3") -> NetworksScreen:
    await pilot.press("4")
    screen = await shown(pilot, NetworksScreen)
    if tab != "l3":
        screen.show_tab(tab)
        await wait_until(pilot, lambda: screen.active_tab == tab, what=f"tab {tab}")
    return screen


async def nics_of(lab: NetLab) -> dict[str, dict[str, Any]]:
    """VM name -> its NIC."""
    vms = {v["uuid"]: v["name"] for v in await ok(lab.node, "QueryVmInstance")}
    return {
        vms[n["vmInstanceUuid"]]: n
        for n in await ok(lab.node, "QueryVmNic")
        if n["vmInstanceUuid"] in vms
    }


async def test_each_tab_shows_its_data(net_lab: NetLab) -> None:
    node = net_lab.node
    router = await net_lab.router()
    assert router is not None
    [host] = await ok(node, "QueryHost")
    [cluster] = await ok(node, "QueryCluster")
    l2s = {n["name"]: n for n in await ok(node, "QueryL2Network")}
    router_nics = {
        n["metaData"]: n["ip"]
        for n in await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={router['uuid']}"])
    }
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_view(pilot)
        l3 = screen.table_of("l3")
        assert screen.table is l3
        assert cells(l3, "name", "category", "cidr", "gateway", "ipUsage", "l2Name") == [
            ("private", "Private", "10.10.0.0/24", "10.10.0.1", "2/253", "private-l2"),
            ("public", "Public", "203.0.113.0/24", "203.0.113.1", "1/253", "public-l2"),
        ]  # two VMs on private; the router's public NIC (its guest NIC is the gateway)
        assert column(l3, "name", "services") == {
            "private": "DHCP,DNS,SNAT (VirtualRouter)",
            "public": "",
        }
        assert column(l3, "name", "dnsDomain") == {"private": "lab.lan", "public": ""}
        detail = str(screen.query_one("#l3-detail").render())
        assert "private: Private on L2 private-l2 · domain lab.lan" in detail
        assert "services DHCP,DNS,SNAT (VirtualRouter) · router vr-private (Connected)" in detail
        await pilot.press("down")
        detail = str(screen.query_one("#l3-detail").render())
        assert detail.startswith("public: Public on L2 public-l2 · no network service")

        await pilot.press("right_square_bracket")
        assert screen.active_tab == "l2"
        l2 = screen.table_of("l2")
        assert cells(l2, "name", "type", "switch", "vlan", "bridge") == [
            (name, "L2NoVlanNetwork", "LinuxBridge", "", l2s[name]["bridgeName"])
            for name in ("private-l2", "public-l2")
        ]
        assert column(l2, "name", "clusters") == {
            "private-l2": cluster["name"],
            "public-l2": cluster["name"],
        }

        await pilot.press("right_square_bracket")
        ranges = screen.table_of("ranges")
        assert cells(ranges, "l3Name", "startIp", "endIp", "networkCidr", "ipUsage") == [
            ("private", "10.10.0.2", "10.10.0.254", "10.10.0.0/24", "2/253"),
            ("public", "203.0.113.2", "203.0.113.254", "203.0.113.0/24", "1/253"),
        ]

        await pilot.press("right_square_bracket")
        routers = screen.table_of("routers")
        assert cells(routers, "name", "status", "state", "hostName", "guestName", "publicIp") == [
            (
                "vr-private",
                "Connected",
                "Running",
                host["name"],
                "private",
                router_nics["public"],
            )
        ]
        assert routers.column_values("pid") == [str(router["agentPid"])]
        assert router_nics["guest"] == "10.10.0.1"

        nics = await nics_of(net_lab)
        assert cells(screen.dhcp, "vmName", "macAddress", "ip", "fqdn", "default") == [
            ("web-1", nics["web-1"]["mac"], "10.10.0.2", "web-1.lab.lan", "yes"),
            ("web-2", nics["web-2"]["mac"], "10.10.0.3", "web-2.lab.lan", "yes"),
        ]
        served = await net_lab.served()  # what the router's dnsmasq was given
        assert {
            mac: ip for _vm, mac, ip in cells(screen.dhcp, "vmName", "macAddress", "ip")
        } == served
        title = str(screen.query_one("#dhcp-title").render())
        assert "DHCP of vr-private on 10.10.0.1: 2 entries" in title
        assert "DNS 10.10.0.1" in title and "domain lab.lan" in title

        await pilot.press("right_square_bracket")  # the node has VIPs: their tab (empty)
        assert screen.active_tab == "reach"
        assert screen.table_of("reach").row_count == 0
        await pilot.press("right_square_bracket")  # and security groups: theirs (empty)
        assert screen.active_tab == "sg"
        assert screen.table_of("sg").row_count == 0
        await pilot.press("right_square_bracket")  # around to the first tab
        assert screen.active_tab == "l3"
        await pilot.press("left_square_bracket")
        assert screen.active_tab == "sg"


async def test_dhcp_entries_follow_vm_states(net_lab: NetLab) -> None:
    node = net_lab.node
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_view(pilot, "routers")
        vms = {v["name"]: v["uuid"] for v in await ok(node, "QueryVmInstance")}
        await ok(node, "StopVmInstance", uuid=vms["web-1"])
        await wait_until(
            pilot,
            lambda: screen.dhcp.column_values("vmName") == ["web-2"],
            what="web-1's entry to go",
        )
        assert "1 stopped NIC not served" in str(screen.query_one("#dhcp-title").render())
        assert list((await net_lab.served()).values()) == ["10.10.0.3"]
        vm = await net_lab.create_vm("db")
        await wait_until(
            pilot,
            lambda: screen.dhcp.column_values("vmName") == ["web-2", "db"],
            what="db's entry",
        )
        assert column(screen.table_of("l3"), "name", "ipUsage")["private"] == "3/253"
        await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
        await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])
        await wait_until(
            pilot,
            lambda: column(screen.table_of("l3"), "name", "ipUsage")["private"] == "2/253",
            what="db's IP to be returned",
        )
        assert screen.dhcp.column_values("vmName") == ["web-2"]


async def test_reconnect_through_the_key(net_lab: NetLab) -> None:
    node = net_lab.node
    before = await net_lab.router()
    assert before is not None
    served = await net_lab.served()
    os.kill(before["agentPid"], signal.SIGKILL)  # the agent is gone: reconnect starts another
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_view(pilot, "routers")
        routers = screen.table_of("routers")
        await pilot.press("c")
        await wait_until(
            pilot,
            lambda: (
                routers.column_values("pid") != [str(before["agentPid"])]
                and routers.column_values("status") == ["Connected"]
            ),
            what="the reconnected router",
        )
        after = await net_lab.router()
        assert after is not None and after["status"] == "Connected"
        assert routers.column_values("pid") == [str(after["agentPid"])]
        assert await net_lab.served() == served  # its DHCP entries were replayed
        assert "vr-private reconnected" in screen.status.text
        ops = [r.get("apiName") for r in app.operations.newest_first()]
        assert "ReconnectVirtualRouter" in ops


async def test_status_events_update_the_row(net_lab: NetLab) -> None:
    node = net_lab.node
    router = await net_lab.router()
    assert router is not None
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_view(pilot, "routers")
        routers = screen.table_of("routers")
        node.events.publish(  # the event's documented data, without an inventory
            STATUS_EVENT,
            {"applianceVmUuid": router["uuid"], "oldStatus": "Connected", "newStatus": "Gone"},
        )
        await wait_until(
            pilot, lambda: routers.column_values("status") == ["Gone"], what="the new status"
        )
        # A real one: the ping tracker finds the agent dead and reconnects it.
        os.kill(router["agentPid"], signal.SIGKILL)
        await node.plugin(VirtualRouterPlugin).ping_all()
        after = await net_lab.router()
        assert after is not None
        await wait_until(
            pilot,
            lambda: (
                routers.column_values("status") == ["Connected"]
                and routers.column_values("pid") == [str(after["agentPid"])]
            ),
            what="Connected again, with the new agent",
        )


async def test_destroy_a_router_behind_a_confirmation(net_lab: NetLab) -> None:
    node = net_lab.node
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_view(pilot, "routers")
        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, NetworksScreen))
        assert await net_lab.router() is not None
        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        routers = screen.table_of("routers")
        await wait_until(pilot, lambda: routers.row_count == 0, what="the row to go")
        assert await net_lab.router() is None
        assert router_agents(node.data_dir) == []
        assert screen.dhcp.row_count == 0
        assert "No virtual router" in str(screen.query_one("#dhcp-title").render())
        await wait_until(
            pilot,
            lambda: column(screen.table_of("l3"), "name", "ipUsage")["public"] == "0/253",
            what="the router's public IP to be returned",
        )


async def test_delete_an_l3_network(net_lab: NetLab) -> None:
    node = net_lab.node
    l2 = await ok(
        node, "CreateL2NoVlanNetwork", name="spare-l2", zoneUuid=net_lab.offering["zoneUuid"]
    )
    await ok(node, "CreateL3Network", name="spare", l2NetworkUuid=l2["uuid"])
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_view(pilot)
        l3 = screen.table_of("l3")
        assert l3.column_values("name") == ["private", "public", "spare"]
        assert screen.check_action("delete_l3", ()) is True
        assert screen.check_action("reconnect", ()) is False  # another tab's verb
        await pilot.press("d")  # private: refused, its VMs use it
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.status.has_class("-error"), what="the refusal")
        assert "DeleteL3Network private" in screen.status.text
        assert l3.column_values("name") == ["private", "public", "spare"]
        l3.select_key(next(k for k, r in l3.rows_by_key.items() if r["name"] == "spare"))
        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(
            pilot, lambda: l3.column_values("name") == ["private", "public"], what="spare to go"
        )
        assert "deleted spare" in screen.status.text
        assert [n["name"] for n in await ok(node, "QueryL3Network", sortBy="name")] == [
            "private",
            "public",
        ]


async def test_filter_sort_and_marks_are_per_tab(net_lab: NetLab) -> None:
    app = app_on(net_lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_view(pilot)
        await pilot.press("slash", *"^pri", "enter")
        assert screen.table_of("l3").column_values("name") == ["private"]
        assert "2 L3 networks · 1 match /^pri" in screen.status.text
        await pilot.press("right_square_bracket")
        assert screen.table_of("l2").column_values("name") == ["private-l2", "public-l2"]
        assert screen.query_one("#filter").value == ""  # type: ignore[attr-defined]
        await pilot.press("o", "o")  # by name, reversed
        assert screen.table_of("l2").column_values("name") == ["public-l2", "private-l2"]
        await pilot.press("left_square_bracket")
        assert screen.query_one("#filter").value == "^pri"  # type: ignore[attr-defined]
        await pilot.press("escape")
        assert screen.table_of("l3").column_values("name") == ["private", "public"]
        await pilot.press("space")
        assert screen.table_of("l3").marked and "1 marked" in screen.status.text
        await pilot.press("escape")
        assert not screen.table_of("l3").marked


async def test_command_bar_aliases(net_lab: NetLab) -> None:
    app = app_on(net_lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("colon", *"vr", "enter")
        await shown(pilot, NetworksScreen)


async def test_read_only_disables_the_verbs(net_lab: NetLab) -> None:
    node = net_lab.node
    before = await net_lab.router()
    assert before is not None
    app = app_on(node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_view(pilot)
        assert screen.check_action("delete_l3", ()) is None
        await pilot.press("d")
        await pilot.pause(0.2)
        assert isinstance(app.screen, NetworksScreen)
        screen.show_tab("routers")
        await wait_until(pilot, lambda: screen.active_tab == "routers")
        assert screen.check_action("reconnect", ()) is None
        assert screen.check_action("destroy", ()) is None
        await pilot.press("c", "d")
        await pilot.pause(0.2)
        assert isinstance(app.screen, NetworksScreen)
        assert screen.table_of("routers").column_values("status") == ["Connected"]
        assert await net_lab.router() == before
        assert sorted(n["name"] for n in await ok(node, "QueryL3Network")) == ["private", "public"]


def test_an_l2_row_shows_its_switch_its_vlan_and_a_missing_plugin() -> None:
    """An Open vSwitch VLAN network whose plugin is disabled reads so in the L2 tab."""
    row = NetworkData().l2_row(
        {"name": "red", "vSwitchType": "OpenvSwitch", "vlan": 10, "realizable": False}
    )
    assert (row["switch"], row["vlan"]) == ("OpenvSwitch (no plugin)", "10")
    plain = NetworkData().l2_row({"name": "lan", "vSwitchType": "LinuxBridge", "realizable": True})
    assert (plain["switch"], plain["vlan"]) == ("LinuxBridge", "")

"""The port-forward dialog and the networks view's Reach tab at 80x24 and 120x40, on the
virtual-router lab whose private network gets port forwarding and EIPs: VM ``web`` with
an SSH rule and an EIP, a detached UDP rule limited to a CIDR, and an unused VIP.

``prepare`` builds the lab on a node that then stops; the app's own node starts the
simulated host again, which reports the VM Stopped (its rules and EIP stay attached):
``settled`` waits for that before the view is shown, so nothing moves afterwards.
Addresses come from the lab's ranges in order, so they are the same every run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.ztui.conftest import (
    LARGE,
    SMALL,
    own_node,
    prepare,
    shown,
    the_vm_stopped,
    wait_until,
)
from tests.ztui.test_reach import make_reach_lab
from ztui.app import ZtuiApp
from ztui.dialogs.port_forward import PortForwardDialog
from ztui.screens.networks import NetworksScreen
from ztui.screens.vms import VmsScreen


@pytest.fixture
def lab_props(props: Properties, tmp_path: Path) -> Properties:
    async def build(node: ManagementNode) -> None:
        lab = await make_reach_lab(node, tmp_path)
        vm = await lab.create_vm("web")
        [nic] = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
        public = lab.public_l3["uuid"]
        vip = await ok(node, "CreateVip", name="web-pf", l3NetworkUuid=public)
        for params in (
            {"name": "web-tcp-2222", "vipPortStart": 2222, "privatePortStart": 22,
             "protocolType": "TCP", "vmNicUuid": nic["uuid"]},
            {"name": "dns", "vipPortStart": 5300, "vipPortEnd": 5301, "privatePortStart": 53,
             "protocolType": "UDP", "allowedCidr": "203.0.113.0/24"},
        ):  # fmt: skip
            await ok(node, "CreatePortForwardingRule", vipUuid=vip["uuid"], **params)
        eip_vip = await ok(node, "CreateVip", name="web-eip", l3NetworkUuid=public)
        await ok(node, "CreateEip", name="web-eip", vipUuid=eip_vip["uuid"], vmNicUuid=nic["uuid"])
        await ok(node, "CreateVip", name="spare", l3NetworkUuid=public)

    prepare(props, build)
    return props


async def open_dialog(pilot: Pilot) -> None:
    await the_vm_stopped(pilot)
    await pilot.press("2")
    screen = await shown(pilot, VmsScreen)
    await wait_until(
        pilot, lambda: screen.table.column_values("state") == ["Stopped"], what="web Stopped"
    )
    await pilot.press("f")
    await shown(pilot, PortForwardDialog)
    await pilot.pause(0.2)


async def open_reach_tab(pilot: Pilot) -> None:
    await the_vm_stopped(pilot)
    await pilot.press("4")
    screen = await shown(pilot, NetworksScreen)
    await pilot.pause(0.5)  # a coalesced refresh after the VM's state change lands
    loads = screen.loads_completed
    screen.reload()  # a full load sizes every column to what it shows now
    await wait_until(pilot, lambda: screen.loads_completed > loads, what="a full reload")
    await pilot.press(*["left_square_bracket"] * 2)  # past Security groups
    await wait_until(pilot, lambda: screen.active_tab == "reach", what="the Reach tab")
    await pilot.pause(0.2)


SIZES = pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])


def snapshot(
    props: Properties,
    snap_compare: Callable[..., bool],
    size: tuple[int, int],
    run_before: Callable[[Pilot], Awaitable[None]],
) -> bool:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    return snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_port_forward_dialog(
    lab_props: Properties, size: tuple[int, int], snap_compare: Callable[..., bool]
) -> None:
    assert snapshot(lab_props, snap_compare, size, open_dialog)


@SIZES
def test_reach_tab(
    lab_props: Properties, size: tuple[int, int], snap_compare: Callable[..., bool]
) -> None:
    assert snapshot(lab_props, snap_compare, size, open_reach_tab)

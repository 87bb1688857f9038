"""The networks view at 80x24 and 120x40, on a lab with a virtual router serving two VMs
(uuids, bridge names, MACs and the agent's pid masked).

``prepare`` builds the lab on a node that then stops: stopping it stops the simulated
host, which ends the router's agent and forgets its VMs.  The app's own node starts the
host again, which reports the VMs Stopped; ``settle`` reconnects the router (a new agent)
and starts the VMs, through the app's session, so the router serves them again.  The
ping tracker is slowed down in ``prepare`` so that it does not reconnect the router at a
moment of its own.  The app's node, when the app quits, ends that agent the same way
(checked at the end).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.core.virtual_router.conftest import make_net_lab
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, wait_until
from ztui.app import ZtuiApp
from ztui.screens.networks import NetworksScreen

VMS = ("web-1", "web-2")


def router_agents(data_dir: Path) -> list[str]:
    found = subprocess.run(
        ["pgrep", "-f", f"virtual_router.main --socket .*{data_dir}"],
        capture_output=True,
        text=True,
    )
    return found.stdout.split()


@pytest.fixture
def lab_props(props: Properties, tmp_path: Path) -> Properties:
    async def build(node: ManagementNode) -> None:
        lab = await make_net_lab(node, tmp_path)
        for name in VMS:
            await lab.create_vm(name)
        await ok(
            node, "UpdateGlobalConfig", category="virtualRouter", name="ping.interval", value="3600"
        )

    prepare(props, build)
    assert router_agents(props.data_dir) == []  # the node's stop ended the router's agent
    return props


async def settle(pilot: Pilot) -> None:
    """Open the view, bring the router and its VMs back, wait until the view shows them."""
    app = pilot.app
    assert isinstance(app, ZtuiApp)
    await pilot.press("4")
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, NetworksScreen) and app.screen.loads_completed >= 1,
        what="the first load",
    )
    screen = app.screen
    assert isinstance(screen, NetworksScreen)

    async def vm_states() -> dict[str, str]:
        reply = await app.session.call("QueryVmInstance", {})
        assert reply.success, reply.error
        return {v["name"]: v["state"] for v in reply.inventories or []}

    stopped = False
    for _ in range(200):  # the host's reconnect reports the VMs Stopped
        if set((await vm_states()).values()) == {"Stopped"}:
            stopped = True
            break
        await pilot.pause(0.1)
    assert stopped, await vm_states()
    [router] = (await app.session.call("QueryVirtualRouterVm", {})).inventories or []
    reply = await app.session.call("ReconnectVirtualRouter", {"uuid": router["uuid"]})
    assert reply.success, reply.error
    vms = (await app.session.call("QueryVmInstance", {"sortBy": "name"})).inventories or []
    for vm in vms:
        reply = await app.session.call("StartVmInstance", {"uuid": vm["uuid"]})
        assert reply.success, reply.error
    await wait_until(
        pilot,
        lambda: (
            screen.dhcp.column_values("vmName") == list(VMS)
            and screen.table_of("routers").column_values("status") == ["Connected"]
            and screen.table_of("l3").column_values("ipUsage") == ["2/253", "1/253"]
        ),
        what="the router serving both VMs",
    )
    await pilot.press("t")  # hide the flow-chain panel of the last StartVmInstance
    await pilot.pause(0.5)  # let a coalesced NIC refresh land
    # A live update only widens a column (the router was Connecting for a while): a full
    # load sizes every column to what it shows now, whatever happened before.
    loads = screen.loads_completed
    screen.reload()
    await wait_until(pilot, lambda: screen.loads_completed > loads, what="a full reload")
    await pilot.pause(0.2)


def snapshot(
    props: Properties,
    snap_compare: Callable[..., bool],
    size: tuple[int, int],
    press: list[str],
) -> bool:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    try:
        return snap_compare(app, press=press, terminal_size=size, run_before=settle)
    finally:
        assert router_agents(props.data_dir) == []


def test_l3_small(lab_props: Properties, snap_compare: Callable[..., bool]) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, [])


def test_l2_small(lab_props: Properties, snap_compare: Callable[..., bool]) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, ["right_square_bracket"])


def test_ranges_small(lab_props: Properties, snap_compare: Callable[..., bool]) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, ["right_square_bracket"] * 2)


def test_routers_small(lab_props: Properties, snap_compare: Callable[..., bool]) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, ["right_square_bracket"] * 3)


def test_l3_large(lab_props: Properties, snap_compare: Callable[..., bool]) -> None:
    assert snapshot(lab_props, snap_compare, LARGE, [])


def test_routers_large(lab_props: Properties, snap_compare: Callable[..., bool]) -> None:
    assert snapshot(lab_props, snap_compare, LARGE, ["right_square_bracket"] * 3)

"""The dashboard at 80x24 and 120x40 on a lab with networks, a virtual router and VMs,
with volatile values masked and recent events made deterministic: once the node's
start-up reconnects are over, the events are cleared and a fixed sequence of real
operations (a config change, a VM start, a router and a host reconnect) makes them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.core.virtual_router.conftest import make_net_lab
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, shown, wait_until
from ztui.app import ZtuiApp
from ztui.screens.dashboard import DashboardScreen

EXPECTED_EVENTS = [
    "host sim  Connecting → Connected",
    "host sim  Connected → Connecting",
    "router vr-private  Connecting → Connected",
    "router vr-private  Connected → Connecting",
    "VM web1  Starting → Running",
    "VM web1  Stopped → Starting",
    "config kvm.reservedMemory  512M → 1G",
]


def build_lab(root: Path) -> Callable[[ManagementNode], Any]:
    """Networks with a router, two stopped VMs and one only created (nothing runs, so the
    app's node finds every VM as it was)."""

    async def build(node: ManagementNode) -> None:
        net = await make_net_lab(node, root)
        for name in ("web1", "web2"):
            vm = await net.create_vm(name)
            await ok(node, "StopVmInstance", uuid=vm["uuid"])
        await net.create_vm("web3", strategy="JustCreate")

    return build


async def call(app: ZtuiApp, api: str, **params: Any) -> Any:
    reply = await app.session.call(api, params)
    assert reply.success, f"{api}: {reply.error}"
    return reply.inventories if reply.inventories is not None else reply.inventory


def seen(app: ZtuiApp, path: str, new: str) -> bool:
    return any(
        e.path == path and isinstance(e.data, dict) and e.data.get("newStatus") == new
        for e in app.recent_events
    )


async def settle_then_act(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, ZtuiApp)
    app.trace_shown = False  # the flow-chain panel would hide the events
    screen = await shown(pilot, DashboardScreen)
    # The node is ready: its host reconnected (its VMs synced before it is Connected); the
    # router is reconnected here, before its ping tracker would do it at a time of its own.
    [router] = await call(app, "QueryVirtualRouterVm")
    await call(app, "ReconnectVirtualRouter", uuid=router["uuid"])
    await wait_until(
        pilot, lambda: seen(app, "/appliance-vm/status/change", "Connected"), what="router"
    )
    app.recent_events.clear()

    [web1] = await call(app, "QueryVmInstance", conditions=["name=web1"])
    [host] = await call(app, "QueryHost")
    await call(app, "UpdateGlobalConfig", category="kvm", name="reservedMemory", value="1G")
    await call(app, "StartVmInstance", uuid=web1["uuid"])
    await call(app, "ReconnectVirtualRouter", uuid=router["uuid"])
    await call(app, "ReconnectHost", uuid=host["uuid"])

    def done() -> bool:
        """Every panel shows the end of the sequence and nothing is still on its way (a
        usage refresh due, a query running): a slow machine may get there late, but the
        snapshot is taken of the same screen."""
        events = [line.split("  ", 1)[1] for line in screen.event_log.text.splitlines()]
        capacity, networks = screen.capacity.text, screen.networks.text
        return (
            events == EXPECTED_EVENTS
            and "sim  Connected" in capacity
            and "1/40 vCPU" in capacity
            and "512M/8G used" in capacity
            and "1/253 IPs" in networks
            and "2/253 IPs" in networks
            and "vr-private Connected" in networks
            and screen.counts.counts == {"Running": 1, "Stopped": 1, "Created": 1}
            and "in this process · pid" in screen.summary_panel.text
            and "Problem" not in screen.summary_panel.text
            and screen.status.text == "1 host · 3 VMs · 2 L3 networks · 1 router"
            and screen.usage_refresh_due is False
            and not any(w.is_running for w in app.workers if w.group == "usage")
        )

    await wait_until(pilot, done, what="the events and capacity of the sequence")


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_dashboard_snapshot(
    props: Properties, tmp_path: Path, size: tuple[int, int], snap_compare: Callable[..., bool]
) -> None:
    prepare(props, build_lab(tmp_path))
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=settle_then_act)

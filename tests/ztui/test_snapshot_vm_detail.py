"""Snapshots of the VM detail view at 80x24 and 120x40: a VM with a NIC on a flat
network of the virtual-router lab (no router is needed: the network has no services),
a user tag, a stop and a start behind it; each tab, and an operation's steps.  Uuids,
dates, MACs, taps, bridges and timings are masked.

``prepare`` builds the lab on a node that then stops; the app's own node starts the
simulated host again, which reports the VM Stopped: ``started`` starts it again through
the app's session (so the console has something to show) and opens the detail view."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.core.virtual_router.conftest import make_net_lab
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, the_vm_stopped, wait_until
from ztui.app import ZtuiApp
from ztui.screens.vm_detail import VmDetailScreen
from ztui.screens.vms import VmsScreen


@pytest.fixture
def lab_props(props: Properties, tmp_path: Path) -> Properties:
    async def build(node: ManagementNode) -> None:
        lab = await make_net_lab(node, tmp_path)
        vm = await ok(
            node,
            "CreateVmInstance",
            name="web",
            instanceOfferingUuid=lab.lab.offering["uuid"],
            imageUuid=lab.lab.image_uuid,
            l3NetworkUuids=[lab.public_l3["uuid"]],
        )
        await ok(
            node,
            "CreateUserTag",
            resourceType="VmInstanceVO",
            resourceUuid=vm["uuid"],
            tag="team::a",
        )
        await ok(node, "StopVmInstance", uuid=vm["uuid"])
        await ok(node, "StartVmInstance", uuid=vm["uuid"])
        assert await ok(node, "QueryVirtualRouterVm") == []

    prepare(props, build)
    return props


async def vm_running_again(pilot: Pilot) -> VmsScreen:
    """The VMs view once the app's node reported the VM Stopped (its simulated host
    started again) and the VM was started again; the flow-chain panel hidden."""
    app = pilot.app
    assert isinstance(app, ZtuiApp)
    await pilot.press("2")
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, VmsScreen) and app.screen.loads_completed >= 1,
        what="the VMs view",
    )
    screen = app.screen
    assert isinstance(screen, VmsScreen)
    vm = await the_vm_stopped(pilot)
    reply = await app.session.call("StartVmInstance", {"uuid": vm["uuid"]})
    assert reply.success, reply.error
    await wait_until(
        pilot, lambda: screen.table.column_values("state") == ["Running"], what="Running"
    )
    app.trace_shown = False
    screen.trace_panel.record = None
    await pilot.pause()
    return screen


def on_detail(*keys: str) -> Callable[[Pilot], Awaitable[None]]:
    """``run_before``: the VM running again, its detail open and settled, then ``keys``."""

    async def run_before(pilot: Pilot) -> None:
        await vm_running_again(pilot)
        app = pilot.app
        await pilot.press("enter")

        def settled() -> bool:
            screen = app.screen
            if not isinstance(screen, VmDetailScreen) or screen.loads_completed < 1:
                return False
            ops = screen.table_of("ops")
            return len(ops.rows_by_key) == 4 and "Running" not in ops.column_values("status")

        await wait_until(pilot, settled, what="the detail view")
        screen = app.screen
        assert isinstance(screen, VmDetailScreen)
        for key in keys:
            await pilot.press(key)
            if screen.active_tab == "console":
                await wait_until(pilot, lambda: screen.tails_read >= 1, what="the tail")
        await pilot.pause(0.2)

    return run_before


NEXT = "right_square_bracket"
PREV = "left_square_bracket"


def snapshot(props: Properties, snap_compare: Any, size: tuple[int, int], *keys: str) -> bool:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    return bool(snap_compare(app, terminal_size=size, run_before=on_detail(*keys)))


def test_overview_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL)


def test_nics_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, NEXT)


def test_tags_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, NEXT, NEXT)


def test_operations_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, PREV, PREV)


def test_operation_steps_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, PREV, PREV, "down", "down", "enter")


def test_console_tail_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, PREV)


def test_overview_large(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, LARGE)


def test_operation_steps_large(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, LARGE, PREV, PREV, "enter")

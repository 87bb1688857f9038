"""The networks view's Sec. groups tab at 80x24 and 120x40, on a simulator lab with a
Private L3 network and VM ``web`` on it: group ``app`` (TCP 80 from group ``clients``,
8000-8100 from a CIDR, ICMP out; web's NIC in it) and ``clients`` (attached, empty).

``prepare`` builds the lab on a node that then stops; the app's own node starts the
simulated host again, which reports the VM Stopped: ``the_vm_stopped`` waits for that
before the view is shown, so nothing moves afterwards.  The NIC's address comes from the
range in order, so it is the same every run; uuids are not shown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, shown, the_vm_stopped, wait_until
from tests.ztui.test_security_groups import make_sg_lab, two_groups
from ztui.app import ZtuiApp
from ztui.screens.networks import NetworksScreen


@pytest.fixture
def lab_props(props: Properties, tmp_path: Path) -> Properties:
    async def build(node: ManagementNode) -> None:
        lab = await make_sg_lab(node, tmp_path, ("web",))
        await two_groups(node, lab.l3["uuid"], "app", lab.nics["web"]["uuid"])

    prepare(props, build)
    return props


async def open_sg_tab(pilot: Pilot) -> None:
    await the_vm_stopped(pilot)
    await pilot.press("4")
    screen = await shown(pilot, NetworksScreen)
    await pilot.pause(0.5)  # a coalesced refresh after the VM's state change lands
    loads = screen.loads_completed
    screen.reload()  # a full load sizes every column to what it shows now
    await wait_until(pilot, lambda: screen.loads_completed > loads, what="a full reload")
    await pilot.press("left_square_bracket")
    await wait_until(pilot, lambda: screen.active_tab == "sg", what="the Sec. groups tab")
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_security_groups_tab(
    lab_props: Properties, size: tuple[int, int], snap_compare: Callable[..., bool]
) -> None:
    app = ZtuiApp(lab_props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=open_sg_tab)

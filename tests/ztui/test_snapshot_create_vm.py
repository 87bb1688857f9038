"""The create-VM dialog at 80x24 and 120x40 on a lab with a private network (DHCP from the
virtual router) and the public one (no DHCP) and two disk offerings: its title, its keys,
the root disk the image gives, the network without DHCP saying the address must be
configured in the guest, the data disks to add, and marks readable without colour."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import SelectionList

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.core.virtual_router.conftest import make_net_lab
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, shown, wait_until
from ztui.app import ZtuiApp
from ztui.dialogs.create_vm import CreateVmDialog
from ztui.screens.vms import VmsScreen


def build_lab(root: Path) -> Callable[[ManagementNode], Any]:
    async def build(node: ManagementNode) -> None:
        await make_net_lab(node, root)
        for name, size in (("disk-10g", 10 << 30), ("disk-1g", 1 << 30)):
            await ok(node, "CreateDiskOffering", name=name, diskSize=size)

    return build


async def open_dialog(pilot: Pilot) -> None:
    await pilot.press("2")
    await shown(pilot, VmsScreen)
    await pilot.press("n")
    dialog = await shown(pilot, CreateVmDialog)
    await wait_until(pilot, lambda: dialog.loaded, what="the dialog's choices")
    disks = dialog.query_one("#disks", SelectionList)
    disks.select(disks.get_option_at_index(1).value)  # disk-1g: a data disk vdb
    await pilot.press(*"web")


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_create_vm_dialog_snapshot(
    props: Properties, tmp_path: Path, size: tuple[int, int], snap_compare: Callable[..., bool]
) -> None:
    prepare(props, build_lab(tmp_path))
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=open_dialog)

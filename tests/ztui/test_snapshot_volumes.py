"""The volumes view at 80x24 and 120x40, and its new-volume dialog showing a wrong size
inline at 80x24, on a simulator lab: VM ``db`` (stopped) with data volume ``spare``
attached as vdb, data volume ``logs`` (of disk offering ``disk-1g``) detached, and on
db's root volume snapshots s1, s2 on it, then a revert to s1 and s3 on it: the tree
shows the branch and marks s3, where the volume is.

``prepare`` builds the lab on a node that then stops; the app's own node starts the
simulated host again, which reports the VM Stopped: ``the_vm_stopped`` waits for that
before the view is shown, so nothing moves afterwards.  Dates and uuids are masked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, shown, the_vm_stopped, wait_until
from tests.ztui.test_volumes import db_snapshots, make_vol_lab
from ztui.app import ZtuiApp
from ztui.dialogs.volume import NewVolumeDialog
from ztui.screens.volumes import VolumesScreen


@pytest.fixture
def lab_props(props: Properties, tmp_path: Path) -> Properties:
    async def build(node: ManagementNode) -> None:
        lab = await make_vol_lab(node, tmp_path, web=False)
        await ok(node, "AttachDataVolumeToVm", volumeUuid=lab.spare["uuid"],
                 vmInstanceUuid=lab.db["uuid"])  # fmt: skip
        await ok(node, "CreateDataVolume", name="logs", diskOfferingUuid=lab.offering["uuid"])
        await db_snapshots(node, lab.db)

    prepare(props, build)
    return props


async def open_view(pilot: Pilot) -> VolumesScreen:
    await the_vm_stopped(pilot)
    await pilot.press("9")
    screen = await shown(pilot, VolumesScreen)
    await wait_until(pilot, lambda: screen.snapshot_tree.current_snapshot is not None,
                     what="the snapshot tree")  # fmt: skip
    await pilot.pause(0.2)
    return screen


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_volumes_view(
    lab_props: Properties, size: tuple[int, int], snap_compare: Callable[..., bool]
) -> None:
    app = ZtuiApp(lab_props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=open_view)


def test_new_volume_dialog_with_an_inline_error_small(
    lab_props: Properties, snap_compare: Callable[..., bool]
) -> None:
    async def refused(pilot: Pilot) -> None:
        await open_view(pilot)
        await pilot.press("n")
        dialog = await shown(pilot, NewVolumeDialog)
        dialog.query_one("#name", Input).value = "scratch"
        dialog.query_one("#size", Input).value = "lots"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: bool(dialog.error_text), what="the inline error")

    app = ZtuiApp(lab_props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=refused)

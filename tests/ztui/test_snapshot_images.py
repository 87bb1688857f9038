"""The images view at 80x24 and 120x40 (ages masked), and the import dialog refusing an
ftp URL at 80x24 (a relative path is taken: made absolute against where ztui started).

The images are written to the DB directly, with fixed sizes: an AddImage'd image's
actual size is what the file system allocated, which differs between file systems.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from core.image.models import ImageVO
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.core.vm.conftest import make_lab
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, shown, wait_until
from ztui.app import ZtuiApp
from ztui.dialogs.import_image import ImportImageDialog
from ztui.screens.images import ImagesScreen

GiB = 1024**3


@pytest.fixture
def lab_props(props: Properties, tmp_path: Path) -> Properties:
    async def build(node: ManagementNode) -> None:
        await make_lab(node, tmp_path)  # the Ready qcow2 image "base"

        def add(session: object) -> None:
            start = datetime(2024, 1, 1)
            for i, (name, status, fmt, platform, size) in enumerate(
                [
                    ("debian-12", "Ready", "raw", "Linux", 2 * GiB),
                    ("win-eval", "Deleted", "qcow2", "Windows", 40 * GiB),
                ]
            ):
                session.add(  # type: ignore[attr-defined]
                    ImageVO(
                        name=name,
                        url=f"http://images.example/{name}",
                        status=status,
                        format=fmt,
                        platform=platform,
                        size=size,
                        actual_size=size // 4,
                        create_date=start + timedelta(days=i),
                    )
                )

        await node.db.run(add)

    prepare(props, build)
    return props


async def images_shown(pilot: Pilot) -> ImagesScreen:
    await pilot.press("3")
    screen = await shown(pilot, ImagesScreen)
    await wait_until(pilot, lambda: screen.table.row_count == 3, what="the three images")
    return screen


def test_images_small(lab_props: Properties, snap_compare: Callable[..., bool]) -> None:
    app = ZtuiApp(lab_props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=images_shown)


def test_images_large(lab_props: Properties, snap_compare: Callable[..., bool]) -> None:
    app = ZtuiApp(lab_props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=LARGE, run_before=images_shown)


def test_import_dialog_with_an_error_small(
    lab_props: Properties, snap_compare: Callable[..., bool]
) -> None:
    async def refused(pilot: Pilot) -> None:
        await images_shown(pilot)
        await pilot.press("i")
        dialog = await shown(pilot, ImportImageDialog)
        await wait_until(pilot, lambda: dialog.loaded, what="the backup storages")
        await pilot.press(*"debian", "tab")
        dialog.query_one("#url", Input).value = "ftp://images/debian.qcow2"
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(dialog.error_text), what="the error")

    app = ZtuiApp(lab_props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=refused)

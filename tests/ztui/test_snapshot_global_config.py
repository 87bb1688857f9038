"""The global config view at 80x24 and 120x40 (one value changed from its default), and
its edit dialog showing the API's refusal inline at 80x24."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, shown, wait_until
from ztui.app import ZtuiApp
from ztui.dialogs.edit_config import EditConfigDialog
from ztui.screens.global_config import GlobalConfigScreen


@pytest.fixture
def changed_props(props: Properties) -> Properties:
    async def build(node: ManagementNode) -> None:
        await ok(node, "UpdateGlobalConfig", category="image", name="deletionPolicy", value="Never")

    prepare(props, build)
    return props


async def configs_shown(pilot: Pilot) -> GlobalConfigScreen:
    await pilot.press("6")
    return await shown(pilot, GlobalConfigScreen)


def test_global_config_small(changed_props: Properties, snap_compare: Callable[..., bool]) -> None:
    app = ZtuiApp(changed_props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=configs_shown)


def test_global_config_large(changed_props: Properties, snap_compare: Callable[..., bool]) -> None:
    app = ZtuiApp(changed_props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=LARGE, run_before=configs_shown)


def test_edit_dialog_with_an_inline_error_small(
    changed_props: Properties, snap_compare: Callable[..., bool]
) -> None:
    async def refused(pilot: Pilot) -> None:
        screen = await configs_shown(pilot)
        assert screen.table.select_key("image.expungePeriod")
        await pilot.press("e")
        dialog = await shown(pilot, EditConfigDialog)
        await wait_until(pilot, lambda: dialog.loaded, what="the config's options")
        dialog.query_one("#value", Input).value = "a week"
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(dialog.error_text), what="the inline error")

    app = ZtuiApp(changed_props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=refused)

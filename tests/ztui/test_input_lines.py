"""The one-line inputs: the ``:`` command bar and the ``/`` filter line show what is
typed, the placeholder and the completion, above the footer, at 80x24 and 120x40."""

from __future__ import annotations

import pytest
from textual.widgets import Footer, Input

from core.kernel.node import ManagementNode
from tests.ztui.conftest import LARGE, SMALL, app_on, shown, wait_until
from ztui.dialogs.command_prompt import CommandPrompt, command_words
from ztui.screens.base import ResourceScreen
from ztui.screens.help import HelpScreen
from ztui.screens.networks import NetworksScreen
from ztui.screens.operations import OperationsScreen
from ztui.screens.vms import VmsScreen
from ztui.views import VIEWS

SIZES = pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])


def assert_visible_line(box: Input, footer: Footer) -> None:
    """The input has a row for its text, and the footer does not paint over it."""
    assert box.content_region.height >= 1, box.content_region
    assert not box.region.overlaps(footer.region), (box.region, footer.region)
    assert box.region.bottom <= footer.region.y


@SIZES
async def test_the_command_bar_shows_its_text_above_the_footer(
    node: ManagementNode, size: tuple[int, int]
) -> None:
    app = app_on(node)
    async with app.run_test(size=size) as pilot:
        await pilot.press("2")
        view = await shown(pilot, VmsScreen)
        await pilot.press("colon")
        prompt = await shown(pilot, CommandPrompt)
        box = prompt.query_one(Input)
        assert box.has_focus
        assert_visible_line(box, view.query_one(Footer))
        await pilot.press("n", "e")
        await wait_until(pilot, lambda: box._suggestion == "networks", what="the suggestion")
        assert_visible_line(box, view.query_one(Footer))
        await pilot.press("tab")  # takes the completion
        assert box.value == "networks"
        await pilot.press("enter")
        await shown(pilot, NetworksScreen)


@SIZES
@pytest.mark.parametrize("view", [VmsScreen, OperationsScreen, NetworksScreen, HelpScreen])
async def test_the_filter_line_shows_above_the_footer(
    node: ManagementNode, size: tuple[int, int], view: type[ResourceScreen]
) -> None:
    app = app_on(node)
    async with app.run_test(size=size) as pilot:
        await pilot.press(next(v.key for v in VIEWS if v.screen_type is view))
        screen = await shown(pilot, view)
        await pilot.press("slash")
        box = screen.query_one("#filter", Input)
        assert box.has_focus
        assert_visible_line(box, screen.query_one(Footer))
        await pilot.press("w", "e", "b")
        assert box.value == "web"
        assert_visible_line(box, screen.query_one(Footer))


def test_the_bar_completes_view_names_before_aliases_and_quit() -> None:
    words = command_words(VIEWS)
    assert words.index("networks") < words.index("net")
    assert words[:2] == ["dashboard", "vms"]
    assert "quit" in words


@pytest.mark.parametrize("typed", ["q", "quit"])
async def test_colon_q_quits(node: ManagementNode, typed: str) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("colon")
        await shown(pilot, CommandPrompt)
        await pilot.press(*typed, "enter")
        await wait_until(pilot, lambda: not app.is_running, what="the app to quit")
    assert app.return_code == 0


@SIZES
async def test_the_flow_chain_panel_shows_above_the_footer(
    node: ManagementNode, size: tuple[int, int]
) -> None:
    app = app_on(node)
    async with app.run_test(size=size) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        panel = screen.trace_panel
        panel.record = {"uuid": "op", "apiName": "CreateVmInstance", "status": "Running"}
        await wait_until(pilot, lambda: panel.region.height > 0, what="the panel")
        footer = screen.query_one(Footer)
        assert not panel.region.overlaps(footer.region), (panel.region, footer.region)
        assert not panel.region.overlaps(screen.status.region)

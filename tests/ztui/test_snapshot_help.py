"""Snapshots of the help view at 80x24 and 120x40, and searched with ``/``."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from core.kernel.properties import Properties
from tests.ztui.conftest import LARGE, SMALL, own_node, shown
from ztui.app import ZtuiApp
from ztui.screens.help import HelpScreen


def on_help(*keys: str) -> Any:
    async def run_before(pilot: Pilot) -> None:
        await pilot.press("question_mark")
        await shown(pilot, HelpScreen)
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


def test_help_small(snap_compare: Any, props: Properties) -> None:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=on_help())


def test_help_large(snap_compare: Any, props: Properties) -> None:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=LARGE, run_before=on_help())


def test_help_searched_small(snap_compare: Any, props: Properties) -> None:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    keys = ("slash", *r"ztui\.vm\.", "enter")
    assert snap_compare(app, terminal_size=SMALL, run_before=on_help(*keys))

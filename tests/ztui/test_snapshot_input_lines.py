"""Snapshots of the one-line inputs at 80x24 and 120x40: the ``:`` command bar with its
placeholder and with a completion, and the ``/`` filter line with its placeholder and with
what was typed, each above the footer."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from core.kernel.properties import Properties
from tests.ztui.conftest import LARGE, SMALL, own_node, shown, wait_until
from ztui.app import ZtuiApp
from ztui.screens.vms import VmsScreen

SIZES = pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])


def on_vms(*keys: str, suggestion: str | None = None) -> Any:
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app, ZtuiApp)
        app.trace_shown = False
        await pilot.press("2")
        await shown(pilot, VmsScreen)
        await pilot.press(*keys)
        if suggestion is not None:
            box = app.screen.query_one("#command")
            await wait_until(pilot, lambda: getattr(box, "_suggestion", "") == suggestion)
        await pilot.pause()

    return run_before


@SIZES
def test_command_bar_placeholder(snap_compare: Any, props: Properties, size: Any) -> None:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=on_vms("colon"))


@SIZES
def test_command_bar_completion(snap_compare: Any, props: Properties, size: Any) -> None:
    """``:ne`` with ``networks`` suggested."""
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    keys = on_vms("colon", "n", "e", suggestion="networks")
    assert snap_compare(app, terminal_size=size, run_before=keys)


@SIZES
def test_filter_placeholder(snap_compare: Any, props: Properties, size: Any) -> None:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=on_vms("slash"))


@SIZES
def test_filter_typed(snap_compare: Any, props: Properties, size: Any) -> None:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=on_vms("slash", *"web"))

"""The keys a newcomer reaches for: ``j``/``k``/``g``/``G`` in tables, ``Esc`` out of the
help, a palette that starts with the view's verbs, a help of ztui's keys only, keys that
say why they do nothing (read-only, a verb that does not apply), and ages that tick."""

from __future__ import annotations

from typing import Any

import pytest
from textual.command import CommandList, CommandPalette

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.vm.conftest import Lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from ztui.app import ZtuiApp
from ztui.screens.dashboard import DashboardScreen
from ztui.screens.help import HelpScreen
from ztui.screens.images import ImagesScreen
from ztui.screens.vms import VmsScreen
from ztui.widgets.resource_table import ResourceTable


def notifications(app: ZtuiApp) -> list[str]:
    return [n.message for n in getattr(app, "_notifications")]  # noqa: B009


async def make_vm(lab: Lab, name: str = "web") -> dict[str, Any]:
    return await ok(
        lab.node,
        "CreateVmInstance",
        name=name,
        imageUuid=lab.image_uuid,
        instanceOfferingUuid=lab.offering["uuid"],
    )


async def test_j_k_g_and_shift_g_move_in_a_table(node: ManagementNode) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("question_mark")
        table = (await shown(pilot, HelpScreen)).table
        assert table.has_focus and table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == table.row_count - 1 > 2
        await pilot.press("g")
        assert table.cursor_row == 0
        # they have ids: a keymap can move them, the help lists them
        assert {"ztui.table.down", "ztui.table.up", "ztui.table.top", "ztui.table.bottom"} <= (
            app.all_binding_ids()
        )
        rows = {r["id"]: r for r in table.rows_by_key.values()}
        assert (rows["ztui.table.bottom"]["where"], rows["ztui.table.bottom"]["keys"]) == (
            "tables",
            "G",
        )


async def test_escape_leaves_the_help_after_clearing_its_filter(node: ManagementNode) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        await shown(pilot, VmsScreen)
        await pilot.press("question_mark")
        screen = await shown(pilot, HelpScreen)
        await pilot.press("slash", *"quit", "enter")
        assert screen.table.row_filter.active
        await pilot.press("escape")  # first the filter
        assert app.screen is screen and not screen.table.row_filter.active
        await pilot.press("escape")  # then back where the help was opened
        await shown(pilot, VmsScreen)
        await pilot.press("question_mark")
        await shown(pilot, HelpScreen)
        await pilot.press("1", "question_mark")
        await shown(pilot, HelpScreen)
        await pilot.press("escape")
        await shown(pilot, DashboardScreen)


async def test_the_palette_lists_the_views_verbs_first_and_no_table_internals(
    node: ManagementNode,
) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        await shown(pilot, VmsScreen)
        await pilot.press("ctrl+p")
        palette = await shown(pilot, CommandPalette)
        entries = palette.query_one(CommandList)
        await wait_until(pilot, lambda: entries.option_count > 20, what="the palette's list")
        await pilot.pause(0.5)  # the list comes in batches
        titles = [
            str(entries.get_option_at_index(i).prompt).split("\n")[0]
            for i in range(entries.option_count)
        ]
        assert titles[:3] == ["New", "Start", "Stop"]
        for internal in ("Cursor up", "Cursor down", "Page up", "Focus Next", "Copy selected text"):
            assert internal not in titles
        assert titles.count("Quit") == 1
        assert titles.index("Refresh") < titles.index("Go to VMs") < titles.index("Theme")
        await pilot.press("escape")


async def test_the_help_lists_no_textual_internals(node: ManagementNode) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("question_mark")
        rows = list((await shown(pilot, HelpScreen)).table.rows_by_key.values())
        assert all(r["id"].startswith("ztui.") for r in rows)
        assert not {r["keys"] for r in rows} & {"^c", "^q", "shift+tab", "pgup"}
        descriptions = {r["description"] for r in rows}
        assert not descriptions & {"Focus Next", "Copy selected text", "help_quit", "Cursor up"}
        assert "every screen" not in {r["where"] for r in rows}


async def test_read_only_keys_say_why(lab: Lab) -> None:
    await make_vm(lab)
    app = app_on(lab.node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await wait_until(pilot, lambda: screen.table.row_count == 1)
        await pilot.press("x")
        await wait_until(pilot, lambda: bool(notifications(app)), what="a notification")
        assert "--read-only" in notifications(app)[-1]
        assert "Read-only" in notifications(app)[-1]
        await pilot.press("n")
        await pilot.pause()
        assert len(notifications(app)) == 2 and isinstance(app.screen, VmsScreen)
        await pilot.press("j")  # an enabled key says nothing
        await pilot.pause()
        assert len(notifications(app)) == 2


async def test_a_verb_that_does_not_apply_says_why(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("3")
        screen = await shown(pilot, ImagesScreen)
        await wait_until(pilot, lambda: screen.table.row_count == 1)
        assert screen.check_action("verb", ("expunge",)) is None  # shown dimmed
        await pilot.press("E")
        await wait_until(pilot, lambda: bool(notifications(app)), what="a notification")
        assert notifications(app)[-1] == "Nothing to expunge: base is Ready."


async def test_the_age_column_ticks(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ResourceTable, "AGE_TICK", 0.1, raising=False)
    await make_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await wait_until(pilot, lambda: screen.table.row_count == 1)
        first = screen.table.column_values("createDate")[0]
        loads = screen.loads_completed
        await wait_until(
            pilot,
            lambda: screen.table.column_values("createDate")[0] != first,
            what=f"the age {first} to move on",
        )
        assert screen.loads_completed == loads  # no refresh from the node

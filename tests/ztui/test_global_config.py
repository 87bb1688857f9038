"""Pilot tests of the global config view: edits through the dialog (refusals inline, nothing
changed), live updates from events, resets, read-only."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Input, Label

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from ztui.dialogs.confirm import ConfirmDialog
from ztui.dialogs.edit_config import EditConfigDialog
from ztui.screens.global_config import GlobalConfigScreen

KEY = "image.expungePeriod"


def values(screen: GlobalConfigScreen) -> dict[str, str]:
    table = screen.table
    return {key: str(row.get("value")) for key, row in table.rows_by_key.items()}


async def stored(node: ManagementNode, key: str) -> str:
    category, name = key.split(".", 1)
    [config] = await ok(
        node, "QueryGlobalConfig", conditions=[f"category={category}", f"name={name}"]
    )
    return str(config["value"])


async def open_config(pilot: Pilot, key: str = KEY) -> GlobalConfigScreen:
    await pilot.press("6")
    screen = await shown(pilot, GlobalConfigScreen)
    assert screen.table.select_key(key)
    return screen


async def edit(pilot: Pilot, value: str) -> EditConfigDialog:
    await pilot.press("e")
    dialog = await shown(pilot, EditConfigDialog)
    await wait_until(pilot, lambda: dialog.loaded, what="the config's options")
    dialog.query_one("#value", Input).value = value
    await pilot.press("enter")
    return dialog


async def test_rows_are_sorted_by_category_and_name(node: ManagementNode) -> None:
    configs = await ok(node, "QueryGlobalConfig", limit=1000)
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_config(pilot)
        table = screen.table
        shown_pairs = list(
            zip(table.column_values("category"), table.column_values("name"), strict=True)
        )
        assert shown_pairs == sorted((c["category"], c["name"]) for c in configs)
        assert len(set(shown_pairs)) == len(configs) > 10
        assert f"{len(configs)} global configs" in screen.status.text


async def test_a_rejected_edit_shows_the_error_inline_and_changes_nothing(
    node: ManagementNode,
) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_config(pilot)
        before = values(screen)
        dialog = await edit(pilot, "soon")
        await wait_until(pilot, lambda: bool(dialog.error_text), what="the inline error")
        assert dialog.error_text == f"value 'soon' of global config {KEY} is not an integer"
        assert app.screen is dialog  # still open, to fix the value
        assert "Integer" in str(dialog.query_one("#rules", Label).content)

        dialog.query_one("#value", Input).value = "0"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "range" in dialog.error_text, what="the range error")
        assert "breaks the rule: number in range [1, 2147483647]" in dialog.error_text

        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        assert values(screen) == before
        assert await stored(node, KEY) == "86400"


async def test_an_accepted_edit_updates_the_row_and_the_db(node: ManagementNode) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_config(pilot)
        await edit(pilot, "3600")
        await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
        assert values(screen)[KEY] == "3600"
        assert await stored(node, KEY) == "3600"
        assert f"{KEY} = 3600" in screen.status.text

        # a change made elsewhere arrives as /globalConfig/update/image/deletionPolicy
        await ok(node, "UpdateGlobalConfig", category="image", name="deletionPolicy", value="Never")
        await wait_until(
            pilot,
            lambda: values(screen)["image.deletionPolicy"] == "Never",
            what="the live update",
        )

        # back to the default: the one under the cursor, then the whole category
        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: values(screen)[KEY] == "86400")
        assert await stored(node, KEY) == "86400"
        await pilot.press("D")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: values(screen)["image.deletionPolicy"] == "Delay")
        assert await stored(node, "image.deletionPolicy") == "Delay"


async def test_enter_edits_too(node: ManagementNode) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await open_config(pilot, "image.deletionPolicy")
        await pilot.press("enter")
        dialog = await shown(pilot, EditConfigDialog)
        await wait_until(pilot, lambda: dialog.loaded)
        assert dialog.query_one("#value", Input).value == "Delay"
        rules = str(dialog.query_one("#rules", Label).content)
        assert rules == "type: String, one of: Direct | Delay | Never"


async def test_read_only_disables_edit(node: ManagementNode) -> None:
    app = app_on(node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_config(pilot)
        for action in ("edit", "reset", "reset_category"):
            assert screen.check_action(action, ()) is None
        await pilot.press("e", "enter", "d", "D")
        await pilot.pause()
        assert app.screen is screen
        assert await stored(node, KEY) == "86400"

"""The help view: generated from every binding (keys as the keymap has them, ids),
how ztui is driven, ``/`` search, and what read-only mode turns off."""

from __future__ import annotations

from typing import Any

from core.kernel.node import ManagementNode
from tests.ztui.conftest import SMALL, app_on, shown
from ztui.bindings import every_binding
from ztui.screens.help import HelpScreen, binding_rows, dialog_place, grammar
from ztui.screens.vms import VmsScreen


def shown_rows(screen: HelpScreen) -> list[dict[str, Any]]:
    table = screen.table
    keys = [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]
    return [dict(table.rows_by_key[str(k)]) for k in keys]


def row(screen: HelpScreen, binding_id: str) -> dict[str, Any]:
    [found] = [r for r in screen.table.rows_by_key.values() if r["id"] == binding_id]
    return dict(found)


async def test_question_mark_shows_every_binding(node: ManagementNode) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("question_mark")
        screen = await shown(pilot, HelpScreen)
        rows = list(screen.table.rows_by_key.values())
        listed = {r["id"] for r in rows if r["id"]}
        assert listed == {b.id for _where, b in every_binding(app) if b.id}
        assert row(screen, "ztui.vm.stop") | {"key": ""} == {
            "key": "",
            "where": "vms",
            "keys": "x",
            "description": "Stop",
            "id": "ztui.vm.stop",
        }
        assert row(screen, "ztui.view.help")["keys"] == "?"
        assert row(screen, "ztui.view.ops")["description"].startswith("Operations  :ops")
        assert ":history" in row(screen, "ztui.view.ops")["description"]
        # shared bindings are listed once, where they work
        assert row(screen, "ztui.refresh")["where"] == "every view"
        filters = [r["where"] for r in rows if r["id"] == "ztui.filter"]
        assert filters[0] == "table views"  # (a view that declares its own is listed too)
        assert row(screen, "ztui.command.cancel")["where"] == "command prompt"
        assert "every screen" not in {r["where"] for r in rows}  # no Textual internals (Tab…)
        assert f"{len(rows)} key bindings" in screen.status.text
        text = str(screen.query_one("#grammar").content)
        for words in (":name", "/regex", "/!regex", "space", "^p", "--read-only", "keymap"):
            assert words in text
        assert '[ztui.keymap] "ztui.vm.stop" = "S"' in text


async def test_slash_searches_the_help(node: ManagementNode) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("question_mark")
        screen = await shown(pilot, HelpScreen)
        total = len(screen.table.rows_by_key)
        await pilot.press("slash", *r"ztui\.vm\.", "enter")
        found = shown_rows(screen)
        assert found and all(r["id"].startswith("ztui.vm.") for r in found)
        assert f"{len(found)} match /" in screen.status.text
        await pilot.press("slash", "home", "!", "enter")
        assert len(shown_rows(screen)) == total - len(found)
        await pilot.press("escape")
        assert len(shown_rows(screen)) == total


async def test_the_help_is_reached_from_the_command_bar(node: ManagementNode) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        await shown(pilot, VmsScreen)
        await pilot.press("colon", "question_mark", "enter")
        await shown(pilot, HelpScreen)
        await pilot.press("2")
        await shown(pilot, VmsScreen)
        await pilot.press("colon", *"keys", "enter")
        await shown(pilot, HelpScreen)


async def test_read_only_says_what_is_off(node: ManagementNode) -> None:
    app = app_on(node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("question_mark")
        screen = await shown(pilot, HelpScreen)
        assert row(screen, "ztui.vm.stop")["description"] == "Stop (off: --read-only)"
        assert row(screen, "ztui.vm.create")["description"] == "New (off: --read-only)"
        assert row(screen, "ztui.refresh")["description"] == "Refresh"
        assert "(on) nothing can change" in str(grammar(app))


def test_rows_come_without_a_running_app(node: ManagementNode) -> None:
    app = app_on(node)
    rows = binding_rows(app)
    assert rows[0]["where"] == "global" and rows[0]["id"] == "ztui.quit"
    assert len({r["key"] for r in rows}) == len(rows)


def test_dialog_places_read_as_words() -> None:
    class ImportImageDialog:  # only the name matters
        pass

    class CommandPrompt:
        pass

    class VmDetailScreen:
        pass

    assert dialog_place(ImportImageDialog) == "import image"  # type: ignore[arg-type]
    assert dialog_place(CommandPrompt) == "command prompt"  # type: ignore[arg-type]
    assert dialog_place(VmDetailScreen) == "vm detail"  # type: ignore[arg-type]

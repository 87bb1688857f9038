"""Confirmations: the whole question and its warning on screen at 80x24 (wrapped, never
clipped), worded for one resource or for the several that are marked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Static

from core.kernel.node import ManagementNode
from tests.core.virtual_router.conftest import NetLab, make_net_lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from ztui.dialogs.confirm import NAMES_SHOWN, ConfirmDialog, Wording, question
from ztui.screens.networks import NetworksScreen
from ztui.screens.vms import VmsScreen


@pytest.fixture
async def net_lab(node: ManagementNode, tmp_path: Path) -> AsyncIterator[NetLab]:
    """Two VMs on the private L3 network, so its virtual router exists."""
    lab = await make_net_lab(node, tmp_path)
    await lab.create_vm("web-1")
    await lab.create_vm("web-2")
    yield lab
    if node.running:
        await node.stop()


def shown_question(app: App[object]) -> list[str]:
    """The words of the dialog's question as the screen shows them (what is clipped is not
    there)."""
    static = app.screen.query_one("#question", Static)
    box = static.content_region.intersection(static.parent.region)  # type: ignore[union-attr]
    strips = app.screen._compositor.render_strips()
    lines = [strip.text[box.x : box.right] for strip in strips[box.y : box.bottom]]
    return " ".join(lines).split()


async def ask(pilot: Pilot, key: str) -> ConfirmDialog:
    await pilot.press(key)
    dialog = await shown(pilot, ConfirmDialog)
    await pilot.pause()
    return dialog


async def test_a_router_warning_is_shown_whole_at_80x24(net_lab: NetLab) -> None:
    app = app_on(net_lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("4")
        screen = await shown(pilot, NetworksScreen)
        screen.show_tab("routers")
        await wait_until(pilot, lambda: screen.table_of("routers").row_count == 1)
        dialog = await ask(pilot, "d")
        assert "Its VMs lose DHCP, DNS and SNAT until one of them needs it again" in (
            dialog.question
        )
        assert shown_question(app) == dialog.question.split()
        await pilot.press("n")


async def test_marked_l3_networks_are_asked_about_in_the_plural(net_lab: NetLab) -> None:
    app = app_on(net_lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("4")
        screen = await shown(pilot, NetworksScreen)
        assert screen.table_of("l3").column_values("name") == ["private", "public"]
        await pilot.press("space", "space")
        dialog = await ask(pilot, "d")
        assert dialog.question.startswith("Delete 2 L3 networks: private, public?\nTheir IP")
        assert "Its" not in dialog.question
        assert shown_question(app) == dialog.question.split()
        await pilot.press("n")


async def test_marked_vms_are_asked_about_in_the_plural(net_lab: NetLab) -> None:
    app = app_on(net_lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await wait_until(pilot, lambda: screen.table.row_count == 2)
        await pilot.press("space", "space")
        dialog = await ask(pilot, "d")
        names = ", ".join(screen.table.column_values("name"))  # as shown
        assert dialog.question == (
            f"Destroy 2 VMs: {names}?\n(vm.deletionPolicy decides whether they can be recovered.)"
        )
        assert shown_question(app) == dialog.question.split()
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.press("escape")  # no marks: the VM under the cursor
        dialog = await ask(pilot, "E")
        vm = screen.table.cursor_row_data["name"]  # type: ignore[index]
        assert dialog.question == f"Expunge VM {vm}?\nIts root volume is deleted for good."
        await pilot.press("n")


def test_a_long_selection_is_counted_not_listed() -> None:
    names = [f"web-{i}" for i in range(40)]
    text = question("Stop", Wording("VM", "VMs"), names, Wording("one", "many"))
    assert text.startswith("Stop 40 VMs: web-0, web-1")
    assert f"web-{NAMES_SHOWN - 1} and {40 - NAMES_SHOWN} more?\nmany" in text
    assert f"web-{NAMES_SHOWN}," not in text


async def test_a_long_question_keeps_its_buttons_at_80x24(node: ManagementNode) -> None:
    app = app_on(node)
    text = "Reset every kvm config to its default?\n(changes " + "x " * 400 + ")"
    async with app.run_test(size=SMALL) as pilot:
        app.push_screen(ConfirmDialog(text, "Reset"))
        dialog = await shown(pilot, ConfirmDialog)
        await pilot.pause()
        for button in ("#cancel", "#confirm"):
            region = dialog.query_one(button).region
            assert region.height > 0 and app.screen.region.contains_region(region)

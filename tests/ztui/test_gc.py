"""The GC jobs view: a job with its last error, live from GC events, run now with ``T``,
deleted with ``d``; the dashboard names pending clean-ups among the node's problems."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.gc.plugin import GarbageCollectorPlugin
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.core.gc.conftest import RUNNER, Leftover, gc_node, job, set_config
from tests.ztui.conftest import LARGE, SMALL, app_on, shown, wait_until
from ztui.dialogs.confirm import ConfirmDialog
from ztui.screens.dashboard import DashboardScreen
from ztui.screens.gc import GcScreen, error_line


@pytest.fixture
async def node(props: Properties) -> AsyncIterator[ManagementNode]:
    n = gc_node(props)
    await n.start()
    try:
        yield n
    finally:
        if n.running:
            await n.stop()


async def failed_job(node: ManagementNode, leftover: Leftover) -> str:
    await set_config(node, "retry.interval", 3600)
    uuid = await node.plugin(GarbageCollectorPlugin).submit(
        name="remove leftover", runner=RUNNER, context=leftover.context
    )
    await node.call("TriggerGarbageCollector", {"uuid": uuid})  # fails: the blocker is there
    return uuid


def test_an_error_line_names_the_code_and_the_root_cause() -> None:
    error = {
        "code": "SYS.1006",
        "description": "outer",
        "cause": {"code": "X", "description": "inner"},
    }
    assert error_line(error) == "SYS.1006: outer ← inner"
    assert error_line({"code": "SYS.1006", "description": "alone"}) == "SYS.1006: alone"
    assert error_line(None) == ""


async def test_the_view_shows_a_job_with_its_last_error(
    node: ManagementNode, tmp_path: Path
) -> None:
    leftover = Leftover(tmp_path)
    uuid = await failed_job(node, leftover)
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("8")
        screen = await shown(pilot, GcScreen)
        table = screen.table
        assert table.column_values("name") == ["remove leftover"]
        assert table.column_values("status") == ["Idle"]
        assert table.column_values("attempts") == ["1"]
        [error] = table.column_values("error")
        assert error.startswith("SYS.1006: ") and "leftover.blocker is in the way" in error
        assert screen.status.text == "1 GC job · 1 pending"
        assert screen.detail.border_title == "GC job remove leftover"
        text = screen.detail.text
        assert f"Runner  {RUNNER}" in text
        assert "Error   SYS.1006: cannot remove" in text and "leftover.blocker" in text

        leftover.unblock()  # the next run succeeds; the row follows the events
        await pilot.press("T")
        await wait_until(pilot, lambda: table.column_values("status") == ["Done"], what="Done")
        assert table.column_values("attempts") == ["2"]
        assert (await job(node, uuid))["status"] == "Done"
        await wait_until(pilot, lambda: screen.status.text == "remove leftover done")

        await pilot.press("d")
        dialog = await shown(pilot, ConfirmDialog)
        assert "Delete GC job remove leftover?" in dialog.question
        await pilot.press("y")
        await wait_until(pilot, lambda: not table.rows_by_key, what="the row to go")
        assert await ok(node, "QueryGarbageCollector") == []
        assert screen.detail.text == "no GC job selected"


async def test_a_new_job_appears_live_and_the_dashboard_names_it(
    node: ManagementNode, tmp_path: Path
) -> None:
    app = app_on(node)
    async with app.run_test(size=LARGE) as pilot:
        dashboard = await shown(pilot, DashboardScreen)
        await pilot.press("colon")
        await pilot.press(*"gc", "enter")
        screen = await shown(pilot, GcScreen)
        assert screen.status.text == "0 GC jobs"
        await failed_job(node, Leftover(tmp_path))
        await wait_until(
            pilot, lambda: screen.table.column_values("status") == ["Idle"], what="the new job"
        )
        assert "in the way" in screen.table.column_values("error")[0]
        await pilot.press("1")
        dashboard.refresh_node_status()
        await wait_until(
            pilot,
            lambda: "waiting in garbage collection" in dashboard.summary_panel.text,
            what="the dashboard's problem",
        )

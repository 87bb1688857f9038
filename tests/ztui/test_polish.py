"""Polish of issue 12: a verb on several marked VMs shows every chain; the image dialog
takes a path relative to where ztui started and completes it; the dashboard's recent
events start from the operations log after a restart."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.conftest import ok
from tests.core.vm.conftest import Lab
from tests.ztui.conftest import LARGE, SMALL, app_on, shown, wait_until
from tests.ztui.test_images import image_status, open_import, statuses
from tests.ztui.test_vms import create_vm, states
from ztui.dialogs.import_image import PathSuggester, resolve_path
from ztui.operations import OperationTracker
from ztui.screens.dashboard import DashboardScreen
from ztui.screens.vms import VmsScreen
from ztui.widgets.flow_chain_panel import FlowChainPanel


def test_the_tracker_follows_every_operation_of_a_verb() -> None:
    tracker = OperationTracker()

    def start(uuid: str, resource: str) -> None:
        tracker.update(
            {"uuid": uuid, "apiName": "StopVmInstance", "status": "Running",
             "resourceUuids": [resource]}
        )  # fmt: skip

    tracker.expect(["a", "b"])
    start("op1", "a")
    start("op2", "b")
    assert tracker.followed_uuids == ["op1", "op2"]
    start("op3", "c")  # something else: followed alone
    assert tracker.followed_uuids == ["op3"]
    tracker.follow("op1")
    assert tracker.followed_uuid == "op1"


async def test_a_verb_on_marked_vms_shows_every_chain(lab: Lab) -> None:
    for name in ("a", "b", "c"):
        await create_vm(lab, name)
    app = app_on(lab.node)
    async with app.run_test(size=LARGE) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await pilot.press("space", "space", "space")
        await pilot.press("x")
        await wait_until(
            pilot, lambda: set(states(screen).values()) == {"Stopped"}, what="all stopped"
        )
        panel = screen.query_one(FlowChainPanel)

        def every_chain() -> bool:
            heads = [line for line in panel.text.splitlines() if line.startswith("StopVmInstance")]
            return len(heads) == 3 and all("Succeeded" in line for line in heads)

        await wait_until(pilot, every_chain, what="three StopVmInstance chains")
        assert {str(r["resourceUuid"]) for r in panel.records} == set(screen.table.rows_by_key)


def test_a_relative_path_is_made_absolute(tmp_path: Path) -> None:
    assert resolve_path("imgs/a.qcow2", tmp_path) == str(tmp_path / "imgs/a.qcow2")
    assert resolve_path("/abs/a.qcow2", tmp_path) == "/abs/a.qcow2"
    assert resolve_path("http://h/a.qcow2", tmp_path) == "http://h/a.qcow2"
    assert resolve_path("~/a.qcow2", tmp_path) == str(Path.home() / "a.qcow2")
    assert resolve_path("", tmp_path) == ""


async def test_path_completion_offers_directory_entries(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "disk.qcow2").touch()
    (tmp_path / ".hidden").touch()
    suggest = PathSuggester(tmp_path)
    assert await suggest.get_suggestion("im") == "imgs/"
    assert await suggest.get_suggestion("imgs/d") == "imgs/disk.qcow2"
    assert await suggest.get_suggestion(f"{tmp_path}/imgs/") == f"{tmp_path}/imgs/disk.qcow2"
    assert await suggest.get_suggestion(".h") == ".hidden"
    assert await suggest.get_suggestion("x") is None
    assert await suggest.get_suggestion("http://im") is None


async def test_the_image_dialog_takes_a_relative_path_and_completes_it(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "started-here"
    (here / "imgs").mkdir(parents=True)
    source = here / "imgs" / "rel.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(source), "16M"], check=True)
    monkeypatch.chdir(here)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen, dialog = await open_import(pilot)
        await pilot.press(*"rel", "tab")
        url = dialog.query_one("#url", Input)
        await pilot.press("i")
        await wait_until(pilot, lambda: url._suggestion == "imgs/", what="the completion")
        await pilot.press("right")
        await pilot.press("r")
        await wait_until(pilot, lambda: url._suggestion == "imgs/rel.qcow2")
        await pilot.press("right")
        assert url.value == "imgs/rel.qcow2"
        assert dialog.request().url == str(source)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
        await wait_until(pilot, lambda: statuses(screen).get("rel") == "Ready")
        assert await image_status(lab.node, "rel") == "Ready"


async def test_recent_events_start_from_the_operations_log(lab: Lab) -> None:
    web1 = await create_vm(lab, "web1")
    await ok(lab.node, "StopVmInstance", uuid=web1["uuid"])
    app = app_on(lab.node)
    async with app.run_test(size=LARGE) as pilot:
        screen = await shown(pilot, DashboardScreen)
        events = [line.split("  ", 1)[1] for line in screen.event_log.text.splitlines()]
        assert events[:2] == [
            "op StopVmInstance web1  Succeeded",
            "op CreateVmInstance web1  Succeeded",
        ]
        await ok(lab.node, "StartVmInstance", uuid=web1["uuid"])
        await wait_until(
            pilot,
            lambda: screen.event_log.text.splitlines()[0].endswith("VM web1  Starting → Running"),
            what="a live event on top of the log's",
        )

"""Pilot tests of the images view on a simulator lab: an import over real http with its
progress bar, refusals shown in the import dialog, delete / recover / expunge."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from textual.pilot import Pilot
from textual.widgets import Input, ProgressBar, Select

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.vm.conftest import Lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from ztui.dialogs.confirm import ConfirmDialog
from ztui.dialogs.import_image import ImportImageDialog
from ztui.screens.images import ImagesScreen

PIECE = 256 * 1024
GATE_TIMEOUT = 60.0


def statuses(screen: ImagesScreen) -> dict[str, str]:
    table = screen.table
    return dict(zip(table.column_values("name"), table.column_values("status"), strict=True))


async def image_status(node: ManagementNode, name: str) -> str | None:
    found = await ok(node, "QueryImage", conditions=[f"name={name}"])
    return found[0]["status"] if found else None


# -- a slow http server -------------------------------------------------------------------------


@dataclass
class Trickle:
    """Serves files in small pieces; after ``hold_at`` bytes it waits for ``gate``."""

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    hold_at: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def trickle() -> AsyncIterator[Trickle]:
    served = Trickle()

    async def serve(request: web.Request) -> web.StreamResponse:
        data = served.files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        response = web.StreamResponse()
        response.content_length = len(data)
        await response.prepare(request)
        for start in range(0, len(data), PIECE):
            if start == served.hold_at and served.hold_at:
                await asyncio.wait_for(served.gate.wait(), GATE_TIMEOUT)
            await response.write(data[start : start + PIECE])
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    served.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield served
    finally:
        served.gate.set()
        await runner.cleanup()


def qcow2_bytes(tmp_path: Path, size: str = "4M") -> bytes:
    """A qcow2 image whose file is as big as its disk (preallocated), so it downloads in
    several pieces."""
    path = tmp_path / "served.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=full", str(path), size],
        check=True,
    )
    return path.read_bytes()


async def open_import(pilot: Pilot) -> tuple[ImagesScreen, ImportImageDialog]:
    await pilot.press("3")
    screen = await shown(pilot, ImagesScreen)
    await pilot.press("i")
    dialog = await shown(pilot, ImportImageDialog)
    await wait_until(pilot, lambda: dialog.loaded, what="the backup storages")
    return screen, dialog


# -- import -------------------------------------------------------------------------------------


async def test_import_over_http_shows_its_progress_then_ready(
    lab: Lab, tmp_path: Path, trickle: Trickle
) -> None:
    data = qcow2_bytes(tmp_path)
    trickle.files["disk.qcow2"] = data
    trickle.hold_at = len(data) // 2 // PIECE * PIECE
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen, dialog = await open_import(pilot)
        [bs] = await ok(lab.node, "QueryBackupStorage")
        assert dialog.query_one("#storage", Select).value == bs["uuid"]  # the only one
        await pilot.press(*"fetched", "tab", *f"{trickle.url}/disk.qcow2")
        await pilot.press("ctrl+s")
        # The download holds half-way: the dialog leaves it to the view's progress bar.
        await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
        seen: list[tuple[float, float | None]] = []

        def mid_way() -> bool:
            for bar in screen.query(ProgressBar):
                seen.append((bar.progress, bar.total))
                if bar.total and 0 < bar.progress < bar.total:
                    return True
            return False

        await wait_until(pilot, mid_way, what="a progress between 0 and the total")
        progress, total = seen[-1]
        assert total == len(data) and 0 < progress < total
        assert statuses(screen)["fetched"] == "Downloading"
        assert screen.query_one("#downloads").has_class("-shown")

        trickle.gate.set()
        await wait_until(
            pilot, lambda: statuses(screen).get("fetched") == "Ready", what="fetched Ready"
        )
        await wait_until(pilot, lambda: not screen.query(ProgressBar), what="the bar to go")
        assert not screen.query_one("#downloads").has_class("-shown")
        assert await image_status(lab.node, "fetched") == "Ready"
        [image] = await ok(lab.node, "QueryImage", conditions=["name=fetched"])
        assert image["format"] == "qcow2" and image["size"] == 4 * 1024**2
        assert "imported fetched" in screen.status.text


async def test_a_rejected_import_shows_its_error_in_the_dialog(lab: Lab, tmp_path: Path) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen, dialog = await open_import(pilot)
        await pilot.press("ctrl+s")
        assert dialog.error_text == "parameter name of AddImage must not be empty"

        # Refused by the form's check (AddImage's own rules): nothing is sent.
        await pilot.press(*"bad", "tab", *"ftp://host/disk.qcow2", "enter")
        assert "must be an http(s) URL or an absolute local path" in dialog.error_text
        assert app.screen is dialog

        # Refused by the node at once: the agent finds no such file.
        missing = tmp_path / "missing.qcow2"
        dialog.query_one("#url", Input).value = str(missing)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "does not exist" in dialog.error_text, what="the error")
        assert dialog.error_text.startswith(f"cannot add image bad from {missing}")
        assert app.screen is dialog  # still open: the form can be fixed

        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is screen)
        assert sorted(statuses(screen)) == ["base"]
        assert [i["name"] for i in await ok(lab.node, "QueryImage")] == ["base"]


async def test_a_local_file_imports_and_the_dialog_closes(lab: Lab, tmp_path: Path) -> None:
    source = tmp_path / "small.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(source), "16M"], check=True)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen, dialog = await open_import(pilot)
        await pilot.press(*"local", "tab")
        dialog.query_one("#url", Input).value = str(source)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen is screen, what="the dialog to close")
        await wait_until(pilot, lambda: statuses(screen).get("local") == "Ready")
        assert await image_status(lab.node, "local") == "Ready"


# -- delete, recover, expunge -------------------------------------------------------------------


async def test_delete_asks_first_then_recover_and_expunge(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("3")
        screen = await shown(pilot, ImagesScreen)
        assert statuses(screen) == {"base": "Ready"}
        assert screen.check_action("verb", ("delete",)) is True
        assert screen.check_action("verb", ("recover",)) is None  # only for a Deleted image

        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen)
        assert await image_status(lab.node, "base") == "Ready"

        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: statuses(screen).get("base") == "Deleted")
        assert await image_status(lab.node, "base") == "Deleted"  # Delay: recoverable
        assert screen.check_action("verb", ("delete",)) is None

        await pilot.press("R")
        await wait_until(pilot, lambda: statuses(screen).get("base") == "Ready")
        assert await image_status(lab.node, "base") == "Ready"

        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: statuses(screen).get("base") == "Deleted")
        await pilot.press("E")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: statuses(screen) == {}, what="the row to go")
        assert await ok(lab.node, "QueryImage") == []


async def test_read_only_disables_import_and_delete(lab: Lab) -> None:
    app = app_on(lab.node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("3")
        screen = await shown(pilot, ImagesScreen)
        assert screen.check_action("import_image", ()) is None
        assert screen.check_action("verb", ("delete",)) is None
        await pilot.press("i", "d")
        await pilot.pause()
        assert app.screen is screen
        assert await image_status(lab.node, "base") == "Ready"

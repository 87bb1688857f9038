"""``[ztui.keymap]`` in config.toml rebinds keys by binding id; an entry that names no
binding, or gives no key, is reported in a notification and ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.kernel.node import ManagementNode
from core.kernel.properties import load
from tests.conftest import ok
from tests.core.vm.conftest import Lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until, write_config
from ztui.keymap import load_keymap
from ztui.screens.help import HelpScreen
from ztui.screens.operations import OperationsScreen
from ztui.screens.vms import VmsScreen

KEYMAP = """
[ztui.keymap]
"ztui.vm.stop" = "S"
"ztui.view.ops" = "f7,O"
"ztui.no.such.binding" = "k"
"ztui.vm.start" = ""
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    """The tests' config.toml, with a keymap (the ``props``, ``node`` and ``lab``
    fixtures read it)."""
    path = write_config(tmp_path, tmp_path / "data")
    path.write_text(path.read_text() + KEYMAP)
    return path


async def vm_state(node: ManagementNode, uuid: str) -> str:
    [vm] = await ok(node, "QueryVmInstance", conditions=[f"uuid={uuid}"])
    return str(vm["state"])


def notifications(app: object) -> list[str]:
    return [n.message for n in getattr(app, "_notifications")]  # noqa: B009


async def test_a_rebound_key_acts_and_the_old_one_no_longer_does(lab: Lab) -> None:
    node = lab.node
    vm = await ok(
        node,
        "CreateVmInstance",
        name="web",
        imageUuid=lab.image_uuid,
        instanceOfferingUuid=lab.offering["uuid"],
    )
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await wait_until(pilot, lambda: "web" in screen.table.column_values("name"))
        await pilot.press("x")
        await pilot.pause(0.3)
        assert await vm_state(node, vm["uuid"]) == "Running"
        await pilot.press("S")
        await wait_until(pilot, lambda: app.operations.followed is not None)
        for _ in range(100):
            if await vm_state(node, vm["uuid"]) == "Stopped":
                break
            await pilot.pause(0.05)
        assert await vm_state(node, vm["uuid"]) == "Stopped"

        # a binding given two keys answers to both
        await pilot.press("O")
        await shown(pilot, OperationsScreen)
        await pilot.press("2")
        await shown(pilot, VmsScreen)
        await pilot.press("f7")
        await shown(pilot, OperationsScreen)
        await pilot.press("7")  # its old key is gone
        await pilot.pause(0.1)
        assert isinstance(app.screen, OperationsScreen)

        # the help shows the keys the keymap gave
        await pilot.press("question_mark")
        help_screen = await shown(pilot, HelpScreen)
        keys = {r["id"]: r["keys"] for r in help_screen.table.rows_by_key.values()}
        assert keys["ztui.vm.stop"] == "S"
        assert keys["ztui.view.ops"] == "f7 O"
        assert keys["ztui.vm.start"] == "s"  # the bad entry was ignored


async def test_bad_entries_are_reported_and_ignored(node: ManagementNode) -> None:
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await wait_until(pilot, lambda: len(notifications(app)) >= 2, what="notifications")
        found = notifications(app)
        assert any("[ztui.keymap] ztui.no.such.binding: no binding has this id" in m for m in found)
        assert any(
            "[ztui.keymap] ztui.vm.start: keys must be a non-empty string" in m for m in found
        )
        assert not any("ztui.vm.stop" in m for m in found)


def test_load_keymap_keeps_the_good_entries(config_path: Path) -> None:
    props = load(config_path, env={})
    keymap, problems = load_keymap(props, {"ztui.vm.stop", "ztui.view.ops", "ztui.vm.start"})
    assert keymap == {"ztui.vm.stop": "S", "ztui.view.ops": "f7,O"}
    assert len(problems) == 2

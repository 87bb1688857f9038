"""Pilot tests of the VMs view on a simulator lab: create through the dialog, verbs with
confirmation, marks, filter, live rows, read-only."""

from __future__ import annotations

import base64
from pathlib import Path

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.vm.conftest import Lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from ztui.dialogs.confirm import ConfirmDialog
from ztui.dialogs.create_vm import USER_DATA_MAX, CreateVmDialog, read_user_data
from ztui.screens.vms import VmsScreen
from ztui.widgets.flow_chain_panel import FlowChainPanel


async def create_vm(lab: Lab, name: str) -> dict:
    return await ok(
        lab.node,
        "CreateVmInstance",
        name=name,
        imageUuid=lab.image_uuid,
        instanceOfferingUuid=lab.offering["uuid"],
    )


def states(screen: VmsScreen) -> dict[str, str]:
    table = screen.table
    return dict(zip(table.column_values("name"), table.column_values("state"), strict=True))


async def vm_state(node: ManagementNode, name: str) -> str | None:
    found = await ok(node, "QueryVmInstance", conditions=[f"name={name}"])
    return found[0]["state"] if found else None


async def test_create_a_vm_through_the_dialog(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await pilot.press("n")
        dialog = await shown(pilot, CreateVmDialog)
        await wait_until(pilot, lambda: dialog.loaded, what="the dialog's choices")
        await pilot.press(*"web", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen))
        await wait_until(
            pilot, lambda: states(screen).get("web") == "Running", what="web to be Running"
        )
        assert await vm_state(lab.node, "web") == "Running"
        panel = screen.query_one(FlowChainPanel)
        await wait_until(pilot, lambda: "Succeeded" in panel.text, what="the flow chain panel")
        assert "CreateVmInstance web" in panel.text
        assert "VmAllocateHostFlow" in panel.text


async def test_the_dialog_refuses_a_bad_form_and_changes_nothing(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        await shown(pilot, VmsScreen)
        await pilot.press("n")
        dialog = await shown(pilot, CreateVmDialog)
        await wait_until(pilot, lambda: dialog.loaded)
        await pilot.press("ctrl+s")
        assert "name: give the VM a name" in str(dialog.query_one("#error").render())
        await pilot.press(*"web", "tab")
        dialog.query_one("#count").value = "0"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        assert "count: a whole number from 1 to 50" in str(dialog.query_one("#error").render())
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen))
        assert await ok(lab.node, "QueryVmInstance") == []


async def test_a_user_data_file_goes_with_the_vm(lab: Lab, tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho HELLO\n")
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await pilot.press("n")
        dialog = await shown(pilot, CreateVmDialog)
        await wait_until(pilot, lambda: dialog.loaded)
        await pilot.press(*"web")
        dialog.query_one("#user-data").value = str(tmp_path / "nope.sh")  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        assert "there is no file" in str(dialog.query_one("#error").render())
        dialog.query_one("#user-data").value = str(script)  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: states(screen).get("web") == "Running", what="Running")
        [vm] = await ok(lab.node, "QueryVmInstance", conditions=["name=web"])
        tags = await ok(lab.node, "QuerySystemTag", conditions=[f"resourceUuid={vm['uuid']}"])
        wanted = "userdata::" + base64.b64encode(script.read_bytes()).decode()
        assert wanted in [t["tag"] for t in tags]


def test_reading_a_user_data_file(tmp_path: Path) -> None:
    assert read_user_data("  ") == ("", None)
    (tmp_path / "big").write_bytes(b"x" * (USER_DATA_MAX + 1))
    (tmp_path / "empty").write_bytes(b"")
    assert "is over 64 KiB" in str(read_user_data(str(tmp_path / "big"))[1])
    assert "is empty" in str(read_user_data(str(tmp_path / "empty"))[1])
    assert "is a directory" in str(read_user_data(str(tmp_path))[1])
    (tmp_path / "ok").write_bytes(b"#cloud-config\n")
    assert read_user_data(str(tmp_path / "ok")) == (
        base64.b64encode(b"#cloud-config\n").decode(),
        None,
    )


async def test_count_makes_numbered_vms(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await pilot.press("n")
        dialog = await shown(pilot, CreateVmDialog)
        await wait_until(pilot, lambda: dialog.loaded)
        await pilot.press(*"db")
        dialog.query_one("#count").value = "2"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_until(
            pilot,
            lambda: states(screen) == {"db-1": "Running", "db-2": "Running"},
            what="two Running VMs",
        )


async def test_stop_then_destroy_behind_a_confirmation(lab: Lab) -> None:
    await create_vm(lab, "web")
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await pilot.press("x")
        await wait_until(pilot, lambda: states(screen)["web"] == "Stopped", what="Stopped")
        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("n")  # no: nothing happens
        await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen))
        assert await vm_state(lab.node, "web") == "Stopped"
        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: states(screen)["web"] == "Destroyed", what="Destroyed")
        assert await vm_state(lab.node, "web") == "Destroyed"


async def test_verbs_act_on_every_marked_vm(lab: Lab) -> None:
    for name in ("a", "b", "c"):
        await create_vm(lab, name)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await pilot.press("space", "space")  # marks a and b (the cursor moves down)
        assert len(screen.table.marked) == 2
        await pilot.press("x")
        await wait_until(
            pilot,
            lambda: states(screen) == {"a": "Stopped", "b": "Stopped", "c": "Running"},
            what="a and b stopped",
        )
        assert not screen.table.marked


async def test_filter_with_regex_and_inversion(lab: Lab) -> None:
    for name in ("web-1", "web-2", "db"):
        await create_vm(lab, name)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await pilot.press("slash", *"^web")
        assert screen.table.column_values("name") == ["web-1", "web-2"]
        await pilot.press("enter")
        assert "3 vms · 2 match /^web" in screen.status.text
        await pilot.press("slash", "home", "!")
        assert screen.table.column_values("name") == ["db"]
        await pilot.press("end", "[")
        assert "bad filter /!^web[" in screen.status.text
        assert screen.status.has_class("-error")
        await pilot.press("enter", "escape")
        assert sorted(screen.table.column_values("name")) == ["db", "web-1", "web-2"]


async def test_sort_by_column_and_back(lab: Lab) -> None:
    for name in ("b", "c", "a"):
        await create_vm(lab, name)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        assert screen.table.column_values("name") == ["b", "c", "a"]  # oldest first
        await pilot.press("o")
        assert screen.table.column_values("name") == ["a", "b", "c"]
        await pilot.press("o")
        assert screen.table.column_values("name") == ["c", "b", "a"]


async def test_rows_follow_vms_made_elsewhere(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        vm = await create_vm(lab, "elsewhere")
        await wait_until(
            pilot, lambda: states(screen).get("elsewhere") == "Running", what="the new row"
        )
        await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
        await wait_until(pilot, lambda: states(screen)["elsewhere"] == "Stopped", what="Stopped")
        await ok(lab.node, "DestroyVmInstance", uuid=vm["uuid"])
        await ok(lab.node, "ExpungeVmInstance", uuid=vm["uuid"])
        await wait_until(pilot, lambda: "elsewhere" not in states(screen), what="the row to go")


async def test_command_bar_switches_views(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("colon", *"vm", "enter")
        await shown(pilot, VmsScreen)
        await pilot.press("colon", *"nosuchview", "enter")
        await pilot.pause()
        assert isinstance(app.screen, VmsScreen)
        assert app.command_history == ["vm", "nosuchview"]


async def test_read_only_changes_nothing(lab: Lab) -> None:
    await create_vm(lab, "web")
    app = app_on(lab.node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await pilot.press("n", "x", "d")
        await pilot.pause(0.2)
        assert isinstance(app.screen, VmsScreen)
        assert states(screen) == {"web": "Running"}
        assert await vm_state(lab.node, "web") == "Running"
        assert screen.check_action("verb", ()) is None

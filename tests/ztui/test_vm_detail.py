"""Pilot tests of the VM detail view on simulator labs: each tab's data (a NIC on a
network of the virtual-router lab), past operations and their steps, live state and
deletion, the verbs behind their keys, the console's tail, read-only."""

from __future__ import annotations

import io
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.virtual_router.conftest import NetLab, make_net_lab
from tests.core.vm.conftest import Lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from ztui.dialogs.confirm import ConfirmDialog
from ztui.screens.console import ConsoleScreen
from ztui.screens.vm_detail import TAIL_LINES, VmDetailScreen
from ztui.screens.vms import VmsScreen
from ztui.widgets.operation_detail import OperationDetail
from ztui.widgets.resource_table import ResourceTable
from ztui.widgets.serial_terminal import SerialTerminal


def router_agents(data_dir: Path) -> list[str]:
    """The pids of the virtual-router agents of this data dir's simulated hosts."""
    found = subprocess.run(
        ["pgrep", "-f", f"virtual_router.main --socket .*{data_dir}"],
        capture_output=True,
        text=True,
    )
    return found.stdout.split()


@pytest.fixture
async def net_lab(node: ManagementNode, tmp_path: Path) -> AsyncIterator[NetLab]:
    """The virtual-router lab; stopping the node at the end ends any router agent its
    simulated host started (as in tests/core/virtual_router): checked."""
    lab = await make_net_lab(node, tmp_path)
    yield lab
    if node.running:
        await node.stop()
    assert router_agents(node.data_dir) == []


async def create_vm(lab: Lab, name: str = "web", **params: Any) -> dict[str, Any]:
    return await ok(
        lab.node,
        "CreateVmInstance",
        name=name,
        imageUuid=lab.image_uuid,
        instanceOfferingUuid=lab.offering["uuid"],
        **params,
    )


async def open_detail(pilot: Pilot) -> VmDetailScreen:
    """The VMs view, then Enter on the first VM."""
    await pilot.press("2")
    await shown(pilot, VmsScreen)
    await pilot.press("enter")
    return await shown(pilot, VmDetailScreen)


def overview(screen: VmDetailScreen) -> str:
    console = Console(width=100, file=io.StringIO())
    console.print(screen.query_one("#overview-body", Static).content)
    return console.file.getvalue()  # type: ignore[attr-defined]


def cells(table: ResourceTable, *fields: str) -> list[tuple[str, ...]]:
    return list(zip(*(table.column_values(f) for f in fields), strict=True))


def tail_text(screen: VmDetailScreen) -> str:
    return screen.query_one("#tail", SerialTerminal).text


async def test_each_tab_shows_the_vms_data(net_lab: NetLab) -> None:
    node, lab = net_lab.node, net_lab.lab
    vm = await create_vm(lab, l3NetworkUuids=[net_lab.public_l3["uuid"]])
    await ok(
        node, "CreateUserTag", resourceType="VmInstanceVO", resourceUuid=vm["uuid"], tag="team::a"
    )
    [nic] = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    [l2] = await ok(node, "QueryL2Network", conditions=["name=public-l2"])
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_detail(pilot)
        assert screen.vm is not None and screen.vm["uuid"] == vm["uuid"]
        assert str(screen.sub_title) == "VM web"
        text = overview(screen)
        for expected in (
            "name          web",
            "state         Running",
            f"uuid          {vm['uuid']}",
            "host          sim",
            "cpu / memory  1 vCPU · 512M",
            "image         base",
            "offering      small",
            "default L3    public",
            "type          UserVm · Simulator · Linux",
            f"root volume   {vm['rootVolumeUuid']}",
        ):
            assert expected in text, text
        assert cells(screen.table_of("nics"), "name", "ip", "macShown", "l3Name", "gateway") == [
            ("eth0", "203.0.113.2 (static)", nic["mac"], "public", "203.0.113.1")  # no DHCP
        ]
        assert cells(screen.table_of("nics"), "tap", "bridge") == [
            (nic["internalName"], l2["bridgeName"])
        ]
        assert cells(screen.table_of("tags"), "type", "tag") == [("user", "team::a")]
        assert screen.table_of("ops").column_values("apiName") == ["CreateVmInstance"]
        tabs = [str(tab.label) for tab in screen.query("Tab")]
        assert tabs == ["Overview", "NICs 1", "Tags 1", "Operations 1", "Console"]
        await pilot.press("right_square_bracket")
        assert screen.active_tab == "nics" and screen.table_of("nics").has_focus
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert screen.active_tab == "console"
        await pilot.press("escape")
        await shown(pilot, VmsScreen)


async def test_past_operations_and_their_steps(lab: Lab) -> None:
    await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_detail(pilot)
        ops = screen.table_of("ops")
        await pilot.press("x")
        await wait_until(pilot, lambda: screen.vm["state"] == "Stopped", what="Stopped")  # type: ignore[index]
        assert "state         Stopped" in overview(screen)
        assert "host          sim (last)" in overview(screen)
        await pilot.press("s")
        await wait_until(pilot, lambda: screen.vm["state"] == "Running", what="Running")  # type: ignore[index]
        await wait_until(
            pilot,
            lambda: (
                ops.column_values("apiName")
                == ["StartVmInstance", "StopVmInstance", "CreateVmInstance"]
            ),
            what="the operations, newest first",
        )
        assert ops.column_values("status") == ["Succeeded"] * 3
        screen.show_tab("ops")
        await wait_until(pilot, lambda: ops.has_focus, what="the operations table")
        await pilot.press("enter")  # the newest: StartVmInstance
        detail = screen.query_one(OperationDetail)
        assert detail.has_focus and screen.has_class("-op-detail")
        for step in ("StartVmInstance", "VmStartOnHypervisorFlow", "Succeeded"):
            assert step in detail.text
        await pilot.press("escape")  # back to the list
        assert ops.has_focus and not screen.has_class("-op-detail")
        assert isinstance(app.screen, VmDetailScreen)
        await pilot.press("r")  # a reload shows the same log
        await shown(pilot, VmDetailScreen, loads=2)
        assert ops.column_values("apiName")[:2] == ["StartVmInstance", "StopVmInstance"]


async def test_state_follows_events_and_a_deleted_vm_is_gone(lab: Lab) -> None:
    vm = await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_detail(pilot)
        await ok(lab.node, "PauseVmInstance", uuid=vm["uuid"])
        await wait_until(pilot, lambda: "state         Paused" in overview(screen), what="Paused")
        assert screen.status.text == "VM web · Paused"
        await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
        await ok(lab.node, "DestroyVmInstance", uuid=vm["uuid"])
        await wait_until(pilot, lambda: screen.vm["state"] == "Destroyed", what="Destroyed")  # type: ignore[index]
        assert screen.check_action("verb", ("recover",)) is True
        await ok(lab.node, "ExpungeVmInstance", uuid=vm["uuid"])
        await wait_until(pilot, lambda: screen.gone, what="the VM to be gone")
        assert "VM web was deleted: it is gone · Esc goes back" in screen.status.text
        assert screen.has_class("-gone")
        assert screen.check_action("verb", ("start",)) is False
        assert screen.check_action("console", ()) is False
        await pilot.press("s", "c")  # nothing happens
        assert isinstance(app.screen, VmDetailScreen)
        await pilot.press("escape")
        vms = await shown(pilot, VmsScreen)
        assert vms.table.rows_by_key == {}


async def test_destroy_asks_first(lab: Lab) -> None:
    vm = await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_detail(pilot)
        await pilot.press("d")
        dialog = await shown(pilot, ConfirmDialog)
        assert dialog.question.startswith("Destroy VM web?")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is screen, what="the detail again")
        [found] = await ok(lab.node, "QueryVmInstance", conditions=[f"uuid={vm['uuid']}"])
        assert found["state"] == "Running"
        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.vm["state"] == "Destroyed", what="Destroyed")  # type: ignore[index]
        assert screen.status.text == "web destroyed"
        await pilot.press("R")
        await wait_until(pilot, lambda: screen.vm["state"] == "Stopped", what="recovered")  # type: ignore[index]


async def test_the_console_tab_shows_the_tail_and_c_attaches(lab: Lab) -> None:
    await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_detail(pilot)
        screen.show_tab("console")
        await wait_until(pilot, lambda: screen.tails_read >= 1, what="the console's tail")
        assert "simulated VM" in tail_text(screen)
        note = str(screen.query_one("#tail-note", Static).content)
        assert note == f"The last {TAIL_LINES} lines of the console log · c opens the console"
        await pilot.press("c")
        console = await shown(pilot, ConsoleScreen)
        assert console.vm_name == "web"
        await pilot.press(*"echo hi", "enter")
        terminal = console.query_one(SerialTerminal)
        await wait_until(pilot, lambda: terminal.text.endswith("echo hi\n/ # "), what="the echo")
        await pilot.press("ctrl+right_square_bracket")
        await wait_until(pilot, lambda: app.screen is screen, what="the detail again")
        await wait_until(pilot, lambda: screen.tails_read >= 2, what="the tail again")
        assert tail_text(screen).splitlines()[-1] == "echo hi"


async def test_the_console_tab_of_a_stopped_vm_says_why(lab: Lab) -> None:
    vm = await create_vm(lab)
    await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_detail(pilot)
        screen.show_tab("console")
        await wait_until(pilot, lambda: screen.tails_read >= 1, what="the console's tail")
        note = str(screen.query_one("#tail-note", Static).content)
        assert note == "VM web is Stopped: its console can be read while it runs."
        assert tail_text(screen) == ""


async def test_read_only_shows_and_changes_nothing(lab: Lab) -> None:
    await create_vm(lab)
    app = app_on(lab.node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_detail(pilot)
        assert str(screen.sub_title) == "VM web · read-only"
        assert screen.check_action("verb", ("stop",)) is None
        await pilot.press("x", "d")
        await pilot.pause(0.2)
        assert isinstance(app.screen, VmDetailScreen)
        [found] = await ok(lab.node, "QueryVmInstance")
        assert found["state"] == "Running" and screen.vm["state"] == "Running"  # type: ignore[index]
        await pilot.press("c")  # watching the console is allowed
        await shown(pilot, ConsoleScreen)

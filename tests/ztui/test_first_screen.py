"""The first screen tells a newcomer what to do next (with the keys the keymap has now),
and an empty hosts panel names its real cause: still connecting, the node's problem
(a first-start bootstrap that could not add this machine), a host's own problem."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.client import InProcessClient, NodeClient
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties, load
from tests.conftest import make_node, ok
from tests.core.bootstrap.test_bootstrap import refusing
from tests.core.vm.conftest import Lab
from tests.ztui.conftest import LARGE, SMALL, app_on, shown, wait_until
from ztui.app import ZtuiApp
from ztui.dialogs.create_vm import CreateVmDialog
from ztui.formatting import Formatter
from ztui.screens.dashboard import DashboardScreen
from ztui.screens.vms import VmsScreen
from ztui.widgets.capacity_panel import NO_HOSTS, capacity_lines, empty_lines


async def test_the_dashboard_says_what_to_do_next(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await shown(pilot, DashboardScreen)
        text = screen.summary_panel.text
        assert "Views     2 vms · 3 images · 4 networks · 5 hosts · 6 config · 7 ops" in text
        assert "Start     2 then n: your first VM · ? help · : a view by name" in text


async def test_the_hints_follow_the_keymap(node: ManagementNode, tmp_path: Path) -> None:
    config = tmp_path / "keymap.toml"
    config.write_text(
        f'[core]\ndata_dir = "{node.props.data_dir}"\n'
        '[ztui.keymap]\n"ztui.view.vms" = "v"\n"ztui.vm.create" = "N"\n'
    )
    props = load(config, env={})

    async def connector(_props: Properties) -> NodeClient:
        return InProcessClient(node)

    app = ZtuiApp(props, connector=connector)
    async with app.run_test(size=LARGE) as pilot:
        screen = await shown(pilot, DashboardScreen)
        assert "v vms · 3 images" in screen.summary_panel.text
        assert "v then N: your first VM" in screen.summary_panel.text


async def test_no_hosts_never_shows_while_connecting(lab: Lab) -> None:
    """Until the node answers, the hosts panel says it is connecting, not "no hosts"."""
    go = asyncio.Event()

    async def slow(_props: Properties) -> NodeClient:
        await go.wait()
        return InProcessClient(lab.node)

    app = ZtuiApp(lab.node.props, connector=slow)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        assert screen.capacity.text == "connecting to the management node…"
        go.set()
        await shown(pilot, DashboardScreen)
        assert screen.capacity.text.startswith("sim  Connected")


async def test_a_failed_bootstrap_is_the_cause_of_no_hosts(tmp_path: Path) -> None:
    """The first start could not add this machine: the panel shows why, not the advice to
    add a host."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[core]\ndata_dir = "{tmp_path / "data"}"\n[bootstrap]\nlocal_host = "simulator"\n'
    )
    props = load(config, env={})
    refuse = {"refuse": refusing("AddSimulatorHost", 1)}
    async with make_node(props, refuse, serve_socket=False) as node:
        assert await ok(node, "QueryHost") == []
        app = app_on(node)
        async with app.run_test(size=LARGE) as pilot:
            screen = await shown(pilot, DashboardScreen)
            lines = screen.capacity.text.splitlines()
            assert lines[0] == "no hosts yet:"
            assert "first-start bootstrap of a simulator host" in lines[1]
            assert "AddSimulatorHost refused by the test" in lines[1]
            assert NO_HOSTS not in screen.capacity.text


def test_a_host_that_is_not_connected_says_why() -> None:
    fmt = Formatter()
    host = {"uuid": "h1", "name": "kvm1", "status": "Disconnected", "state": "Enabled"}
    lines = [t.plain for t in capacity_lines(host, 60, fmt, "port 7070 is held by pid 9")]
    assert lines[1] == "  ✘ port 7070 is held by pid 9"
    connecting = {**host, "status": "Connecting"}
    assert [t.plain for t in capacity_lines(connecting, 60, fmt)][1] == "  connecting host kvm1…"
    assert [t.plain for t in empty_lines(False, None)] == [
        "hosts unknown: QueryHost failed (the status line says why)"
    ]
    assert [t.plain for t in empty_lines(True, {"problems": []})] == [NO_HOSTS]


async def test_the_new_vm_dialog_has_a_title_and_shows_its_keys(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        await shown(pilot, VmsScreen)
        await pilot.press("n")
        dialog = await shown(pilot, CreateVmDialog)
        box = dialog.query_one("VerticalScroll")
        assert box.border_title == "New VM"
        assert box.border_subtitle == "ctrl+s create · esc cancel"
        assert str(dialog.query_one("#create").label) == "Create (ctrl+s)"  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: dialog.loaded)

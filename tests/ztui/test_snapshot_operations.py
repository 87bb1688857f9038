"""Snapshots of the operations view at 80x24 and 120x40: the log newest first, a create
that rolled back selected (its error's causes, its steps), zoomed, and searched by
error code.  Dates, uuids and timings are masked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.vm.create_flows import DEFAULT_FLOWS as CREATE_FLOWS
from tests.conftest import ok
from tests.core.vm.conftest import make_lab
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, wait_until
from tests.ztui.test_operations import FAULT, create_params
from ztui.app import ZtuiApp
from ztui.screens.operations import OperationsScreen


def build(root: Path) -> Any:
    """A lab, a VM created and stopped, and a create that fails in its chain."""

    async def run(node: ManagementNode) -> None:
        lab = await make_lab(node, root)
        vm = await ok(node, "CreateVmInstance", **create_params(lab, "web"))
        await ok(node, "StopVmInstance", uuid=vm["uuid"])
        node.chains.build_all({"createVm": [*CREATE_FLOWS[:3], FAULT, *CREATE_FLOWS[3:]]}, [])
        try:
            reply = await node.call("CreateVmInstance", create_params(lab, "doomed"))
        finally:
            node.chains.build_all({}, [])
        assert not reply.success

    return run


def settled(app: ZtuiApp) -> bool:
    """The view loaded, the node's start-up work is in, and nothing runs any more."""
    screen = app.screen
    if not isinstance(screen, OperationsScreen) or screen.loads_completed < 1:
        return False
    rows = list(screen.table.rows_by_key.values())
    background = [r for r in rows if not r.get("apiName")]
    return bool(background) and all(r.get("status") != "Running" for r in rows)


def on_failed_create(*keys: str) -> Any:
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        assert isinstance(app, ZtuiApp)
        await pilot.press("7")
        await wait_until(pilot, lambda: settled(app), what="the operations log")
        await pilot.pause(0.3)
        screen = app.screen
        assert isinstance(screen, OperationsScreen)
        [doomed] = [
            key
            for key, row in screen.table.rows_by_key.items()
            if (row.get("params") or {}).get("name") == "doomed"
        ]
        assert screen.table.select_key(doomed)
        await pilot.pause()
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


def test_operations_small(snap_compare: Any, props: Properties, tmp_path: Path) -> None:
    prepare(props, build(tmp_path))
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=on_failed_create())


def test_operations_large(snap_compare: Any, props: Properties, tmp_path: Path) -> None:
    prepare(props, build(tmp_path))
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=LARGE, run_before=on_failed_create())


def test_operations_zoomed_small(snap_compare: Any, props: Properties, tmp_path: Path) -> None:
    prepare(props, build(tmp_path))
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=SMALL, run_before=on_failed_create("z"))


def test_operations_searched_by_error_code_large(
    snap_compare: Any, props: Properties, tmp_path: Path
) -> None:
    prepare(props, build(tmp_path))
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    keys = ("slash", *"SYS.1006", "enter")
    assert snap_compare(app, terminal_size=LARGE, run_before=on_failed_create(*keys))

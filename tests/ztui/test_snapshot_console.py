"""Snapshots of the serial console view at 80x24 and 120x40: the console log's tail,
``echo hi`` typed and echoed with the simulator's prompt, the cursor after it; read-only
(the banner, nothing typed); and a console that closed because its VM stopped.  The
console log's dates and uuids are masked.  (The lab: tests/ztui/test_snapshot_vm_detail.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot

from core.kernel.properties import Properties
from tests.ztui.conftest import LARGE, SMALL, own_node, wait_until
from tests.ztui.test_snapshot_vm_detail import lab_props, vm_running_again
from ztui.app import ZtuiApp
from ztui.screens.console import ConsoleScreen
from ztui.widgets.serial_terminal import SerialTerminal

__all__ = ["lab_props"]  # the fixture


def on_console(*typed: str, stop: bool = False) -> Callable[[Pilot], Awaitable[None]]:
    """``run_before``: the VM running again, its console open from the VMs view, ``typed``
    and echoed; with ``stop``, the VM then stopped (the console closes)."""

    async def run_before(pilot: Pilot) -> None:
        await vm_running_again(pilot)
        app = pilot.app
        assert isinstance(app, ZtuiApp)
        await pilot.press("c")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ConsoleScreen) and app.screen.loads_completed >= 1,
            what="the console",
        )
        screen = app.screen
        assert isinstance(screen, ConsoleScreen)
        terminal = screen.query_one(SerialTerminal)
        await wait_until(pilot, lambda: "started" in terminal.text, what="the console log")
        if typed:
            await pilot.press(*typed)
            line = "".join(k for k in typed if len(k) == 1)
            await wait_until(
                pilot, lambda: terminal.text.endswith(f"{line}\n/ # "), what="the echo"
            )
        if stop:
            reply = await app.session.call("StopVmInstance", {"uuid": screen.vm_uuid})
            assert reply.success, reply.error
            await wait_until(pilot, lambda: screen.end_message != "", what="the console to end")
            screen.trace_panel.record = None
        await pilot.pause(0.2)

    return run_before


def snapshot(
    props: Properties,
    snap_compare: Any,
    size: tuple[int, int],
    run_before: Callable[[Pilot], Awaitable[None]],
    **kw: Any,
) -> bool:
    app = ZtuiApp(props, connector=own_node, mask_volatile=True, **kw)
    return bool(snap_compare(app, terminal_size=size, run_before=run_before))


TYPED = (*"echo hi", "enter")


def test_console_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, on_console(*TYPED))


def test_console_large(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, LARGE, on_console(*TYPED))


def test_console_read_only_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, on_console(), read_only=True)


def test_console_closed_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, on_console(*TYPED, stop=True))

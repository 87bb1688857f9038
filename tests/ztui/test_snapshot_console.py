"""Snapshots of the serial console view at 80x24 and 120x40: the console log's tail,
``echo hi`` typed and echoed with the simulator's prompt, the cursor after it; read-only
(the banner, nothing typed); a console that closed because its VM stopped; 500 lines of
output (the newest and the prompt at the bottom), and the same scrolled back a page.  The
console log's dates and uuids are masked.  (The lab: tests/ztui/test_snapshot_vm_detail.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual import events
from textual.pilot import Pilot

from core.kernel.properties import Properties
from tests.ztui.conftest import LARGE, SMALL, own_node, wait_until
from tests.ztui.test_snapshot_vm_detail import lab_props, vm_running_again
from ztui.app import ZtuiApp
from ztui.screens.console import ConsoleScreen
from ztui.widgets.serial_terminal import SerialTerminal

__all__ = ["lab_props"]  # the fixture


def on_console(
    *typed: str, stop: bool = False, lines: int = 0, after: tuple[str, ...] = ()
) -> Callable[[Pilot], Awaitable[None]]:
    """``run_before``: the VM running again, its console open from the VMs view, ``typed``
    and echoed; with ``stop``, the VM then stopped (the console closes); with ``lines``,
    that many lines pasted and echoed (``line 1``…), then the keys ``after`` pressed."""

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
        for start in range(1, lines + 1, 50):
            end = min(lines, start + 49)
            terminal.post_message(
                events.Paste("".join(f"line {n}\n" for n in range(start, end + 1)))
            )
            await wait_until(
                pilot, lambda e=end: f"line {e}\n/ # " in terminal.text, what="the echo"
            )
        if after:
            await pilot.press(*after)
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


def test_console_500_lines_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, on_console(lines=500))


def test_console_500_lines_large(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, LARGE, on_console(lines=500))


def test_console_scrolled_back_small(lab_props: Properties, snap_compare: Any) -> None:
    assert snapshot(lab_props, snap_compare, SMALL, on_console(lines=500, after=("shift+pageup",)))

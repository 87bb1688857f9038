"""The serial console view on a simulator lab (whose console echoes what is typed and,
on Enter, prints CR LF and ``/ # `` and appends the line to the console log), and the
terminal emulation under it."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from textual.command import CommandPalette
from textual.pilot import Pilot

from core.client import InProcessClient
from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.vm.conftest import Lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from ztui.formatting import Formatter
from ztui.screens.console import ConsoleScreen
from ztui.screens.vms import VmsScreen
from ztui.widgets.serial_terminal import SerialTerminal, TerminalBuffer, key_bytes, mask_text

DETACH = "ctrl+right_square_bracket"


async def create_vm(lab: Lab, name: str = "web") -> dict:
    return await ok(
        lab.node,
        "CreateVmInstance",
        name=name,
        imageUuid=lab.image_uuid,
        instanceOfferingUuid=lab.offering["uuid"],
    )


async def console_log(node: ManagementNode, vm_uuid: str) -> bytes:
    """The console log's tail, as a new viewer gets it first."""
    async with await InProcessClient(node).open_console(vm_uuid) as stream:
        data = b""
        while len(data) < stream.history:
            data += await stream.read()
        return data[: stream.history]


async def open_console(pilot: Pilot) -> ConsoleScreen:
    await pilot.press("2")
    await shown(pilot, VmsScreen)
    await pilot.press("c")
    return await shown(pilot, ConsoleScreen)


def terminal(screen: ConsoleScreen) -> SerialTerminal:
    return screen.query_one(SerialTerminal)


async def test_type_into_the_console_then_detach(lab: Lab) -> None:
    vm = await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_console(pilot)
        term = terminal(screen)
        await wait_until(pilot, lambda: "started" in term.text, what="the console log's tail")
        assert screen.attached and term.input_enabled and term.has_focus
        assert "ctrl+] detaches" in str(screen.sub_title)
        await pilot.press(*"echo hi", "enter")
        await wait_until(
            pilot, lambda: term.text.endswith("started\necho hi\n/ # "), what="the echo and prompt"
        )
        await pilot.press("q", "2", "colon", "escape", "tab")  # the console's, not the app's
        await wait_until(pilot, lambda: term.text.endswith("/ # q2:"), what="typed keys")
        await pilot.press("ctrl+p", "ctrl+q")  # the app's priority keys go to the guest too
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConsoleScreen) and app.return_code is None
        stream = screen.stream
        assert stream is not None
        await pilot.press(DETACH)
        await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen), what="the VMs view")
        assert stream.ended and stream.close_reason == "closed by the viewer"
        await pilot.press("ctrl+p")  # back to being the palette
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press("escape")
        assert b"echo hi\n" in await console_log(lab.node, vm["uuid"])  # (the app stops the node)


async def test_the_console_of_a_stopped_vm_says_why(lab: Lab) -> None:
    vm = await create_vm(lab)
    await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_console(pilot)
        assert not screen.attached
        assert "cannot open the console of web" in screen.status.text
        assert "only a Running or Paused VM has a console" in screen.status.text
        assert not terminal(screen).input_enabled
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen), what="the VMs view")


async def test_the_vm_stopping_closes_the_console_then_r_attaches_again(lab: Lab) -> None:
    vm = await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_console(pilot)
        term = terminal(screen)
        await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
        await wait_until(pilot, lambda: screen.end_message != "", what="the console to end")
        assert screen.end_message == "the console of VM web closed (VM Stopped)"
        assert f"[{screen.end_message}]" in term.text
        assert "r attaches again" in screen.status.text
        assert not term.input_enabled
        await ok(lab.node, "StartVmInstance", uuid=vm["uuid"])
        await pilot.press("r")
        await wait_until(pilot, lambda: screen.attached, what="attached again")
        assert term.input_enabled
        await pilot.press(*"ls", "enter")
        await wait_until(pilot, lambda: term.text.endswith("\nls\n/ # "), what="the echo")


async def test_another_viewer_takes_the_console_over(lab: Lab) -> None:
    vm = await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_console(pilot)
        other = await InProcessClient(lab.node).open_console(vm["uuid"])
        try:
            await wait_until(pilot, lambda: screen.end_message != "", what="the takeover")
        finally:
            await other.close()
        assert "another viewer took over the console" in screen.end_message


async def test_read_only_shows_the_output_and_sends_nothing(lab: Lab) -> None:
    vm = await create_vm(lab)
    before = await console_log(lab.node, vm["uuid"])
    app = app_on(lab.node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_console(pilot)
        term = terminal(screen)
        await wait_until(pilot, lambda: "started" in term.text, what="the console log's tail")
        assert screen.attached and not term.input_enabled
        assert "read-only" in str(screen.query_one("#banner").render())
        await pilot.press(*"echo", "enter")
        await pilot.pause(0.3)
        assert "echo" not in term.text
        await pilot.press("escape")  # keys work the app
        await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen), what="the VMs view")
        assert await console_log(lab.node, vm["uuid"]) == before


async def test_the_detach_key_follows_the_keymap(lab: Lab) -> None:
    await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        app.set_keymap({"ztui.console.detach": "ctrl+x"})
        screen = await open_console(pilot)
        term = terminal(screen)
        await pilot.press(DETACH)  # now typed into the console
        assert isinstance(app.screen, ConsoleScreen)
        assert "ctrl+x detaches" in str(screen.sub_title)
        await pilot.press("ctrl+x")
        await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen), what="the VMs view")
        assert not term.input_enabled or not screen.attached


# -- the terminal ---------------------------------------------------------------------


def test_carriage_return_backspace_and_erase_edit_the_line() -> None:
    buffer = TerminalBuffer()
    buffer.feed("/ # echo hix\b \b\r\n")
    buffer.feed("progress 10%\rprogress 100%\r\n")
    buffer.feed("abcdef\r\x1b[3C\x1b[K\n")
    buffer.feed("a\tb\r\n")
    assert buffer.plain_lines() == ["/ # echo hi ", "progress 100%", "abc", "a       b", ""]


def test_colours_are_kept_and_other_sequences_dropped() -> None:
    buffer = TerminalBuffer()
    buffer.feed("\x1b]0;title\x07\x1b[?25l\x1b(B\x1b[1;31mred\x1b[0m plain\x1b[2J\r\n")
    [line] = buffer.lines
    assert line.plain == "red plain"
    style = line.get_style_at_offset(Console(), 0)
    assert style.bold and style.color is not None and style.color.number == 1  # red
    assert not line.get_style_at_offset(Console(), 4).bold


def test_a_sequence_cut_between_outputs_is_applied_whole() -> None:
    buffer = TerminalBuffer()
    buffer.feed("abc\x1b[")
    buffer.feed("2Dx\x1b")
    buffer.feed("[Ky")
    assert buffer.plain_lines() == ["axy"]


def test_the_cursor_position_query_is_answered_when_asked_to() -> None:
    buffer = TerminalBuffer()
    assert buffer.feed("/ # \x1b[6n", row=7) == "\x1b[7;5R"
    assert buffer.feed("\r\n/ # \x1b[6n", answer=False) == ""
    assert buffer.plain_lines() == ["/ # ", "/ # "]


def test_only_the_newest_lines_are_kept() -> None:
    buffer = TerminalBuffer(max_lines=3)
    buffer.feed("".join(f"line {i}\n" for i in range(10)))
    assert buffer.plain_lines() == ["line 7", "line 8", "line 9", ""]
    assert buffer.dropped == 7


def test_keys_become_what_a_terminal_sends() -> None:
    assert key_bytes("a", "a") == b"a"
    assert key_bytes("A", "A") == b"A"
    assert key_bytes("enter", "\r") == b"\r"
    assert key_bytes("backspace", None) == b"\x7f"
    assert key_bytes("tab", "\t") == b"\t"
    assert key_bytes("up", None) == b"\x1b[A"
    assert key_bytes("ctrl+c", None) == b"\x03"
    assert key_bytes("ctrl+d", "\x04") == b"\x04"
    assert key_bytes("escape", "\x1b") == b"\x1b"
    assert key_bytes("f13", None) == b""


def test_volatile_values_are_masked_for_screenshots() -> None:
    line = Text("2026-11-24 04:18:06 simulated VM d794603466b0429283e7fd41083275a4 started")
    assert mask_text(line, Formatter(mask_volatile=True)).plain == (
        "<date> simulated VM <uuid> started"
    )
    assert mask_text(line, Formatter()) is line

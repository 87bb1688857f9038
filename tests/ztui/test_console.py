"""The serial console view on a simulator lab (whose console echoes what is typed and,
on Enter, prints CR LF and ``/ # `` and appends the line to the console log), and the
terminal emulation under it."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
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
        app.set_keymap({"ztui.console.detach": "ctrl+x", "ztui.console.follow": "ctrl+f"})
        screen = await open_console(pilot)
        term = terminal(screen)
        await pilot.press(DETACH)  # now typed into the console
        assert isinstance(app.screen, ConsoleScreen)
        assert "ctrl+x detaches" in str(screen.sub_title)
        assert "ctrl+f" in term.leave_keys and "ctrl+f to follow" in term.scrolled_back_note
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


# -- following the guest, and the scroll-back -------------------------------------------

LINES = 500


def on_screen(pilot: Pilot) -> list[str]:
    """The rows the terminal shows, as text (what a user sees)."""
    return [strip.text.rstrip() for strip in pilot.app.screen._compositor.render_strips()]


def output_shown(pilot: Pilot, term: SerialTerminal) -> list[str]:
    """The terminal's rows on screen, without its scrollbar."""
    region = term.scrollable_content_region
    rows = [strip.text for strip in pilot.app.screen._compositor.render_strips()]
    return [row[region.x : region.right].rstrip() for row in rows[region.y : region.bottom]]


def top_line(rows: list[str]) -> int:
    """The number of the first ``line <n>`` shown (under the header)."""
    return int(rows[1].rpartition(" ")[2])


async def output(pilot: Pilot, term: SerialTerminal, first: int, last: int) -> None:
    """Make the guest print ``line <first>`` … ``line <last>`` (the simulator echoes
    what is pasted, each line followed by its prompt), fifty lines at a time."""
    for start in range(first, last + 1, 50):
        end = min(last, start + 49)
        term.post_message(events.Paste("".join(f"line {n}\n" for n in range(start, end + 1))))
        await wait_until(pilot, lambda e=end: f"line {e}\n/ # " in term.text, what="the echo")


async def console_after_output(pilot: Pilot) -> tuple[ConsoleScreen, SerialTerminal]:
    screen = await open_console(pilot)
    term = terminal(screen)
    await wait_until(pilot, lambda: "started" in term.text, what="the console log's tail")
    await output(pilot, term, 1, LINES)
    await pilot.pause()
    return screen, term


async def test_the_console_follows_the_guest_past_a_screenful(lab: Lab) -> None:
    await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        _screen, term = await console_after_output(pilot)
        shown_rows = on_screen(pilot)
        assert f"/ # line {LINES}" in shown_rows
        assert shown_rows.index(f"/ # line {LINES}") + 1 == shown_rows.index("/ #")  # the prompt
        assert term.following
        await pilot.press(*"echo hi")
        await pilot.pause()
        assert "/ # echo hi" in on_screen(pilot)


async def test_scroll_back_pages_through_the_past_and_sends_nothing(lab: Lab) -> None:
    vm = await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen, term = await console_after_output(pilot)
        text_before = term.text
        newest = top_line(on_screen(pilot))
        await pilot.press("shift+pageup")
        await pilot.pause()
        rows = on_screen(pilot)
        assert f"/ # line {LINES}" not in rows and top_line(rows) < newest
        assert not term.following
        assert "scrolled back: shift+pgdn / shift+end to follow" in rows[-3]  # the border
        page, height = top_line(rows), term.scrollable_content_region.height
        await pilot.press("shift+pageup", "shift+pageup")
        await pilot.pause()
        assert top_line(on_screen(pilot)) == page - 2 * height
        await pilot.press("shift+pagedown")
        await pilot.pause()
        assert top_line(on_screen(pilot)) == page - height
        await pilot.press("shift+home")
        await pilot.pause()
        assert "started" in on_screen(pilot)[1]  # the top of the log
        await pilot.pause(0.3)
        assert term.text == text_before  # nothing reached the guest (it would echo)
        assert screen.attached and isinstance(app.screen, ConsoleScreen)

        # the guest prints while the view is scrolled back: the view stays
        await ok(lab.node, "PauseVmInstance", uuid=vm["uuid"])
        await pilot.press("shift+end")
        await pilot.press(*"late", "enter")  # waits in the paused guest
        await pilot.press("shift+pageup")
        await pilot.pause()
        rows = output_shown(pilot, term)
        await ok(lab.node, "ResumeVmInstance", uuid=vm["uuid"])
        await wait_until(pilot, lambda: term.text.endswith("late\n/ # "), what="the late echo")
        await pilot.pause()
        assert output_shown(pilot, term) == rows and not term.following

        await pilot.press("shift+end")  # following again
        await pilot.pause()
        rows = on_screen(pilot)
        assert "/ # late" in rows and rows.index("/ # late") + 1 == rows.index("/ #")
        assert term.following and "scrolled back" not in str(term.border_subtitle or "")
        await output(pilot, term, LINES + 1, LINES + 40)
        await pilot.pause()
        assert f"/ # line {LINES + 40}" in on_screen(pilot)


async def test_a_typed_key_while_scrolled_back_follows_again(lab: Lab) -> None:
    await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        _screen, term = await console_after_output(pilot)
        await pilot.press("shift+pageup", "x")
        await wait_until(pilot, lambda: term.text.endswith("/ # x"), what="the echo")
        await pilot.pause()
        assert term.following and "/ # x" in on_screen(pilot)


async def test_attaching_again_shows_the_bottom_of_the_log(lab: Lab) -> None:
    await create_vm(lab)
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await console_after_output(pilot)
        await pilot.press(DETACH)
        await wait_until(pilot, lambda: isinstance(app.screen, VmsScreen), what="the VMs view")
        await pilot.press("c")
        screen = await shown(pilot, ConsoleScreen)
        term = terminal(screen)
        await wait_until(pilot, lambda: f"\nline {LINES}\n" in term.text, what="the log's tail")
        await pilot.pause()
        rows = on_screen(pilot)
        assert f"line {LINES}" in rows and term.following


class TerminalApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SerialTerminal(max_lines=100)


async def test_scrolled_back_the_view_stays_on_its_lines_as_the_oldest_go() -> None:
    app = TerminalApp()
    async with app.run_test(size=SMALL) as pilot:
        term = app.query_one(SerialTerminal)
        for n in range(1, 101):
            term.write(b"line %d\r\n" % n)
        await pilot.pause()
        assert term.following and output_shown(pilot, term)[-2] == "line 100"
        term.scroll_page_up(animate=False)
        await pilot.pause()
        rows = output_shown(pilot, term)
        term.write(b"".join(b"line %d\r\n" % n for n in range(101, 111)))
        await pilot.pause()
        assert term.buffer.dropped == 10 and not term.following
        assert output_shown(pilot, term) == rows

"""A serial console's output as a scrolling terminal, and the keys typed into it.

A serial line has no screen size and no cursor addressing worth the name: what
comes out of a guest is lines, edited in place with carriage returns,
backspaces and a few escape sequences (colours, erase-line, cursor left and
right: what a shell's line editor sends).  :class:`TerminalBuffer` applies those
to a list of lines (the newest few thousand); the rest (cursor addressing,
screen clears, modes, titles) is dropped.  The cursor position query
``ESC[6n`` that busybox sends with every prompt is answered (``ESC[<row>;<col>R``)
when the terminal accepts input.

:class:`SerialTerminal` shows the lines and, while ``input_enabled``, turns
every key into the bytes a terminal would send (Enter ``\\r``, Backspace
``\\x7f``, arrows ``ESC[A``…, ctrl+c ``\\x03``) posted as :class:`SerialTerminal.Typed`,
except ``leave_keys`` (the screen's detach and scroll-back keys), which reach the screen's
bindings.  It follows the output (the newest line at the bottom) while ``following``: a
scroll away from the bottom (a key, the wheel, the scrollbar) stops that, a scroll back to
it, :meth:`follow` or a key typed into the console starts it again.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from typing import ClassVar

from rich.ansi import SGR_STYLE_MAP
from rich.cells import cell_len
from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual import events
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ztui.formatting import Formatter

MAX_LINES = 5000
TAB = 8

_TOKEN = re.compile(
    r"(?P<csi>\x1b\[[0-?]*[ -/]*[@-~])"
    r"|(?P<osc>\x1b\][^\x07\x1b]*(?:\x07|\x1b\\))"
    r"|(?P<esc>\x1b[ -/]*[0-Z\\^-~])"
    r"|(?P<partial>\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[ -/]*)\Z)"
    r"|(?P<ctl>[\x00-\x1f\x7f-\x9f])"
    r"|(?P<text>[^\x00-\x1f\x7f-\x9f]+)"
)
"""Output split into escape sequences (CSI, OSC, two-byte ESC), a sequence cut short
at the end (kept for the next output), control characters and plain text."""

_VOLATILE = (
    (re.compile(r"\b[0-9a-f]{32}\b"), "uuid"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d+)?"), "date"),
)
"""What a console log shows that differs between runs (masked for screenshots)."""

KEY_SEQUENCES: dict[str, bytes] = {
    "enter": b"\r",
    "backspace": b"\x7f",
    "tab": b"\t",
    "shift+tab": b"\x1b[Z",
    "escape": b"\x1b",
    "space": b" ",
    "up": b"\x1b[A",
    "down": b"\x1b[B",
    "right": b"\x1b[C",
    "left": b"\x1b[D",
    "home": b"\x1b[H",
    "end": b"\x1b[F",
    "insert": b"\x1b[2~",
    "delete": b"\x1b[3~",
    "pageup": b"\x1b[5~",
    "pagedown": b"\x1b[6~",
    "f1": b"\x1bOP",
    "f2": b"\x1bOQ",
    "f3": b"\x1bOR",
    "f4": b"\x1bOS",
    "f5": b"\x1b[15~",
    "f6": b"\x1b[17~",
    "f7": b"\x1b[18~",
    "f8": b"\x1b[19~",
    "f9": b"\x1b[20~",
    "f10": b"\x1b[21~",
    "f11": b"\x1b[23~",
    "f12": b"\x1b[24~",
    "ctrl+at": b"\x00",
    "ctrl+space": b"\x00",
    "ctrl+backslash": b"\x1c",
    "ctrl+right_square_bracket": b"\x1d",
    "ctrl+circumflex_accent": b"\x1e",
    "ctrl+underscore": b"\x1f",
}
"""What a VT100/xterm sends for each key Textual names (ctrl+letters are computed)."""


def key_bytes(key: str, character: str | None) -> bytes:
    """The bytes a terminal sends for a key (b"" for one it cannot send)."""
    if key in KEY_SEQUENCES:
        return KEY_SEQUENCES[key]
    modifier, _, rest = key.rpartition("+")
    if modifier == "ctrl" and len(rest) == 1 and rest.isalpha():
        return bytes([ord(rest.lower()) & 0x1F])
    if modifier == "alt" and len(rest) == 1:
        return b"\x1b" + rest.encode()
    if character:
        return character.encode()
    return b""


def sgr_style(style: Style, params: str) -> Style:
    """The style after a Select Graphic Rendition sequence (``ESC[1;31m``)."""
    codes = [int(c) if c.isdigit() else 0 for c in params.replace(":", ";").split(";")]
    found = iter(codes)
    for code in found:
        if code == 0:
            style = Style.null()
        elif code in SGR_STYLE_MAP:
            style += Style.parse(SGR_STYLE_MAP[code])
        elif code in (38, 48):
            kind = next(found, None)
            if kind == 5:
                color = Color.from_ansi(min(255, next(found, 0)))
            elif kind == 2:
                rgb = [min(255, next(found, 0)) for _ in range(3)]
                color = Color.from_rgb(*rgb)
            else:
                continue
            style += Style.from_color(color) if code == 38 else Style.from_color(None, color)
    return style


def mask_text(text: Text, fmt: Formatter) -> Text:
    """The line with uuids and dates masked when the formatter masks volatile values."""
    if not fmt.mask_volatile:
        return text
    plain = text.plain
    found = sorted(
        (m.start(), m.end(), name) for pattern, name in _VOLATILE for m in pattern.finditer(plain)
    )
    if not found:
        return text
    out = Text(no_wrap=True, end="")
    position = 0
    for start, end, name in found:
        if start < position:
            continue
        out.append_text(text[position:start])
        shown = fmt.date(plain[start:end]) if name == "date" else fmt.volatile(None, name)
        out.append(shown, style=_style_at(text, start))
        position = end
    out.append_text(text[position:])
    return out


def mask_plain(text: str, fmt: Formatter) -> str:
    """:func:`mask_text` of a plain string."""
    return mask_text(Text(text), fmt).plain


def _style_at(text: Text, offset: int) -> Style:
    """The style of one character of a line (its base style and the spans over it)."""
    style = Style.parse(text.style) if isinstance(text.style, str) else text.style
    for span in text.spans:
        if span.start <= offset < span.end:
            style += Style.parse(span.style) if isinstance(span.style, str) else span.style
    return style


class TerminalBuffer:
    """The lines a serial terminal shows: finished ones, and the one under the cursor
    (which carriage returns, backspaces and erase sequences edit in place)."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self.max_lines = max_lines
        self.lines: list[Text] = []
        self.dropped = 0
        """How many lines were dropped from the top (the first line's number)."""
        self.width = 0
        """The widest finished line seen (cells)."""
        self.col = 0
        self.style = Style.null()
        self._chars: list[str] = []
        self._styles: list[Style] = []
        self._pending = ""

    @property
    def current(self) -> Text:
        """The line under the cursor."""
        text = Text(no_wrap=True, end="")
        start = 0
        chars, styles = self._chars, self._styles
        for i in range(1, len(chars) + 1):
            if i == len(chars) or styles[i] != styles[start]:
                text.append("".join(chars[start:i]), styles[start] or None)
                start = i
        return text

    @property
    def current_width(self) -> int:
        return len(self._chars)

    def plain_lines(self) -> list[str]:
        """Every line as plain text, the cursor's line last."""
        return [line.plain for line in self.lines] + ["".join(self._chars)]

    def feed(self, text: str, *, row: int = 1, answer: bool = True) -> str:
        """Apply some output; what the terminal answers (cursor position reports, when
        ``answer``; ``row`` is the cursor's row on screen)."""
        replies: list[str] = []
        text, self._pending = self._pending + text, ""
        for match in _TOKEN.finditer(text):
            kind, value = match.lastgroup, match.group()
            if kind == "text":
                self._put(value)
            elif kind == "ctl":
                self._control(value)
            elif kind == "csi":
                reply = self._csi(value[2:-1], value[-1], row)
                if reply and answer:
                    replies.append(reply)
            elif kind == "partial":
                self._pending = value
            # osc (titles…) and two-byte escapes (charsets, keypad modes) change nothing shown
        return "".join(replies)

    def newline(self) -> None:
        """Finish the cursor's line (the next output starts a new one)."""
        line = self.current
        self.lines.append(line)
        self.width = max(self.width, line.cell_len)
        self._chars, self._styles, self.col = [], [], 0
        extra = len(self.lines) - self.max_lines
        if extra > 0:
            del self.lines[:extra]
            self.dropped += extra

    def _put(self, text: str) -> None:
        col, chars = self.col, self._chars
        if col > len(chars):
            pad = col - len(chars)
            chars.extend(" " * pad)
            self._styles.extend([Style.null()] * pad)
        chars[col : col + len(text)] = text
        self._styles[col : col + len(text)] = [self.style] * len(text)
        self.col = col + len(text)

    def _control(self, char: str) -> None:
        if char == "\r":
            self.col = 0
        elif char in "\n\x0b\x0c":
            self.newline()  # a log written with bare LFs starts each line at the left too
        elif char == "\b":
            self.col = max(0, self.col - 1)
        elif char == "\t":
            self.col = (self.col // TAB + 1) * TAB
        # BEL, NUL, SO/SI and the rest show nothing

    def _csi(self, params: str, final: str, row: int) -> str:
        """Apply one control sequence; its answer, if it asks for one."""
        if params[:1] in ("<", "=", ">", "?"):
            return ""  # private modes: cursor visibility, bracketed paste…
        params = params.rstrip(" !\"#$%&'()*+,-./")
        first = params.split(";")[0]
        n = int(first) if first.isdigit() else 0
        chars, styles = self._chars, self._styles
        if final == "m":
            self.style = sgr_style(self.style, params)
        elif final == "K":  # erase in line: 0 to the end, 1 to the cursor, 2 all of it
            if n == 0:
                del chars[self.col :], styles[self.col :]
            elif n == 1:
                end = min(self.col + 1, len(chars))
                chars[:end], styles[:end] = [" "] * end, [Style.null()] * end
            else:
                chars.clear()
                styles.clear()
        elif final == "C":
            self.col += max(1, n)
        elif final == "D":
            self.col = max(0, self.col - max(1, n))
        elif final == "G":
            self.col = max(1, n) - 1
        elif final in "Hf":
            parts = params.split(";")
            column = parts[1] if len(parts) > 1 else ""
            self.col = max(1, int(column) if column.isdigit() else 1) - 1
        elif final == "P":  # delete characters
            del chars[self.col : self.col + max(1, n)], styles[self.col : self.col + max(1, n)]
        elif final == "@":  # insert blanks
            count = max(1, n)
            chars[self.col : self.col] = [" "] * count
            styles[self.col : self.col] = [Style.null()] * count
        elif final == "X":  # erase characters
            end = min(self.col + max(1, n), len(chars))
            for i in range(self.col, end):
                chars[i], styles[i] = " ", Style.null()
        elif final == "n" and n == 6:
            return f"\x1b[{max(1, row)};{self.col + 1}R"
        elif final == "n" and n == 5:
            return "\x1b[0n"
        return ""


class SerialTerminal(ScrollView, can_focus=True):
    """A serial console's output (the newest ``max_lines`` lines), following the end
    while scrolled to it; typed keys become :class:`Typed` while ``input_enabled``."""

    DEFAULT_CSS = """
    SerialTerminal {
        height: 1fr;
        background: $surface;
        color: $text;
        overflow: auto auto;
        scrollbar-size: 1 1;
    }
    SerialTerminal:focus {
        background-tint: $foreground 3%;
    }
    SerialTerminal.-scrolled-back {
        border-bottom: heavy $warning;
        border-subtitle-align: left;
        border-subtitle-color: $text;
    }
    """

    class Typed(Message):
        """Bytes for the console: typed keys, pasted text, the terminal's answers."""

        def __init__(self, data: bytes) -> None:
            super().__init__()
            self.data = data

    NOTE_STYLE: ClassVar[str] = "bold yellow"
    SCROLLED_BACK_NOTE: ClassVar[str] = "scrolled back: shift+pgdn / shift+end to follow"
    """The bottom border's note while scrolled back (the screen says its own keys)."""

    def __init__(
        self,
        fmt: Formatter | None = None,
        *,
        max_lines: int = MAX_LINES,
        show_cursor: bool = True,
        leave_keys: Iterable[str] = (),
        declared_keys: Iterable[str] = (),
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.fmt = fmt or Formatter()
        self.buffer = TerminalBuffer(max_lines)
        self.show_cursor = show_cursor
        self.leave_keys = frozenset(leave_keys)
        """Keys left to the screen's bindings while input is enabled (detach)."""
        self.declared_keys = frozenset(declared_keys)
        """The keys those bindings declare: never hidden from the bindings (Textual
        applies the keymap after it drops the keys a focused widget consumes)."""
        self._input_enabled = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._strips: LRUCache[int, Strip] = LRUCache(1024)
        self._following = True
        self.scrolled_back_note = self.SCROLLED_BACK_NOTE

    # -- input --------------------------------------------------------------------

    @property
    def input_enabled(self) -> bool:
        """Whether keys go to the console (else they work the app as usual)."""
        return self._input_enabled

    @input_enabled.setter
    def input_enabled(self, enabled: bool) -> None:
        self._input_enabled = enabled
        self.refresh()
        if self.is_attached:
            self.screen.refresh_bindings()  # the footer shows the app's keys again, or not

    def check_consume_key(self, key: str, character: str | None = None) -> bool:
        return self._input_enabled and key not in self.leave_keys | self.declared_keys

    def on_key(self, event: events.Key) -> None:
        if not self._input_enabled or event.key in self.leave_keys:
            return
        event.stop()
        event.prevent_default()
        data = key_bytes(event.key, event.character)
        if data:
            self.follow()  # what is typed is seen, as a terminal scrolls on a keystroke
            self.post_message(self.Typed(data))

    def on_paste(self, event: events.Paste) -> None:
        if self._input_enabled and event.text:
            event.stop()
            text = event.text.replace("\r\n", "\r").replace("\n", "\r")
            self.follow()
            self.post_message(self.Typed(text.encode()))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- output -------------------------------------------------------------------

    def write(self, data: bytes, *, answer: bool = True) -> None:
        """Show some output; a cursor position query is answered (as :class:`Typed`)
        only when ``answer`` and input is enabled (never for the console log's past)."""
        text = self._decoder.decode(data)
        if not text:
            return
        row = min(self.line_count, max(1, self.size.height))
        dropped = self.buffer.dropped
        reply = self.buffer.feed(text, row=row, answer=answer and self._input_enabled)
        self._changed()
        if not self._following and self.buffer.dropped > dropped:
            # the lines shown moved up as the oldest went: the view goes with them
            self.scroll_to(y=self.scroll_y - (self.buffer.dropped - dropped), animate=False)
        if reply:
            self.post_message(self.Typed(reply.encode()))

    def write_note(self, text: str, style: str | None = None) -> None:
        """A line of ztui's own (``[console closed: …]``) below the output."""
        if self.buffer.current_width:
            self.buffer.newline()
        line = Text(no_wrap=True, end="")
        line.append(text, style=style or self.NOTE_STYLE)  # a span: render() skips base styles
        self.buffer.lines.append(line)
        self.buffer.width = max(self.buffer.width, cell_len(text))
        self._changed()

    def clear(self) -> None:
        self.buffer = TerminalBuffer(self.buffer.max_lines)
        self._decoder.reset()
        self._strips.clear()
        self._changed()

    @property
    def line_count(self) -> int:
        shows_current = self.show_cursor or self.buffer.current_width > 0
        return len(self.buffer.lines) + (1 if shows_current else 0)

    @property
    def text(self) -> str:
        """Every line as plain text (for tests)."""
        return "\n".join(self.buffer.plain_lines())

    def _changed(self) -> None:
        width = max(self.buffer.width, self.buffer.current_width + 1)
        self.virtual_size = Size(width, self.line_count)
        self._keep_following()
        self.refresh()

    # -- following the output -----------------------------------------------------

    @property
    def following(self) -> bool:
        """Whether the view stays on the newest output (else it stays where it was
        scrolled to)."""
        return self._following

    def follow(self) -> None:
        """Show the newest output, and keep showing it as more comes."""
        self._set_following(True)
        self._keep_following()

    def _keep_following(self) -> None:
        """While following, scroll to the bottom now and again once the layout has
        counted the new size (a scrollbar that appears changes the bottom; before the
        layout, Textual refuses the scroll of a view without a scrollbar)."""
        if self._following:
            self._to_bottom()
            self.call_after_refresh(self._to_bottom)

    def _to_bottom(self) -> None:
        if self._following and self.is_attached:
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Any scroll (a key, the wheel, the scrollbar, following itself) follows from
        then on only when it ends at the bottom."""
        super().watch_scroll_y(old_value, new_value)
        self._set_following(round(new_value) >= self.max_scroll_y)

    def on_resize(self) -> None:
        self._keep_following()

    def _set_following(self, following: bool) -> None:
        if following == self._following:
            return
        self._following = following
        self.border_subtitle = "" if following else self.scrolled_back_note
        self.set_class(not following, "-scrolled-back")
        if self.is_attached:
            self.screen.refresh_bindings()  # the screen's follow key shows, or not

    # -- rendering ----------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        style = self.rich_style
        index = scroll_y + y
        lines = self.buffer.lines
        if index < len(lines):
            number = self.buffer.dropped + index
            strip = self._strips.get(number)
            if strip is None:
                strip = self._strip(mask_text(lines[index], self.fmt), style)
                self._strips[number] = strip
        elif index == len(lines) and index < self.line_count:
            strip = self._strip(self._cursor_line(), style)
        else:
            return Strip.blank(width, style)
        return strip.crop_extend(scroll_x, scroll_x + width, style)

    def _cursor_line(self) -> Text:
        text = mask_text(self.buffer.current, self.fmt)
        if self.show_cursor and self._input_enabled and self.has_focus:
            col = self.buffer.col
            if text.cell_len <= col:
                text.append(" " * (col + 1 - text.cell_len))
            text.stylize("reverse", col, col + 1)
        return text

    def _strip(self, text: Text, style: Style) -> Strip:
        segments = list(text.render(self.app.console, end=""))
        return Strip(segments, text.cell_len).apply_style(style)

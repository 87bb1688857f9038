"""A VM's serial console: its output as it comes, and every key typed going to it.

The console is a byte stream from the core (``NodeSession.open_console``): its
first bytes are the tail of the VM's console log, then the live output.  Every
key goes to the console (Esc, Tab and ctrl+c too) except the detach key
(``ctrl+]``, as telnet and virsh have it; binding ``ztui.console.detach``), which
closes the stream and goes back.  When the console ends (the VM stopped,
another viewer took it over, the node is stopping…) the reason is shown; then
the keys work the app again: ``r`` attaches again, Esc goes back.  With
``--read-only`` the output is shown and nothing is typed.

The view follows the guest's output.  The scroll-back keys never reach the guest:
shift+pgup / shift+pgdn page through the past (``ztui.console.page_back`` /
``ztui.console.page_forward``), shift+home goes to the oldest line kept
(``ztui.console.oldest``), shift+end follows the output again
(``ztui.console.follow``; so does paging down to the bottom, or typing).  While scrolled
back, new output does not move the view, and the terminal's bottom border says so.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from core.kernel.errors import OperationError
from ztui.screens.base import ZtuiScreen
from ztui.session import NotConnected
from ztui.widgets.serial_terminal import SerialTerminal, mask_plain

if TYPE_CHECKING:
    from core.vm.console import VmConsoleStream

CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_FAILED, CLOSE_TAKEN_OVER = 1000, 1001, 4000, 4001
"""The console stream's close codes (core.vm.console): the VM stopped or the viewer
closed; the host agent or the node is stopping; it failed; another viewer took it."""
DETACH_ID = "ztui.console.detach"
DETACH_KEY = "ctrl+right_square_bracket"


def close_message(code: int | None, reason: str) -> str:
    """Why a console ended, in words (the far end's reason when it gave one)."""
    if code == CLOSE_NORMAL:
        return reason or "the console closed (the VM stopped)"
    if code == CLOSE_GOING_AWAY:
        return reason or "the console closed (the host agent or the node is stopping)"
    if code == CLOSE_TAKEN_OVER:
        return "another viewer took over the console" + (f" ({reason})" if reason else "")
    if code == CLOSE_FAILED:
        return f"the console failed: {reason or 'no reason given'}"
    return f"the console closed (code {code}): {reason or 'no reason given'}"


class ConsoleScreen(ZtuiScreen):
    """The serial console of one VM (pushed from the VMs view and the VM detail)."""

    DEFAULT_CSS = """
    ConsoleScreen FlowChainPanel.-shown {
        display: none;
    }
    ConsoleScreen #banner {
        height: 1;
        padding: 0 1;
        background: $warning 30%;
        display: none;
    }
    ConsoleScreen #banner.-shown {
        display: block;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(DETACH_KEY, "detach", "Detach", id=DETACH_ID, key_display="^]", priority=True),
        Binding("escape", "back", "Back", id="ztui.back"),
        Binding(
            "shift+pageup",
            "page_back",
            "Scroll",
            id="ztui.console.page_back",
            key_display="⇧PgUp",
            priority=True,
        ),
        Binding(
            "shift+pagedown",
            "page_forward",
            "Page forward",
            id="ztui.console.page_forward",
            key_display="⇧PgDn",
            priority=True,
            show=False,
        ),
        Binding(
            "shift+home",
            "oldest",
            "Oldest output",
            id="ztui.console.oldest",
            key_display="⇧Home",
            priority=True,
            show=False,
        ),
        Binding(
            "shift+end",
            "follow",
            "Follow",
            id="ztui.console.follow",
            key_display="⇧End",
            priority=True,
        ),
    ]

    def __init__(self, vm_uuid: str, vm_name: str) -> None:
        super().__init__()
        self.vm_uuid = vm_uuid
        self.vm_name = vm_name
        self.stream: VmConsoleStream | None = None
        self.end_message = ""
        """Why the console ended or could not open ('' while it runs)."""
        self._typed: asyncio.Queue[bytes] = asyncio.Queue()
        self._leaving = False

    @property
    def terminal(self) -> SerialTerminal:
        return self.query_one(SerialTerminal)

    @property
    def attached(self) -> bool:
        return self.stream is not None and not self.stream.ended

    @property
    def captures_keys(self) -> bool:
        """Whether the app's own priority keys (``ctrl+p``, ``ctrl+q``) go to the guest."""
        return self.attached and not self.context.read_only

    def compose_body(self) -> ComposeResult:
        yield Static("read-only: the output is shown, nothing you type is sent", id="banner")
        own = self.own_keys()
        terminal = SerialTerminal(
            self.fmt,
            leave_keys=set().union(*(self._keys(i) for i in own)),
            declared_keys=set(own.values()),
            id="terminal",
        )
        forward, follow = self._keys("ztui.console.page_forward"), self._keys("ztui.console.follow")
        terminal.scrolled_back_note = (
            f"scrolled back: {self._shown(forward)} / {self._shown(follow)} to follow"
        )
        yield terminal

    def on_mount(self) -> None:
        # (ZtuiScreen.on_mount runs after this one: Textual calls every class's handler)
        self.query_one("#banner").set_class(self.context.read_only, "-shown")
        self.sub_title = self._title()
        self.terminal.focus()

    @classmethod
    def own_keys(cls) -> dict[str, str]:
        """The screen's priority bindings (detach, scroll-back), whose keys never reach the
        guest: their default keys by binding id."""
        return {b.id: b.key for b in cls.BINDINGS if isinstance(b, Binding) and b.priority and b.id}

    def _keys(self, binding_id: str) -> set[str]:
        """A binding's keys, as the user's keymap has them (they never reach the console)."""
        keymap: dict[str, str] = getattr(self.app, "_keymap", {}) or {}
        keys = keymap.get(binding_id, self.own_keys()[binding_id])
        return {k.strip() for k in keys.split(",") if k.strip()}

    @staticmethod
    def _shown(keys: set[str]) -> str:
        """Keys as the titles say them."""
        named = {DETACH_KEY: "ctrl+]", "pageup": "pgup", "pagedown": "pgdn"}
        shown = []
        for key in sorted(keys):
            for name, short in named.items():
                key = key.replace(name, short)
            shown.append(key)
        return ", ".join(shown)

    def _title(self) -> str:
        text = f"console {self.vm_name} · {self._shown(self._keys(DETACH_ID))} detaches"
        return f"{text} · read-only" if self.context.read_only else text

    # -- attaching ----------------------------------------------------------------

    async def load(self) -> None:
        """Attach (at connect, and on ``r`` once the console ended)."""
        if self.attached:
            self.status.show_info(self._attached_text())
            return
        self.status.show_info(f"attaching to the console of {self.vm_name}…")
        try:
            stream = await self.session.open_console(self.vm_uuid)
        except OperationError as exc:
            self._ended(
                mask_plain(f"cannot open the console of {self.vm_name}: {exc.error}", self.fmt)
            )
            return
        except NotConnected:
            return
        if self._leaving:
            await stream.close()
            return
        self.stream, self.end_message = stream, ""
        self._typed = asyncio.Queue()
        self.terminal.input_enabled = not self.context.read_only
        self.status.show_info(self._attached_text())
        self._read(stream)
        self._write(stream, self._typed)

    def _attached_text(self) -> str:
        if self.context.read_only:
            return f"watching the console of {self.vm_name} (read-only)"
        return f"attached to the console of {self.vm_name} · every key goes to it"

    @work(group="console-read", exclusive=True, exit_on_error=False)
    async def _read(self, stream: VmConsoleStream) -> None:
        """Show the output as it comes (the console log's past is never answered)."""
        past = stream.history
        broken = True
        try:
            while data := await stream.read():
                if past > 0:
                    old, data = data[:past], data[past:]
                    past -= len(old)
                    self.terminal.write(old, answer=False)
                if data:
                    self.terminal.write(data)
            broken = False
        finally:  # an error still propagates (the worker's failure is shown too)
            if stream is self.stream and not self._leaving and self.is_attached:
                reason = stream.close_reason.replace(self.vm_uuid, self.vm_name)
                message = (
                    "the console's connection broke"
                    if broken
                    else mask_plain(close_message(stream.close_code, reason), self.fmt)
                )
                self.terminal.write_note(f"[{message}]")
                self._ended(message)

    @work(group="console-write", exclusive=True, exit_on_error=False)
    async def _write(self, stream: VmConsoleStream, typed: asyncio.Queue[bytes]) -> None:
        """Send what is typed, in order."""
        while True:
            data = await typed.get()
            try:
                await stream.write(data)
            except OperationError:
                return  # the console ended: the reader says why

    @on(SerialTerminal.Typed)
    def _typed_into(self, event: SerialTerminal.Typed) -> None:
        event.stop()
        if self.attached and not self.context.read_only:
            self._typed.put_nowait(event.data)

    def _ended(self, message: str) -> None:
        self.end_message = message
        self.terminal.input_enabled = False
        self.status.show_error(f"{message} · r attaches again")

    # -- the scroll-back -----------------------------------------------------------

    def action_page_back(self) -> None:
        """A page further into the past (binding ``ztui.console.page_back``)."""
        self.terminal.scroll_page_up(animate=False)

    def action_page_forward(self) -> None:
        """A page nearer the newest output; at the bottom, following it again (binding
        ``ztui.console.page_forward``)."""
        self.terminal.scroll_page_down(animate=False)

    def action_oldest(self) -> None:
        """The oldest output kept (binding ``ztui.console.oldest``)."""
        self.terminal.scroll_home(animate=False)

    def action_follow(self) -> None:
        """Back to the newest output, following it (binding ``ztui.console.follow``)."""
        self.terminal.follow()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "follow" and self.is_mounted:
            return not self.terminal.following  # shown while scrolled back
        return super().check_action(action, parameters)

    # -- leaving ------------------------------------------------------------------

    async def action_back(self) -> None:
        """Esc, once the keys work the app again (binding ``ztui.back``): as detach."""
        await self.action_detach()

    async def action_detach(self) -> None:
        """Close the console and go back (binding ``ztui.console.detach``)."""
        if self._leaving:
            return
        self._leaving = True
        await self._close()
        self.dismiss()

    async def _close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            with suppress(Exception):  # a broken stream is closed all the same
                await stream.close()

    async def on_unmount(self) -> None:
        """However the screen goes (the app quits too), the console is let go."""
        self._leaving = True
        await self._close()

    def on_node_event(self, path: str, data: Any) -> None:
        if path == "/vm/deleted" and isinstance(data, dict) and data.get("vmUuid") == self.vm_uuid:
            self.status.show_error(f"VM {self.vm_name} is gone · Esc goes back")

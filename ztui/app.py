"""The ztui application and its console entry point.

    ztui [--config PATH] [--read-only]

On start a worker attaches to the data dir's management node service,
starting it (detached) when none runs and saying so once; ztui never becomes
the node.  Another worker then follows the node's canonical events and hands
them to every open view.  Quitting leaves the node and everything it runs
going.  Exit status: 0, or 2 when start-up fails (bad config, the node cannot
start); the reason is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import deque
from collections.abc import Iterable
from contextlib import suppress
from typing import Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import AwaitMount
from textual.worker import Worker, WorkerError

from core.daemon.control import ControlError
from core.kernel.data_dir import NodeError
from core.kernel.errors import OperationError
from core.kernel.extensions import PluginError
from core.kernel.logs import configure_logging
from core.kernel.properties import Properties, PropertyError, add_config_argument, load
from ztui.bindings import every_binding
from ztui.commands import ViewActionsProvider
from ztui.context import RecentEvent, ZtuiContext
from ztui.dialogs.command_prompt import QUIT_WORDS, CommandPrompt, command_words
from ztui.formatting import Formatter
from ztui.keymap import load_keymap
from ztui.messages import NodeConnected
from ztui.operations import OperationTracker
from ztui.session import RESUBSCRIBE_DELAY, Connector, NodeSession, NotConnected
from ztui.views import DEFAULT_MODE, VIEWS, View, find_view

EXIT_OK, EXIT_STARTUP = 0, 2
UI_LOG_NAME = "ztui.log"
STARTUP_ERRORS = (ControlError, NodeError, PluginError, PropertyError, OperationError, OSError)
EVENT_PATTERNS = (
    "/vm/state/change",
    "/vm/deleted",
    "/host/status/change",
    "/appliance-vm/status/change",
    "/appliance-vm/repaired",
    "/image/download/progress",
    "/globalConfig/update/{category}/{name}",
    "/operation/update",
    "/gc/job/update",
    "/gc/job/deleted",
    "/client/overflow",
)
"""The canonical events ztui follows (``/operation/update`` feeds the flow-chain panel)."""
KEYS_FOR_THE_GUEST = frozenset({"command_palette", "quit"})
"""Actions of the app's priority bindings that an attached console takes as keys instead."""


def describe_startup_error(exc: Exception) -> str:
    """One line that says why start-up failed."""
    if isinstance(exc, OperationError):
        return str(exc.error)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


class ZtuiApp(App[None]):
    """The ZStack Lite terminal UI."""

    TITLE = "ZStack Lite"
    COMMANDS = {ViewActionsProvider}  # the view's verbs first, then Textual's system commands
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="ztui.quit"),
        Binding("colon", "command", "Command", id="ztui.command"),
        Binding(
            "ctrl+p", "command_palette", "palette", show=False, priority=True, id="ztui.palette"
        ),
        *(view.binding for view in VIEWS),
    ]

    def __init__(
        self,
        props: Properties,
        *,
        read_only: bool = False,
        mask_volatile: bool = False,
        connector: Connector | None = None,
    ) -> None:
        """``mask_volatile`` shows placeholders for uuids, dates, pids and paths
        (for reproducible screenshots); ``connector`` replaces attaching to the service."""
        super().__init__()
        self.context = ZtuiContext(
            NodeSession(props, connector),
            Formatter(mask_volatile=mask_volatile),
            read_only=read_only,
            views=VIEWS,
        )
        """What the views share (they reach it with ``ztui.context.context_of``)."""
        self.startup_error: str | None = None
        """Why start-up failed (the app then exits with status 2)."""
        self.command_history: list[str] = []
        self._connecting: Worker[None] | None = None
        self._keymap_problems: list[str] = []
        for view in self.views:
            if view.mode != DEFAULT_MODE:
                self.add_mode(view.mode, view.screen)
            else:  # Textual refuses add_mode("_default"); its stack is the one made at start
                self._modes[DEFAULT_MODE] = view.screen
        if read_only:
            self.sub_title = "read-only"

    # -- the context's state, as the app's own attributes (scripts and tests use them) --

    @property
    def session(self) -> NodeSession:
        return self.context.session

    @property
    def formatter(self) -> Formatter:
        return self.context.formatter

    @property
    def read_only(self) -> bool:
        """Started with ``--read-only``: every action that changes something is disabled."""
        return self.context.read_only

    @property
    def views(self) -> tuple[View, ...]:
        return self.context.views

    @property
    def operations(self) -> OperationTracker:
        return self.context.operations

    @property
    def recent_events(self) -> deque[RecentEvent]:
        return self.context.recent_events

    @property
    def connected(self) -> bool:
        return self.context.connected

    @property
    def trace_shown(self) -> bool:
        """Whether views show the flow-chain panel of the followed operation."""
        return self.context.trace_shown

    @trace_shown.setter
    def trace_shown(self, shown: bool) -> None:
        self.context.trace_shown = shown

    @property
    def previous_mode(self) -> str:
        """The view shown before the current one (Esc on the help goes back to it)."""
        return self.context.previous_mode

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While a console is attached, the palette and ctrl+q keys are typed into it."""
        for_the_guest = action in KEYS_FOR_THE_GUEST
        return not (for_the_guest and getattr(self.screen, "captures_keys", False))

    def get_default_screen(self) -> Screen[Any]:
        default = next((v for v in self.views if v.mode == DEFAULT_MODE), self.views[0])
        return default.screen()

    def on_mount(self) -> None:
        keymap, self._keymap_problems = load_keymap(self.session.props, self.all_binding_ids())
        self.set_keymap(keymap)

    def on_ready(self) -> None:
        """Connect once the first frame is up (an early failure then exits cleanly)."""
        for problem in self._keymap_problems:
            self.notify(problem, title="config.toml", severity="warning", timeout=10)
        self._connecting = self.connect_node()

    # -- the node -----------------------------------------------------------------

    @work(exclusive=True, group="node")
    async def connect_node(self) -> None:
        """Reach the node; a failure ends the app with status 2."""
        try:
            await self.session.open()
        except STARTUP_ERRORS as exc:
            self.startup_error = describe_startup_error(exc)
            self.exit(return_code=EXIT_STARTUP)
            return
        except NotConnected:  # the app closed the session while this was starting
            return
        self.context.connected = True
        for text in self.session.announcements:
            self.notify(text, title="management node", timeout=8)
        self.session.announcements.clear()
        self.context.broadcast(lambda: NodeConnected(self.session))
        self.follow_events()

    @work(exclusive=True, group="events", exit_on_error=False)
    async def follow_events(self) -> None:
        """Hand every canonical event to the open views, subscribing again if the
        stream ends (the node stopped: the session connects again, starting the
        service, and the views reload)."""
        first = True
        while True:
            stream = await self.session.subscribe(EVENT_PATTERNS)
            if stream is None:
                return  # the session is closed: the app is ending
            if not first:
                self.context.broadcast(lambda: NodeConnected(self.session))
            first = False
            try:
                async for event in stream:
                    self.dispatch_event(event.path, event.data)
            finally:
                await stream.close()
            await asyncio.sleep(RESUBSCRIBE_DELAY)

    def dispatch_event(self, path: str, data: Any) -> None:
        """Give one event to every open view (operations through the tracker first)."""
        self.context.dispatch_event(path, data)

    async def on_unmount(self) -> None:
        """Drop the link to the node however the app ends (the node goes on)."""
        worker = self._connecting
        if worker is not None and not worker.is_finished:
            with suppress(WorkerError):  # cancelled, failed or never started
                await worker.wait()
        await self.session.close()

    # -- views and commands -------------------------------------------------------

    def switch_mode(self, mode: str) -> AwaitMount:
        if mode != self.current_mode:
            self.context.previous_mode = self.current_mode
        return super().switch_mode(mode)

    def action_view(self, name: str) -> None:
        """Switch to a view by name (bindings ``ztui.view.<name>``)."""
        view = find_view(name)
        if view is None:
            self.notify(f"no view named {name!r}", severity="warning")
            return
        self.switch_mode(view.mode)

    def action_command(self) -> None:
        """Open the ``:`` command bar (binding ``ztui.command``)."""
        prompt = CommandPrompt(command_words(self.views), self.command_history)
        self.push_screen(prompt, self.run_command)

    def run_command(self, text: str | None) -> None:
        """Run what was typed in the command bar: a view name or alias, or ``q``."""
        if not text:
            return
        word = text.split()[0]
        if word in QUIT_WORDS:
            self.exit()
            return
        view = find_view(word)
        if view is None:
            names = ", ".join(v.name for v in self.views)
            self.notify(f"unknown command :{text} (views: {names})", severity="warning")
            return
        self.switch_mode(view.mode)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for view in self.views:
            yield SystemCommand(
                f"Go to {view.title}",
                f":{view.name} (aliases {', '.join(view.aliases) or 'none'})",
                lambda view=view: self.switch_mode(view.mode),
            )
        yield from super().get_system_commands(screen)

    def all_binding_ids(self) -> set[str]:
        """Every binding id of the app and its views (what a keymap may name)."""
        return {b.id for _owner, b in every_binding(self) if b.id}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ztui",
        description="The ZStack Lite terminal UI: a client of the management node service "
        "(started when it does not run).",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="show everything, change nothing (for demos): every action that changes "
        "something is disabled",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    ns = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        props = load(ns.config)
        configure_logging(props, log_name=UI_LOG_NAME)  # a file: the UI owns the terminal
    except (PropertyError, OSError) as exc:
        print(f"ztui: {describe_startup_error(exc)}", file=sys.stderr)
        return EXIT_STARTUP
    app = ZtuiApp(props, read_only=ns.read_only)
    app.run()
    if app.startup_error is not None:
        print(f"ztui: {app.startup_error}", file=sys.stderr)
    return app.return_code or EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

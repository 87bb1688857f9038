"""The ztui application and its console entry point.

    ztui [--config PATH] [--read-only]

On start a worker connects to the data dir's management node: it runs the
node in this process when the data dir is free (serving the node's socket,
so ``zcli`` reaches it) and otherwise attaches to the node that runs there.
Quitting stops an in-process node cleanly.  Exit status: 0, or 2 when start-up
fails (bad config, the node cannot start); the reason is one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import suppress

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerError

from core.client import connect
from core.kernel.errors import OperationError
from core.kernel.extensions import PluginError
from core.kernel.logs import configure_logging
from core.kernel.node import NodeError
from core.kernel.properties import Properties, PropertyError, add_config_argument, load
from ztui.formatting import Formatter
from ztui.messages import NodeConnected
from ztui.screens.overview import OverviewScreen
from ztui.session import Connector, NodeSession, NotConnected

EXIT_OK, EXIT_STARTUP = 0, 2
STARTUP_ERRORS = (NodeError, PluginError, PropertyError, OperationError, OSError)


def describe_startup_error(exc: Exception) -> str:
    """One line that says why start-up failed."""
    if isinstance(exc, OperationError):
        return str(exc.error)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


class ZtuiApp(App[None]):
    """The ZStack Lite terminal UI (for now: a read-only overview)."""

    TITLE = "ZStack Lite"
    SUB_TITLE = "overview"
    BINDINGS = [Binding("q", "quit", "Quit", id="ztui.quit")]

    def __init__(
        self,
        props: Properties,
        *,
        read_only: bool = False,
        mask_volatile: bool = False,
        connector: Connector = connect,
    ) -> None:
        """``mask_volatile`` shows placeholders for uuids, dates, pids and paths
        (for reproducible screenshots); ``connector`` replaces ``core.client.connect``."""
        super().__init__()
        self.read_only = read_only
        """Accepted for the command line; everything ztui shows so far is read-only."""
        self.session = NodeSession(props, connector)
        self.formatter = Formatter(mask_volatile=mask_volatile)
        self.startup_error: str | None = None
        """Why start-up failed (the app then exits with status 2)."""
        self._overview = OverviewScreen(self.session, self.formatter)
        self._connecting: Worker[None] | None = None

    def get_default_screen(self) -> Screen[None]:
        return self._overview

    def on_ready(self) -> None:
        """Connect once the first frame is up (an early failure then exits cleanly)."""
        self._connecting = self.connect_node()

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
        self._overview.post_message(NodeConnected(self.session))

    async def on_unmount(self) -> None:
        """Stop the in-process node (or drop the socket) however the app ends."""
        worker = self._connecting
        if worker is not None and not worker.is_finished:
            with suppress(WorkerError):  # cancelled, failed or never started
                await worker.wait()
        await self.session.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ztui",
        description="The ZStack Lite terminal UI (a read-only overview for now).",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--read-only", action="store_true", help="change nothing (the overview is read-only anyway)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    ns = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        props = load(ns.config)
        configure_logging(props)  # to <data_dir>/management-node.log: the UI owns the terminal
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

"""What every view of ztui shares: the frame, loading in the background, live events,
the flow-chain panel, and (for resource views) a filtered, sortable, markable table."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input
from textual.worker import Worker, WorkerState

from core.kernel.api import ApiReply
from ztui.bindings import why_disabled
from ztui.columns import Column
from ztui.context import ZtuiContext, context_of
from ztui.formatting import Formatter
from ztui.messages import NodeConnected, NodeEvent, OperationUpdated
from ztui.session import NodeSession, is_unknown_api
from ztui.widgets.flow_chain_panel import FlowChainPanel
from ztui.widgets.resource_table import FilterError, ResourceTable
from ztui.widgets.status_line import StatusLine


class ZtuiScreen(Screen[None]):
    """A view: header, body, flow-chain panel, status line and footer.

    Subclasses compose their body in :meth:`compose_body`, fetch in :meth:`load`
    (run in a worker, never on the event loop's critical path) and react to
    canonical events in :meth:`on_node_event`.  ``MUTATING`` lists the actions
    that change something: they are disabled in ``--read-only`` mode.
    """

    VIEW: ClassVar[str] = ""
    """The view's name in the command bar (``:vm``)."""
    MUTATING: ClassVar[frozenset[str]] = frozenset()

    DEFAULT_CSS = """
    ZtuiScreen {
        layout: vertical;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Refresh", id="ztui.refresh"),
        Binding("t", "toggle_trace", "Flow", id="ztui.trace.toggle", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.loads_completed = 0
        """How many loads have been shown (tests wait on it)."""
        self.load_failed = False
        """Whether an API call of the current load failed (its error is on the status line)."""

    @property
    def context(self) -> ZtuiContext:
        """What the views share: the session, the formatter, the followed operations…"""
        return context_of(self.app)

    @property
    def session(self) -> NodeSession:
        return self.context.session

    @property
    def fmt(self) -> Formatter:
        return self.context.formatter

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def trace_panel(self) -> FlowChainPanel:
        return self.query_one(FlowChainPanel)

    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.compose_body()
        yield FlowChainPanel(self.fmt)
        yield StatusLine()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.context.register_view(self)
        if self.context.trace_shown:
            self.trace_panel.records = tuple(self.context.operations.followed_records())
        if self.context.connected:
            self.reload()
        else:
            self.status.show_info("Connecting to the management node…")

    def on_unmount(self) -> None:
        self.context.unregister_view(self)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.MUTATING and self.context.read_only:
            return None  # shown dimmed: the app was started with --read-only
        return True

    def disabled_reason(self, action: str, parameters: tuple[object, ...]) -> str:
        """Why ``action`` is disabled now: said when its key is pressed (override)."""
        if action in self.MUTATING and self.context.read_only:
            return "Read-only: ztui was started with --read-only, so nothing can be changed."
        return "Not available now."

    def on_key(self, event: events.Key) -> None:
        """A key whose action is disabled here says why, instead of doing nothing."""
        reason = why_disabled(self, event.key)
        if reason is not None:
            self.notify(reason, severity="warning")

    # -- loading ------------------------------------------------------------------

    @on(NodeConnected)
    def _node_connected(self, _event: NodeConnected) -> None:
        self.reload()

    def action_reload(self) -> None:
        """Query the node again (binding ``ztui.refresh``)."""
        if not self.context.connected:
            self.notify("Not connected to the management node yet.", severity="warning")
            return
        self.reload()

    def reload(self) -> None:
        self._load_worker()

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load_worker(self) -> None:
        self.load_failed = False
        await self.load()
        self.loads_completed += 1

    async def load(self) -> None:
        """Fetch what the view shows and show it (override)."""

    def show_loaded(self, text: str) -> None:
        """Say what a load found, unless one of its calls failed (that error stays shown)."""
        if not self.load_failed:
            self.status.show_info(text)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A background task that failed unexpectedly is reported, never raised."""
        if event.state is WorkerState.ERROR:
            worker = event.worker
            what = "refreshing" if worker.group == "load" else worker.name.strip("_") or "a task"
            text = f"{what} failed: {worker.error!r}"
            self.status.show_error(text)
            self.notify(text, title="ztui", severity="error")

    async def api_call(self, api: str, params: dict[str, Any] | None = None) -> Any:
        """Call an API; a failure is shown (status line and notification) and gives None.

        On success the reply's inventory, or its inventories for a query.
        """
        reply = await self.session.call(api, params)
        if not reply.success:
            self.show_failure(api, reply)
            return None
        return reply.inventories if reply.inventories is not None else reply.inventory

    async def api_ok(self, api: str, params: dict[str, Any], about: str = "") -> bool:
        """Call an API that answers no inventory (a ``Delete…``), where ``api_call``'s None
        does not tell success from failure: whether it succeeded.  A failure is shown,
        naming ``about`` (the resource) after the API."""
        reply = await self.session.call(api, params)
        if not reply.success:
            self.show_failure(f"{api} {about}".strip(), reply)
        return reply.success

    def show_failure(self, api: str, reply: ApiReply) -> None:
        """Say that ``api`` failed, and why (status line and notification)."""
        text = f"{api}: {reply.error}" if reply.error else f"{api} failed"
        self.load_failed = True
        self.status.show_error(text)
        self.notify(text, title="API error", severity="error")

    async def api_query(
        self, api: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """A Query* API's inventories (every match); [] when it failed (shown)."""
        found = await self.api_call(api, {"limit": 1_000_000, **(params or {})})
        return list(found or [])

    async def plugin_query(
        self, api: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]] | None:
        """A Query* API that a plugin brings: its inventories, or None when the node has
        no such API (said nowhere: the view leaves out what needs it).  Any other failure
        is shown, as :meth:`api_query` shows it, and gives []."""
        reply = await self.session.call(api, {"limit": 1_000_000, **(params or {})})
        if is_unknown_api(reply, api):
            return None
        if not reply.success:
            self.show_failure(api, reply)
            return []
        return list(reply.inventories or [])

    # -- events -------------------------------------------------------------------

    @on(NodeEvent)
    def _node_event(self, event: NodeEvent) -> None:
        if event.path == "/client/overflow":
            self.reload()  # events were dropped: what we show may be stale
            return
        self.on_node_event(event.path, event.data)

    def on_node_event(self, path: str, data: Any) -> None:
        """React to a canonical event (override)."""

    @on(OperationUpdated)
    def _operation_updated(self, event: OperationUpdated) -> None:
        operations = self.context.operations
        if operations.is_followed(event.record) and self.context.trace_shown:
            self.trace_panel.records = tuple(operations.followed_records())
        self.on_operation(event.record)

    def on_operation(self, record: dict[str, Any]) -> None:
        """React to an operation's progress (override)."""

    def action_toggle_trace(self) -> None:
        """Show or hide the flow-chain panel (binding ``ztui.trace.toggle``)."""
        self.context.trace_shown = not self.context.trace_shown
        followed = self.context.operations.followed_records() if self.context.trace_shown else []
        self.trace_panel.records = tuple(followed)


class ResourceScreen(ZtuiScreen):
    """A view whose body is one :class:`ResourceTable`, with ``/`` filter, sort and marks."""

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    MARKABLE: ClassVar[bool] = False

    DEFAULT_CSS = """
    ResourceScreen #filter {
        display: none;
        border: none;
        height: 1;
        padding: 0 1;
    }
    ResourceScreen #filter.-shown {
        display: block;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="ztui.filter"),
        Binding("o", "sort", "Sort", id="ztui.sort", show=False),
        Binding("space", "mark", "Mark", id="ztui.mark", show=False),
        Binding("escape", "clear", "Clear", id="ztui.clear", show=False),
    ]

    @property
    def table(self) -> ResourceTable:
        return self.query_one(ResourceTable)

    def compose_body(self) -> ComposeResult:
        yield ResourceTable(self.COLUMNS, markable=self.MARKABLE, fmt=self.fmt, id="table")
        yield Input(placeholder="/regex  (!regex inverts; Enter keeps, Esc clears)", id="filter")

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()

    # -- filter (acts on ``self.table``: a screen with several tables overrides it) --

    def action_filter(self) -> None:
        """Open the filter line (binding ``ztui.filter``)."""
        box = self.query_one("#filter", Input)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        try:
            self.table.set_filter(event.value)
        except FilterError as exc:
            self.status.show_error(str(exc))
            return
        self.filter_applied()
        self.status.show_info(self.summary())

    def filter_applied(self) -> None:
        """The shown rows changed with the filter (override to follow them)."""

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            self.query_one("#filter", Input).remove_class("-shown")
        self.table.focus()

    def action_clear(self) -> None:
        """Esc: clear the filter and the marks (binding ``ztui.clear``)."""
        box = self.query_one("#filter", Input)
        with box.prevent(Input.Changed):
            box.value = ""
        box.remove_class("-shown")
        self.table.clear_marks()
        self.table.set_filter("")
        self.table.focus()
        self.status.show_info(self.summary())

    # -- order and marks ----------------------------------------------------------

    def action_sort(self) -> None:
        """Sort by the next column; the same column again reverses (binding ``ztui.sort``)."""
        table = self.table
        fields = [c.field for c in table.specs]
        current = table.sort_field
        if current is not None and not table.sort_reverse:
            table.sort_on(current)  # same column, reversed
        else:
            table.sort_on(
                fields[(fields.index(current) + 1) % len(fields)]
                if current in fields
                else fields[0]
            )
        self.status.show_info(f"sorted by {table.sort_field} {'↓' if table.sort_reverse else '↑'}")

    @on(DataTable.HeaderSelected)
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        table = event.data_table
        if isinstance(table, ResourceTable) and event.column_key.value in {
            c.field for c in table.specs
        }:
            table.sort_on(str(event.column_key.value))

    def action_mark(self) -> None:
        """Mark or unmark the row under the cursor (binding ``ztui.mark``)."""
        self.table.toggle_mark()
        self.status.show_info(self.summary())

    def summary(self) -> str:
        """The status line after a load: counts, filter, marks."""
        shown, total = self.table.row_count, len(self.table.rows_by_key)
        noun = self.VIEW or "rows"
        text = f"{total} {noun.removesuffix('s') if total == 1 else noun}"
        if self.table.row_filter.active:
            text += f" · {shown} match /{self.table.row_filter.text}"
        if self.table.marked:
            text += f" · {len(self.table.marked)} marked"
        return text

"""The read-only overview: the node, its zones, hosts and global configs."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from ztui.columns import GLOBAL_CONFIG_COLUMNS, HOST_COLUMNS, ZONE_COLUMNS
from ztui.formatting import Formatter
from ztui.messages import NodeConnected
from ztui.overview_data import Overview, fetch_overview
from ztui.session import NodeSession
from ztui.widgets.node_summary import NodeSummary
from ztui.widgets.resource_table import ResourceTable
from ztui.widgets.status_line import StatusLine

NO_HOSTS_NOTE = (
    "no hosts yet: set bootstrap.local_host in config.toml, or zcli AddKVMHost / AddSimulatorHost"
)
TABS = {"zones": "#zones-table", "hosts": "#hosts-table", "global-configs": "#global-configs-table"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class OverviewScreen(Screen[None]):
    """Shows what the node knows; ``r`` asks again.  Nothing here changes anything."""

    DEFAULT_CSS = """
    OverviewScreen TabbedContent {
        height: 1fr;
    }
    OverviewScreen ContentSwitcher, OverviewScreen TabPane {
        height: 1fr;
        padding: 0;
    }
    OverviewScreen #hosts-note {
        height: 1;
        padding: 0 1;
        color: $text-muted;
    }
    """

    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="ztui.refresh"),
        Binding("1", "show_tab('zones')", "Zones", id="ztui.tab.zones"),
        Binding("2", "show_tab('hosts')", "Hosts", id="ztui.tab.hosts"),
        Binding("3", "show_tab('global-configs')", "Configs", id="ztui.tab.global-configs"),
    ]

    AUTO_FOCUS = "#zones-table"

    def __init__(self, session: NodeSession, fmt: Formatter) -> None:
        super().__init__()
        self._session = session
        self._fmt = fmt
        self._connected = False
        self.loads_completed = 0
        """How many refreshes have been shown (tests wait on it)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield NodeSummary(self._session.data_dir, self._fmt, id="node-summary")
        with TabbedContent(initial="zones"):
            with TabPane("Zones", id="zones"):
                yield ResourceTable(ZONE_COLUMNS, id="zones-table")
            with TabPane("Hosts", id="hosts"):
                yield Static(NO_HOSTS_NOTE, id="hosts-note", markup=False)
                yield ResourceTable(HOST_COLUMNS, id="hosts-table")
            with TabPane("Global configs", id="global-configs"):
                yield ResourceTable(GLOBAL_CONFIG_COLUMNS, id="global-configs-table")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.status.show_info(f"Connecting to the management node on {self._data_dir_text}…")

    @property
    def status(self) -> StatusLine:
        return self.query_one("#status", StatusLine)

    @property
    def _data_dir_text(self) -> str:
        return self._fmt.volatile(self._session.data_dir, "data dir")

    # -- actions ----------------------------------------------------------------

    def action_refresh(self) -> None:
        """Query the node again (binding ``ztui.refresh``)."""
        if not self._connected:
            self.notify("Not connected to the management node yet.", severity="warning")
            return
        self.load_overview()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self.query_one(TABS[tab], ResourceTable).focus()

    # -- loading ----------------------------------------------------------------

    @on(NodeConnected)
    def _node_connected(self, event: NodeConnected) -> None:
        self._session = event.session
        self._connected = True
        self.load_overview()

    @work(exclusive=True, group="overview", exit_on_error=False)
    async def load_overview(self) -> None:
        """Fetch everything in the background, then show it."""
        self.status.show_info("Refreshing…")
        overview = await fetch_overview(self._session)
        self._show(overview)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A refresh that failed unexpectedly is reported, never raised."""
        if event.worker.group == "overview" and event.state is WorkerState.ERROR:
            text = f"Refresh failed: {event.worker.error!r}"
            self.status.show_error(text)
            self.notify(text, title="ztui", severity="error")

    def _show(self, overview: Overview) -> None:
        records = overview.node.inventories
        self.query_one(NodeSummary).show_node(
            self._session.in_process, records[0] if records else None
        )
        self.query_one("#hosts-note").display = overview.hosts.ok and not overview.hosts.inventories
        for result, table_id in (
            (overview.zones, "#zones-table"),
            (overview.hosts, "#hosts-table"),
            (overview.global_configs, "#global-configs-table"),
        ):
            if result.ok:
                self.query_one(table_id, ResourceTable).show(result.inventories, self._fmt)
        self.loads_completed += 1
        if overview.errors:
            self.status.show_error(" | ".join(overview.errors))
            for error in overview.errors:
                self.notify(error, title="API error", severity="error")
        else:
            self.status.show_info(
                f"{_plural(len(overview.zones.inventories), 'zone')} · "
                f"{_plural(len(overview.hosts.inventories), 'host')} · "
                f"{_plural(len(overview.global_configs.inventories), 'global config')}"
            )

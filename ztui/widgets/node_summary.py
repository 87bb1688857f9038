"""The lines above the tables that say which node this is and how we reach it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import Static

from ztui.formatting import Formatter

LABEL_STYLE = "bold"
LABEL_WIDTH = 10
HOW = {
    True: "in-process (this ztui runs the node)",
    False: "attached to the node running there (node.sock)",
    None: "not connected",
}


def _line(label: str, value: str | Text) -> Text:
    return Text.assemble((f"{label:<{LABEL_WIDTH}}", LABEL_STYLE), value)


class NodeSummary(Static):
    """Data dir, in-process or attached, and the node's host, pid and state."""

    DEFAULT_CSS = """
    NodeSummary {
        height: auto;
        padding: 0 1;
        background: $boost;
    }
    """

    def __init__(self, data_dir: Path, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._data_dir = data_dir
        self._fmt = fmt

    def on_mount(self) -> None:
        self._render_lines("connecting…", "")

    def show_node(self, in_process: bool | None, record: Mapping[str, Any] | None) -> None:
        """Show how we reach the node (None: we don't) and its record (if we got it)."""
        how = HOW[in_process]
        if record is None:
            details = "record unavailable"
        else:
            host = self._fmt.volatile(record.get("hostName"), "host")
            pid = self._fmt.volatile(record.get("pid"), "pid")
            details = f"host {host} · pid {pid} · {self._fmt.text(record.get('state'))}"
        self._render_lines(how, details)

    def _render_lines(self, how: str, details: str) -> None:
        data_dir = self._fmt.volatile(self._data_dir, "data dir")
        lines = [_line("Data dir", data_dir), _line("Node", how)]
        if details:
            lines.append(_line("", details))
        self.update(Text("\n").join(lines))

    @property
    def text(self) -> str:
        return str(self.content)

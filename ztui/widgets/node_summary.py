"""The lines on top of the dashboard that say which node this is and how we reach it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ztui.formatting import Formatter

LABEL_STYLE = "bold"
LABEL_WIDTH = 10
HOW = {
    True: "in-process (this ztui runs it)",
    False: "attached (through node.sock)",
    None: "not connected",
}
"""How the app reaches the node, by ``NodeSession.in_process``."""


def _line(label: str, *value: str | Text | tuple[str, str]) -> Text:
    return Text.assemble((f"{label:<{LABEL_WIDTH}}", LABEL_STYLE), *value)


class NodeSummary(Widget):
    """``Data dir`` and ``Node``: in-process or attached, and the node's host, pid, state."""

    DEFAULT_CSS = """
    NodeSummary {
        height: auto;
        padding: 0 1;
        background: $boost;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    in_process: reactive[bool | None] = reactive(None)
    """True: this ztui runs the node; False: attached to another process's; None: neither."""
    record: reactive[Mapping[str, Any] | None] = reactive(None, always_update=True)
    """The node's QueryManagementNode inventory, when we have it."""

    def __init__(self, data_dir: Path, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._data_dir = data_dir
        self._fmt = fmt

    def show_node(self, in_process: bool | None, record: Mapping[str, Any] | None) -> None:
        """Show how we reach the node and its record (None if the query failed)."""
        self.in_process = in_process
        self.record = record

    def lines(self) -> list[Text]:
        fmt = self._fmt
        node = _line("Node", HOW[self.in_process])
        record = self.record
        if record is not None:
            host = fmt.volatile(record.get("hostName"), "host")
            pid = fmt.volatile(record.get("pid"), "pid")
            node.append(f" · host {host} · pid {pid} · ", style="dim")
            node.append_text(fmt.state(record.get("state")))
        elif self.in_process is not None:
            node.append(" · node record unavailable", style="dim")
        return [_line("Data dir", fmt.volatile(self._data_dir, "data dir")), node]

    def render(self) -> Text:
        return Text("\n").join(self.lines())

    @property
    def text(self) -> str:
        return "\n".join(line.plain for line in self.lines())

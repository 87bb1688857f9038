"""The lines on top of the dashboard that say which node this is, how long it has run,
what is wrong with it (a host whose agent cannot start, say), and what to do next
(the keys of the views, of a first VM and of help)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from core.daemon.uptime import format_uptime
from ztui.formatting import Formatter

LABEL_STYLE = "bold"
LABEL_WIDTH = 10
HOW = {
    True: "in this process",
    False: "service (node.sock)",
    None: "not connected",
}
"""How the app reaches the node, by ``NodeSession.in_process``."""


def _line(label: str, *value: str | Text | tuple[str, str]) -> Text:
    return Text.assemble((f"{label:<{LABEL_WIDTH}}", LABEL_STYLE), *value)


def hint_line(label: str, text: str) -> Text:
    """A line of what to do next: ``Views     2 vms · 3 images…``."""
    return _line(label, (text, "italic"))


class NodeSummary(Widget):
    """``Data dir``, ``Node`` (how we reach it, its pid, uptime and version) and one
    ``Problem`` per problem the node reports (wrapped: at 80 columns too it names the
    port, the holder and what to do)."""

    DEFAULT_CSS = """
    NodeSummary {
        height: auto;
        padding: 0 1;
        background: $boost;
    }
    """

    in_process: reactive[bool | None] = reactive(None)
    """True: this process hosts the node; False: attached to the service; None: neither."""
    status: reactive[Mapping[str, Any] | None] = reactive(None, always_update=True)
    """The node's GetManagementNodeStatus answer, when we have it."""
    hints: reactive[tuple[Text, ...]] = reactive((), layout=True)
    """What to do next, after the node's lines (:func:`hint_line` each)."""

    def __init__(self, data_dir: Path, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._data_dir = data_dir
        self._fmt = fmt

    def show_node(self, in_process: bool | None, status: Any) -> None:
        """Show how we reach the node and its status (None if the call failed)."""
        self.in_process = in_process
        self.status = status if isinstance(status, Mapping) else None

    def lines(self) -> list[Text]:
        fmt = self._fmt
        node = _line("Node", HOW[self.in_process])
        status = self.status
        problems: list[Text] = []
        if status is not None:
            pid = fmt.volatile(status.get("pid"), "pid")
            up = fmt.volatile(format_uptime(float(status.get("uptime") or 0)), "uptime")
            node.append(f" · pid {pid} · up {up} · v{status.get('version')}", style="dim")
            problems = [
                _line("Problem", (str(text), "bold yellow"))
                for text in status.get("problems") or ()
            ]
        elif self.in_process is not None:
            node.append(" · node status unavailable", style="dim")
        data_dir = _line("Data dir", fmt.volatile(self._data_dir, "data dir"))
        return [data_dir, node, *problems, *self.hints]

    def render(self) -> Text:
        return Text("\n").join(self.lines())

    @property
    def text(self) -> str:
        return "\n".join(line.plain for line in self.lines())

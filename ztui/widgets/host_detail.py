"""The host under the hosts table's cursor: where its agent is, its capacity with bars,
and its tags (the system tags its agent's facts set: versions, CPU flags)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ztui.formatting import Formatter
from ztui.widgets.capacity_panel import HostCapacity, bar_width, cpu_line, memory_line

Host = Mapping[str, Any]
LABEL_WIDTH = 6
VERSION = "::version::"


def tag_text(tag: str, fmt: Formatter) -> str:
    """A tag as shown: a version (``qemu-img::version::7.2.22``) is the host's own, so
    it is masked with the other volatile values."""
    head, sep, version = tag.partition(VERSION)
    return f"{head}{sep}{fmt.volatile(version, 'version')}" if sep else tag


class HostDetail(Widget):
    """Agent address, hypervisor, CPU and memory bars, and tags of one host."""

    DEFAULT_CSS = """
    HostDetail {
        height: auto;
        max-height: 8;
        padding: 0 1;
        border-top: solid $primary;
        border-title-color: $text;
        border-title-style: bold;
    }
    """

    host: reactive[Host | None] = reactive(None, layout=True, always_update=True)
    """The host's inventory (None: no host under the cursor)."""
    tags: reactive[tuple[str, ...] | None] = reactive(None, layout=True)
    """Its system tags then user tags (None: not fetched yet)."""

    def __init__(self, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fmt = fmt
        self.border_title = "Host"

    def watch_host(self, host: Host | None) -> None:
        self.border_title = "Host" if host is None else f"Host {self._fmt.text(host.get('name'))}"

    def lines(self, width: int) -> list[Text]:
        host, fmt = self.host, self._fmt
        if host is None:
            return [Text("no host selected", style="dim")]
        where = Text.assemble(
            ("Agent".ljust(LABEL_WIDTH), "bold"),
            f"{fmt.text(host.get('managementIp'))}:{fmt.volatile(host.get('agentPort'), 'port')}",
            ("  ", ""),
            fmt.state(host.get("status")),
            " · ",
            fmt.state(host.get("state")),
            (f" · {fmt.text(host.get('hypervisorType'))}", "dim"),
        )
        if host.get("acceleration"):
            where.append(f" ({fmt.text(host.get('acceleration'))})", style="dim")
        capacity = HostCapacity.of(host)
        cells = bar_width(width, capacity, fmt, LABEL_WIDTH)
        tags = Text("Tags".ljust(LABEL_WIDTH), style="bold")
        if self.tags is None:
            tags.append("…", style="dim")
        elif not self.tags:
            tags.append("none", style="dim")
        else:
            tags.append("  ".join(tag_text(t, fmt) for t in self.tags))
        return [
            where,
            cpu_line(capacity, cells, "CPU".ljust(LABEL_WIDTH)),
            memory_line(capacity, cells, fmt, "Mem".ljust(LABEL_WIDTH)),
            tags,
        ]

    def render(self) -> Text:
        return Text("\n").join(self.lines(self.content_size.width or 60))

    @property
    def text(self) -> str:
        """What the pane shows, as plain text (for tests)."""
        return "\n".join(line.plain for line in self.lines(self.content_size.width or 60))

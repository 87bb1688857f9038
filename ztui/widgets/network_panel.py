"""The L3 networks with how many of their addresses are taken, and the virtual router
that serves each (one per guest network) with its status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ztui.formatting import Formatter

Row = Mapping[str, Any]
NO_NETWORKS = "no L3 networks yet"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class NetworkPanel(Widget):
    """``private  Private  2/253 IPs  vr-private Connected``, one line per L3 network."""

    DEFAULT_CSS = """
    NetworkPanel {
        height: auto;
        max-height: 9;
        padding: 0 1;
        border-top: solid $primary;
        border-title-color: $text;
        border-title-style: bold;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    networks: reactive[tuple[Row, ...]] = reactive((), layout=True, always_update=True)
    """L3 networks: ``uuid``, ``name``, ``category``, ``usedIps``, ``totalIps``."""
    routers: reactive[tuple[Row, ...]] = reactive((), layout=True, always_update=True)
    """Virtual router inventories (QueryVirtualRouterVm)."""

    def __init__(self, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fmt = fmt
        self.border_title = "Networks"

    def _title(self) -> None:
        self.border_title = (
            f"Networks · {len(self.networks)} L3 · {_plural(len(self.routers), 'router')}"
        )

    def watch_networks(self) -> None:
        self._title()

    def watch_routers(self) -> None:
        self._title()

    def _router(self, router: Row) -> Text:
        return Text.assemble(
            (self._fmt.text(router.get("name")), "bold"), " ", self._fmt.state(router.get("status"))
        )

    def lines(self) -> list[Text]:
        fmt = self._fmt
        serving: dict[str, list[Row]] = {}
        for router in self.routers:
            serving.setdefault(str(router.get("guestNetworkUuid")), []).append(router)
        name_width = max((len(fmt.text(n.get("name"))) for n in self.networks), default=0)
        lines: list[Text] = []
        for net in self.networks:
            line = Text.assemble(
                (fmt.text(net.get("name")).ljust(name_width), "bold"),
                "  ",
                (fmt.text(net.get("category")).ljust(7), "dim"),
                f"  {net.get('usedIps', 0)}/{net.get('totalIps', 0)} IPs",
            )
            for router in serving.pop(str(net.get("uuid")), []):
                line.append("  ")
                line.append_text(self._router(router))
            lines.append(line)
        for routers in serving.values():  # routers whose network is not listed
            for router in routers:
                lines.append(Text.assemble(("router ", "dim"), self._router(router)))
        return lines or [Text(NO_NETWORKS, style="dim")]

    def render(self) -> Text:
        return Text("\n").join(self.lines())

    @property
    def text(self) -> str:
        """What the panel shows, as plain text (for tests)."""
        return "\n".join(line.plain for line in self.lines())

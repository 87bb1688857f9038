"""One operation in full: what was asked (API, parameters, resource), its flow chains
step by step with timings, failures and rollbacks, and its error's cause chain."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from ztui.formatting import Formatter
from ztui.widgets.flow_chain_panel import (
    Record,
    error_lines,
    plain_text,
    render_chains,
    render_header,
)

UUID = re.compile(r"^[0-9a-f]{32}$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PARAM_WIDTH = 60
"""Longer parameter values are cut (the whole value is in the operation log)."""


def param_value(value: Any, fmt: Formatter) -> str:
    """A parameter as text, uuids and absolute paths masked when the formatter masks."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(param_value(v, fmt) for v in value) + "]"
    if isinstance(value, str):
        if UUID.match(value):
            return fmt.volatile(value, "uuid")
        if value.startswith("/"):
            return fmt.volatile(value, "path")
    text = fmt.text(value)
    return text if len(text) <= PARAM_WIDTH else text[: PARAM_WIDTH - 1] + "…"


def render_detail(record: Record, fmt: Formatter) -> Group:
    """The operation and its error's cause chain first (what one looks for), then its
    identity and parameters, then its flow chains step by step."""
    about = Text("operation ", style="dim")
    about.append(fmt.volatile(record.get("uuid"), "uuid"))
    about.append("  started ", style="dim")
    about.append(fmt.date(record.get("createDate")))
    if record.get("resourceUuid"):
        about.append("  resource ", style="dim")
        about.append(fmt.volatile(record["resourceUuid"], "uuid"))
    lines: list[Text] = [about]
    params = record.get("params")
    if isinstance(params, Mapping) and any(v not in (None, "", [], {}) for v in params.values()):
        line = Text("params ", style="dim")
        given = [(k, v) for k, v in sorted(params.items()) if v not in (None, "", [], {})]
        for i, (name, value) in enumerate(given):
            if i:
                line.append("  ")
            line.append(f"{name}=", style="dim")
            line.append(param_value(value, fmt))
        lines.append(line)
    head = [render_header(record, fmt), *error_lines(record.get("error"))]
    return Group(*head, *lines, *render_chains(record, fmt))


class OperationDetail(VerticalScroll):
    """The selected operation in full; focus it (tab) to scroll with the arrow keys."""

    DEFAULT_CSS = """
    OperationDetail {
        height: 1fr;
        padding: 0 1;
        border-top: solid $accent;
        background: $panel;
    }
    OperationDetail:focus {
        border-top: thick $accent;
    }
    OperationDetail > Static {
        width: 1fr;
    }
    """

    record: reactive[dict[str, Any] | None] = reactive(None, always_update=True)
    """The operation shown, or None (then a hint)."""

    def __init__(self, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fmt = fmt
        self._body = Static()

    def compose(self) -> ComposeResult:
        yield self._body

    def on_mount(self) -> None:
        self.watch_record(self.record)

    def watch_record(self, record: dict[str, Any] | None) -> None:
        if record is None:
            self._body.update(Text("No operation selected.", style="dim"))
        else:
            self._body.update(render_detail(record, self._fmt))

    @property
    def text(self) -> str:
        """What the pane shows, as plain text (for tests)."""
        if self.record is None:
            return ""
        return plain_text(render_detail(self.record, self._fmt))

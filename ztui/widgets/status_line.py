"""One line under the tables: what happened last, or what went wrong."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        padding: 0 1;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    StatusLine.-error {
        color: $text-error;
    }
    """

    def show_info(self, text: str) -> None:
        self.remove_class("-error")
        self.update(Text(text))

    def show_error(self, text: str) -> None:
        self.add_class("-error")
        self.update(Text(text))

    @property
    def text(self) -> str:
        return str(self.content)

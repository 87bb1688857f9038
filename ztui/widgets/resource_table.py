"""A read-only table of inventories, one row per resource."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from textual.widgets import DataTable

from ztui.columns import Column
from ztui.formatting import Formatter


class ResourceTable(DataTable[str]):
    """A DataTable whose columns come from :class:`Column` specs."""

    DEFAULT_CSS = """
    ResourceTable {
        height: 1fr;
    }
    """

    def __init__(self, columns: Sequence[Column], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.specs = tuple(columns)

    def on_mount(self) -> None:
        for spec in self.specs:
            self.add_column(spec.label, key=spec.field)

    def show(self, inventories: Iterable[Mapping[str, Any]], fmt: Formatter) -> None:
        """Replace the rows, keeping the cursor on the same line number."""
        row = self.cursor_row
        self.clear()
        for inventory in inventories:
            self.add_row(*(spec.cell(inventory, fmt) for spec in self.specs))
        if self.row_count:
            self.move_cursor(row=min(row, self.row_count - 1))

    def column_values(self, field: str) -> list[str]:
        """Every row's text in one column (by inventory field), top to bottom."""
        return [str(v) for v in self.get_column(field)]

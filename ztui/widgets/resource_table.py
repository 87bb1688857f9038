"""A table of resources, one row per resource, kept up to date one row at a time.

The table holds every row it was given (``rows``) and shows those that pass
the filter, in the chosen order.  ``upsert`` and ``remove`` touch one row, so
a live state change costs one row's cells, not a rebuild of thousands.  Age
cells ("42s", "5m") are recomputed every few seconds, without a reload.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowDoesNotExist

from ztui.columns import Column, Kind
from ztui.formatting import Formatter

Row = Mapping[str, Any]
MARK_COLUMN = "__mark__"
MARK = Text("●", style="bold $accent")


class FilterError(ValueError):
    """The filter text is not a valid regular expression."""


class RowFilter:
    """A regex over a row's shown text; a leading ``!`` keeps the rows that do NOT match."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.invert = text.startswith("!")
        pattern = text[1:] if self.invert else text
        try:
            self._regex = re.compile(pattern, re.IGNORECASE) if pattern else None
        except re.error as exc:
            raise FilterError(f"bad filter /{text}: {exc}") from None

    @property
    def active(self) -> bool:
        return self._regex is not None

    def keeps(self, cells: Sequence[str | Text]) -> bool:
        if self._regex is None:
            return True
        found = any(self._regex.search(str(cell)) for cell in cells)
        return found != self.invert


class ResourceTable(DataTable[Any]):
    """A DataTable whose columns come from :class:`Column` specs and whose rows are keyed."""

    DEFAULT_CSS = """
    ResourceTable {
        height: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", id="ztui.table.down", show=False),
        Binding("k", "cursor_up", "Up", id="ztui.table.up", show=False),
        Binding("g", "scroll_top", "Top", id="ztui.table.top", show=False),
        Binding("G", "scroll_bottom", "Bottom", id="ztui.table.bottom", show=False),
    ]

    AGE_TICK: ClassVar[float] = 5.0
    """Seconds between two recomputations of the age cells."""

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        key_field: str = "uuid",
        markable: bool = False,
        fmt: Formatter | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.specs = tuple(columns)
        self.key_field = key_field
        self.markable = markable
        self.fmt = fmt or Formatter()
        self.rows_by_key: dict[str, Row] = {}
        """Every row, shown or filtered out, by key."""
        self.marked: set[str] = set()
        self.row_filter = RowFilter()
        self.sort_field: str | None = None
        self.sort_reverse = False

    def on_mount(self) -> None:
        if self.markable:
            self.add_column(" ", key=MARK_COLUMN, width=1)
        for spec in self.specs:
            self.add_column(spec.label, key=spec.field)
        if any(spec.kind is Kind.AGE for spec in self.specs):
            self.set_interval(self.AGE_TICK, self.refresh_ages)

    # -- content ------------------------------------------------------------------

    def show(self, rows: Iterable[Row], fmt: Formatter | None = None) -> None:
        """Replace every row (a full rebuild), keeping the cursor on the same resource."""
        if fmt is not None:
            self.fmt = fmt
        self.rows_by_key = {str(row[self.key_field]): row for row in rows}
        self.marked &= set(self.rows_by_key)
        self._rebuild()

    def upsert(self, row: Row) -> None:
        """Add or update one row; only the cells that changed are redrawn."""
        key = str(row[self.key_field])
        self.rows_by_key[key] = row
        cells = self._cells(row)
        shown = key in self.rows
        if not self.row_filter.keeps(cells):
            if shown:
                self.remove_row(key)
            return
        if not shown:
            self.add_row(*self._with_mark(key, cells), key=key)
        else:
            old = self.get_row(key)[1 if self.markable else 0 :]
            changed = set()
            for spec, before, after in zip(self.specs, old, cells, strict=True):
                if before != after:
                    # Widen a column the new text does not fit; never narrow one here
                    # (that re-measures the whole column: rebuilds do it).
                    wider = cell_len(str(after)) > self.columns[ColumnKey(spec.field)].content_width
                    self.update_cell(key, spec.field, after, update_width=wider)
                    changed.add(spec.field)
            if self.sort_field is not None and self.sort_field in changed:
                self._sort()
            return
        if self.sort_field is not None:
            self._sort()

    def refresh_ages(self) -> None:
        """Recompute the age cells of the shown rows (the time moved on, not the rows)."""
        ages = [spec for spec in self.specs if spec.kind is Kind.AGE]
        for row_key in list(self.rows):
            row = self.rows_by_key.get(str(row_key.value))
            if row is None:
                continue
            for spec in ages:
                cell = spec.cell(row, self.fmt)
                if self.get_cell(row_key, spec.field) != cell:
                    wider = cell_len(str(cell)) > self.columns[ColumnKey(spec.field)].content_width
                    self.update_cell(row_key, spec.field, cell, update_width=wider)

    def remove(self, key: str) -> None:
        self.rows_by_key.pop(key, None)
        self.marked.discard(key)
        if key in self.rows:
            self.remove_row(key)

    def set_filter(self, text: str) -> None:
        """Show only the rows whose text matches ``text``; raises FilterError if it is bad."""
        new = RowFilter(text)
        self.row_filter = new
        self._rebuild()

    def sort_on(self, field: str) -> None:
        """Sort by ``field``; sorting by the same field again reverses the order."""
        if self.sort_field == field:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_field, self.sort_reverse = field, False
        self._sort()

    # -- selection ----------------------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        """The key of the row under the cursor (None when the table is empty)."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:
            return None

    @property
    def cursor_row_data(self) -> Row | None:
        key = self.cursor_key
        return None if key is None else self.rows_by_key.get(key)

    def selection(self) -> list[Row]:
        """The marked rows that are shown (top to bottom), or else the row under the cursor."""
        shown = (str(row.key.value) for row in self.ordered_rows)
        marked = [self.rows_by_key[k] for k in shown if k in self.marked]
        if marked:
            return marked
        row = self.cursor_row_data
        return [] if row is None else [row]

    def toggle_mark(self) -> None:
        """Mark or unmark the row under the cursor, then move down a row."""
        key = self.cursor_key
        if key is None or not self.markable:
            return
        if key in self.marked:
            self.marked.discard(key)
        else:
            self.marked.add(key)
        self.update_cell(key, MARK_COLUMN, MARK if key in self.marked else "")
        self.action_cursor_down()

    def clear_marks(self) -> None:
        for key in list(self.marked):
            self.marked.discard(key)
            if key in self.rows:
                self.update_cell(key, MARK_COLUMN, "")

    def column_values(self, field: str) -> list[str]:
        """Every shown row's text in one column (by field), top to bottom."""
        return [str(v) for v in self.get_column(field)]

    def select_key(self, key: str) -> bool:
        """Put the cursor on the row of ``key``; False if it is not shown."""
        try:
            self.move_cursor(row=self.get_row_index(key))
        except RowDoesNotExist:
            return False
        return True

    # -- internals ----------------------------------------------------------------

    def _cells(self, row: Row) -> list[str | Text]:
        return [spec.cell(row, self.fmt) for spec in self.specs]

    def _with_mark(self, key: str, cells: list[str | Text]) -> list[str | Text]:
        if not self.markable:
            return cells
        return [MARK if key in self.marked else "", *cells]

    def _rebuild(self) -> None:
        current = self.cursor_key
        row_index = self.cursor_row
        self.clear()
        for key, row in self._ordered(self.rows_by_key.items()):
            cells = self._cells(row)
            if self.row_filter.keeps(cells):
                self.add_row(*self._with_mark(key, cells), key=key)
        if not self.row_count:
            return
        if current is None or not self.select_key(current):
            self.move_cursor(row=min(row_index, self.row_count - 1))

    def _ordered(self, items: Iterable[tuple[str, Row]]) -> Iterable[tuple[str, Row]]:
        spec = self._sort_spec()
        if spec is None:
            return items
        fmt = self.fmt
        return sorted(
            items, key=lambda kv: spec.sort_key(spec.cell(kv[1], fmt)), reverse=self.sort_reverse
        )

    def _sort_spec(self) -> Column | None:
        return next((s for s in self.specs if s.field == self.sort_field), None)

    def _sort(self) -> None:
        spec = self._sort_spec()
        if spec is None:
            return
        current = self.cursor_key
        self.sort(spec.field, key=spec.sort_key, reverse=self.sort_reverse)
        if current is not None:
            self.select_key(current)

"""A ResourceTable whose ``/`` filter also searches text the table does not show.

The operations log shows one line per operation, but one looks an operation up
by its error code, a cause's description or a parameter: the rows carry that
text in ``search_field`` and the filter matches it as if it were one more cell.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from ztui.columns import Column
from ztui.formatting import Formatter
from ztui.widgets.resource_table import ResourceTable, Row, RowFilter


class RowCells(list[str | Text]):
    """A row's shown cells, with the row's hidden search text beside them."""

    def __init__(self, cells: Sequence[str | Text], search_text: str) -> None:
        super().__init__(cells)
        self.search_text = search_text


class SearchFilter(RowFilter):
    """The ``/`` regex (``!`` inverts) over the shown cells and the hidden search text."""

    def keeps(self, cells: Sequence[str | Text]) -> bool:
        hidden = getattr(cells, "search_text", "")
        return super().keeps([*cells, hidden] if hidden else cells)


class SearchableTable(ResourceTable):
    """A :class:`ResourceTable` whose filter also looks at ``row[search_field]``."""

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        search_field: str,
        key_field: str = "uuid",
        markable: bool = False,
        fmt: Formatter | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(columns, key_field=key_field, markable=markable, fmt=fmt, id=id)
        self.search_field = search_field
        self.row_filter = SearchFilter()

    def set_filter(self, text: str) -> None:
        """Show only the rows whose cells or search text match; raises FilterError."""
        self.row_filter = SearchFilter(text)
        self._rebuild()

    def _cells(self, row: Row) -> list[str | Text]:
        return RowCells(super()._cells(row), str(row.get(self.search_field) or ""))

"""ResourceTable on its own: one-row updates, filter, order, marks."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets.data_table import ColumnKey

from ztui.columns import Column, Kind
from ztui.widgets.resource_table import ResourceTable, RowFilter

COLUMNS = (Column("name", "name"), Column("ips", "IPs"), Column("mem", "mem", Kind.SIZE))


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ResourceTable(COLUMNS, markable=True)


def rows() -> list[dict]:
    return [
        {"uuid": "a", "name": "web", "ips": "", "mem": 2 << 30},
        {"uuid": "b", "name": "db", "ips": "", "mem": 512 << 20},
    ]


async def test_an_update_redraws_one_row_and_widens_its_column() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(ResourceTable)
        table.show(rows())
        await pilot.pause()
        table.upsert({"uuid": "a", "name": "web", "ips": "10.0.10.200", "mem": 2 << 30})
        await pilot.pause()
        assert table.column_values("ips") == ["10.0.10.200", ""]
        assert table.columns[ColumnKey("ips")].content_width >= len("10.0.10.200")
        table.upsert({"uuid": "c", "name": "new", "ips": "", "mem": 1})
        table.remove("b")
        assert table.column_values("name") == ["web", "new"]


async def test_filter_order_and_marks() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(ResourceTable)
        table.show(rows())
        table.sort_on("mem")  # sizes sort by amount, not by text
        assert table.column_values("name") == ["db", "web"]
        table.sort_on("mem")
        assert table.column_values("name") == ["web", "db"]
        table.set_filter("!^w")
        assert table.column_values("name") == ["db"]
        table.upsert({"uuid": "a", "name": "www", "ips": "", "mem": 1})  # still filtered out
        assert table.column_values("name") == ["db"]
        table.set_filter("")
        table.toggle_mark()
        await pilot.pause()
        assert [r["uuid"] for r in table.selection()] == [
            table.rows_by_key[k]["uuid"] for k in table.marked
        ]
        assert RowFilter("").keeps(["x"]) and not RowFilter("!x").keeps(["x"])

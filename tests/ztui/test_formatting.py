"""Table text of inventory values, with and without masking."""

from __future__ import annotations

from ztui.columns import Column, Kind
from ztui.formatting import Formatter

ZONE_COLUMNS = (
    Column("name", "name"),
    Column("state", "state", Kind.STATE),
    Column("uuid", "uuid", Kind.UUID),
    Column("createDate", "createDate", Kind.DATE),
)
ZONE = {
    "name": "z1",
    "state": "Enabled",
    "uuid": "0550a0c45a854b429043b38c69fb007c",
    "createDate": "2026-11-24T00:02:04.180764",
}


def test_cells_of_a_zone() -> None:
    cells = [c.cell(ZONE, Formatter()) for c in ZONE_COLUMNS]
    assert [str(c) for c in cells] == ["z1", "Enabled", ZONE["uuid"], "2026-11-24 00:02:04"]


def test_masked_cells_hide_what_changes_between_runs() -> None:
    cells = [c.cell(ZONE, Formatter(mask_volatile=True)) for c in ZONE_COLUMNS]
    assert [str(c) for c in cells] == ["z1", "Enabled", "<uuid>", "<date>"]


def test_plain_values() -> None:
    fmt = Formatter()
    assert fmt.text(None) == ""
    assert fmt.text(True) == "true"
    assert fmt.text(3) == "3"
    assert fmt.date("not a date") == "not a date"
    assert fmt.date(None) == ""


def test_age_and_duration() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
    fmt = Formatter()
    assert fmt.age("2026-11-24T11:59:18", now) == "42s"
    assert fmt.age("2026-11-24T10:00:00", now) == "2h"
    assert fmt.age("2026-11-20T12:00:00", now) == "4d"
    assert fmt.duration(0.012) == "12ms"
    assert fmt.duration(1.44) == "1.4s"
    assert fmt.duration(125) == "2m05s"
    assert Formatter(mask_volatile=True).age("2026-11-24T11:59:18", now) == "<age>"
    assert str(fmt.state("Running")) == "Running" and fmt.state("Running").style == "bold green"

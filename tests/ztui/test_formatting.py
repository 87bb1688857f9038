"""Table text of inventory values, with and without masking."""

from __future__ import annotations

from ztui.columns import ZONE_COLUMNS
from ztui.formatting import Formatter

ZONE = {
    "name": "z1",
    "state": "Enabled",
    "uuid": "0550a0c45a854b429043b38c69fb007c",
    "createDate": "2026-11-24T00:02:04.180764",
}


def test_cells_of_a_zone() -> None:
    cells = [c.cell(ZONE, Formatter()) for c in ZONE_COLUMNS]
    assert cells == ["z1", "Enabled", ZONE["uuid"], "2026-11-24 00:02:04"]


def test_masked_cells_hide_what_changes_between_runs() -> None:
    cells = [c.cell(ZONE, Formatter(mask_volatile=True)) for c in ZONE_COLUMNS]
    assert cells == ["z1", "Enabled", "<uuid>", "<date>"]


def test_plain_values() -> None:
    fmt = Formatter()
    assert fmt.text(None) == ""
    assert fmt.text(True) == "true"
    assert fmt.text(3) == "3"
    assert fmt.date("not a date") == "not a date"
    assert fmt.date(None) == ""

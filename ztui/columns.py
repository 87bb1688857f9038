"""The columns of each resource table: which field of a row, shown how.

A row is an inventory as the API answers it (camelCase), possibly with fields
a screen adds (a VM's ``ips``, its host's name…).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from rich.text import Text

from ztui.formatting import Formatter


class Kind(Enum):
    TEXT = "text"
    DATE = "date"
    AGE = "age"
    UUID = "uuid"
    SIZE = "size"
    STATE = "state"


@dataclass(frozen=True)
class Column:
    field: str
    """The row field (camelCase, as the API answers)."""
    label: str
    kind: Kind = Kind.TEXT

    def cell(self, row: Mapping[str, Any], fmt: Formatter) -> str | Text:
        value = row.get(self.field)
        match self.kind:
            case Kind.DATE:
                return fmt.date(value)
            case Kind.AGE:
                return fmt.age(value)
            case Kind.UUID:
                return fmt.volatile(value, "uuid")
            case Kind.SIZE:
                return fmt.size(value)
            case Kind.STATE:
                return fmt.state(value)
        return fmt.text(value)

    def sort_key(self, cell: str | Text) -> tuple[int, float, str]:
        """What a shown cell sorts by: numbers, sizes and ages by amount, the rest as text."""
        text = str(cell)
        if self.kind in (Kind.SIZE, Kind.AGE) or text.isdigit():
            match = _AMOUNT.fullmatch(text)
            if match is not None:
                return (0, float(match[1]) * _UNITS.get(match[2], 1), "")
        return (1, 0.0, text.lower())


_AMOUNT = re.compile(r"(\d+(?:\.\d+)?)([BKMGTsmhd]?)")
_UNITS = {
    "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
    "s": 1, "m": 60, "h": 3600, "d": 86400,
}  # fmt: skip


HOST_COLUMNS = (
    Column("name", "name"),
    Column("status", "status", Kind.STATE),
    Column("state", "state", Kind.STATE),
    Column("hypervisorType", "type"),
    Column("acceleration", "accel"),
    Column("cpu", "vCPU used"),
    Column("memory", "mem used"),
    Column("reservedMemory", "reserved", Kind.SIZE),
    Column("managementIp", "mgmt IP"),
    Column("uuid", "uuid", Kind.UUID),
)
"""A host row is its inventory plus ``cpu``, ``memory`` (used/total, as VMs may have it)
and ``reservedMemory`` (ztui.screens.hosts.host_row)."""

GLOBAL_CONFIG_COLUMNS = (
    Column("category", "category"),
    Column("name", "name"),
    Column("value", "value"),
    Column("defaultValue", "default"),
    Column("description", "description"),
)

VM_COLUMNS = (
    Column("name", "name"),
    Column("state", "state", Kind.STATE),
    Column("ips", "IPs"),
    Column("hostName", "host"),
    Column("cpuNum", "cpu"),
    Column("memorySize", "mem", Kind.SIZE),
    Column("imageName", "image"),
    Column("createDate", "age", Kind.AGE),
)

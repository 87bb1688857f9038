"""The columns of each resource table: which inventory field, shown how."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ztui.formatting import Formatter


class Kind(Enum):
    TEXT = "text"
    DATE = "date"
    UUID = "uuid"
    SIZE = "size"


@dataclass(frozen=True)
class Column:
    field: str
    """The inventory field (camelCase, as the API answers)."""
    label: str
    kind: Kind = Kind.TEXT

    def cell(self, inventory: Mapping[str, Any], fmt: Formatter) -> str:
        value = inventory.get(self.field)
        if self.kind is Kind.DATE:
            return fmt.date(value)
        if self.kind is Kind.UUID:
            return fmt.volatile(value, "uuid")
        if self.kind is Kind.SIZE:
            return fmt.size(value)
        return fmt.text(value)


ZONE_COLUMNS = (
    Column("name", "name"),
    Column("state", "state"),
    Column("uuid", "uuid", Kind.UUID),
    Column("createDate", "createDate", Kind.DATE),
)

HOST_COLUMNS = (
    Column("name", "name"),
    Column("status", "status"),
    Column("hypervisorType", "type"),
    Column("acceleration", "accel"),
    Column("availableCpuCapacity", "free cpu"),
    Column("availableMemoryCapacity", "free mem", Kind.SIZE),
    Column("totalMemoryCapacity", "mem (less reserved)", Kind.SIZE),
    Column("managementIp", "managementIp"),
    Column("uuid", "uuid", Kind.UUID),
)

GLOBAL_CONFIG_COLUMNS = (
    Column("category", "category"),
    Column("name", "name"),
    Column("value", "value"),
    Column("defaultValue", "default"),
    Column("description", "description"),
)

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
        return fmt.text(value)


ZONE_COLUMNS = (
    Column("name", "name"),
    Column("state", "state"),
    Column("uuid", "uuid", Kind.UUID),
    Column("createDate", "createDate", Kind.DATE),
)

HOST_COLUMNS = (
    Column("name", "name"),
    Column("managementIp", "managementIp"),
    Column("state", "state"),
    Column("status", "status"),
    Column("uuid", "uuid", Kind.UUID),
)

GLOBAL_CONFIG_COLUMNS = (
    Column("category", "category"),
    Column("name", "name"),
    Column("value", "value"),
    Column("defaultValue", "default"),
    Column("description", "description"),
)

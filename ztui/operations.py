"""What ztui knows of operations: the records ``/operation/update`` carries, and which
one the flow-chain panel follows."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

Record = dict[str, Any]
KEEP = 500
"""Operations kept in memory (the node's operation log keeps more: QueryOperationLog)."""


class OperationTracker:
    """Keeps the newest operations by uuid and follows one.

    A new operation that an API call started (not background work such as a
    ping-tracker reconnect) becomes the followed one, so the panel always shows
    the latest thing the user (or a script) asked for.
    """

    def __init__(self, keep: int = KEEP) -> None:
        self.records: OrderedDict[str, Record] = OrderedDict()
        self.followed_uuid: str | None = None
        self._keep = keep

    @property
    def followed(self) -> Record | None:
        return None if self.followed_uuid is None else self.records.get(self.followed_uuid)

    def update(self, record: Record) -> bool:
        """Take a record; True if it is now the followed operation."""
        uuid = str(record.get("uuid"))
        is_new = uuid not in self.records
        self.records[uuid] = record
        self.records.move_to_end(uuid)
        while len(self.records) > self._keep:
            self.records.popitem(last=False)
        if is_new and record.get("apiName") and record.get("status") == "Running":
            self.followed_uuid = uuid
        return uuid == self.followed_uuid

    def follow(self, uuid: str) -> None:
        self.followed_uuid = uuid

    def newest_first(self) -> list[Record]:
        return list(reversed(self.records.values()))

"""What ztui knows of operations: the records ``/operation/update`` carries, and which
one the flow-chain panel follows."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

Record = dict[str, Any]
KEEP = 500
"""Operations kept in memory (the node's operation log keeps more: QueryOperationLog)."""


def resources_of(record: Record) -> set[str]:
    """The uuids of the resources an operation acts on."""
    found = {str(r) for r in record.get("resourceUuids") or ()}
    if record.get("resourceUuid"):
        found.add(str(record["resourceUuid"]))
    return found


class OperationTracker:
    """Keeps the newest operations by uuid and follows some.

    A new operation that an API call started (not background work such as a
    ping-tracker reconnect) becomes the followed one, so the panel always shows
    the latest thing the user (or a script) asked for.  When the UI is about to run
    one verb on several resources it says so (:meth:`expect`): the operations on
    those resources are then followed together, every chain shown.
    """

    def __init__(self, keep: int = KEEP) -> None:
        self.records: OrderedDict[str, Record] = OrderedDict()
        self.followed_uuids: list[str] = []
        """The operations followed, oldest first (several for a verb on marked rows)."""
        self._expected: set[str] = set()
        self._grouped = False
        """Whether the followed operations are a group :meth:`expect` announced."""
        self._keep = keep

    @property
    def followed_uuid(self) -> str | None:
        """The newest operation followed."""
        return self.followed_uuids[-1] if self.followed_uuids else None

    @property
    def followed(self) -> Record | None:
        uuid = self.followed_uuid
        return None if uuid is None else self.records.get(uuid)

    def followed_records(self) -> list[Record]:
        """Every operation followed, oldest first."""
        return [self.records[u] for u in self.followed_uuids if u in self.records]

    def is_followed(self, record: Record) -> bool:
        return str(record.get("uuid")) in self.followed_uuids

    def expect(self, resource_uuids: list[str]) -> None:
        """The next new API operations on these resources are followed together."""
        self._expected = set(resource_uuids)
        self._grouped = False

    def update(self, record: Record) -> bool:
        """Take a record; True if it is now the followed operation."""
        uuid = str(record.get("uuid"))
        is_new = uuid not in self.records
        self.records[uuid] = record
        self.records.move_to_end(uuid)
        while len(self.records) > self._keep:
            self.records.popitem(last=False)
        if is_new and record.get("apiName") and record.get("status") == "Running":
            expected = resources_of(record) & self._expected
            if expected and self._grouped:
                self.followed_uuids.append(uuid)
            else:
                self.followed_uuids = [uuid]
                self._grouped = bool(expected)
                if not expected:
                    self._expected = set()
            self._expected -= expected
        return uuid in self.followed_uuids

    def follow(self, uuid: str) -> None:
        self.followed_uuids = [uuid]
        self._expected = set()

    def newest_first(self) -> list[Record]:
        return list(reversed(self.records.values()))

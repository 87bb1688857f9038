"""Writing finished operations to ``operation_log`` and keeping only the newest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from core.kernel.db import InTransaction
from core.operation_log.journal import ROLLBACK_FAILED, ROLLED_BACK, Record
from core.operation_log.models import UUID_LENGTH, OperationLogVO

_TABLE = OperationLogVO.__table__


def insert_and_prune(connection: InTransaction, records: list[Record], keep: int) -> None:
    """Insert ``records``, then delete all but the ``keep`` newest rows."""
    if records:
        connection.execute(insert(_TABLE), [_row(record) for record in records])
    stale = select(_TABLE.c.uuid).order_by(_TABLE.c.create_date.desc()).offset(keep)
    connection.execute(delete(_TABLE).where(_TABLE.c.uuid.in_(stale)))


def mark_rolled_back(connection: InTransaction, uuid: str) -> Record | None:
    """Operation ``uuid``, kept as RollbackFailed, is RolledBack: its record as it is now,
    or None if it is not kept as RollbackFailed (pruned, or never kept)."""
    changed = connection.execute(
        update(_TABLE)
        .where(_TABLE.c.uuid == uuid, _TABLE.c.status == ROLLBACK_FAILED)
        .values(status=ROLLED_BACK)
    )
    if changed.rowcount == 0:
        return None
    row = connection.execute(
        select(*OperationLogVO.inventory_columns()).where(_TABLE.c.uuid == uuid)
    ).one()
    return OperationLogVO.inventory_of(row)


def _row(record: Record) -> dict[str, Any]:
    resource_uuid = record["resourceUuid"]
    if resource_uuid is not None and len(resource_uuid) > UUID_LENGTH:
        resource_uuid = None  # no resource has such a uuid: a refused call's bad parameter
    return {
        "uuid": record["uuid"],
        "name": record["name"][:255],
        "api_name": record["apiName"],
        "parent_uuid": record["parentUuid"],
        "params": record["params"],
        "resource_uuid": resource_uuid,
        "resource_name": (record.get("resourceName") or "")[:255] or None,
        "resource_uuids": record["resourceUuids"],
        "status": record["status"],
        "create_date": datetime.fromisoformat(record["createDate"]),
        "duration": record["duration"],
        "error": record["error"],
        "chains": record["chains"],
    }

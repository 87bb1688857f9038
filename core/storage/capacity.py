"""Primary storage capacity, reserved with one conditional UPDATE (like host capacity)."""

from __future__ import annotations

from sqlalchemy import bindparam, case, update

from core.kernel.db import InTransaction
from core.storage.models import PrimaryStorageVO

# Tables, for Core statements on hot paths (see Base.inventory_columns).
_primary_storages = PrimaryStorageVO.__table__

_RESERVE = (
    update(_primary_storages)
    .where(
        _primary_storages.c.uuid == bindparam("storage"),
        _primary_storages.c.available_capacity >= bindparam("size"),
    )
    .values(available_capacity=_primary_storages.c.available_capacity - bindparam("size"))
)


def reserve_primary_capacity(session: InTransaction, storage_uuid: str, size: int) -> bool:
    result = session.execute(_RESERVE, {"storage": storage_uuid, "size": size})
    return result.rowcount == 1  # type: ignore[attr-defined]


def return_primary_capacity(session: InTransaction, storage_uuid: str, size: int) -> None:
    back = PrimaryStorageVO.available_capacity + size
    session.execute(
        update(PrimaryStorageVO)
        .where(PrimaryStorageVO.uuid == storage_uuid)
        .values(
            available_capacity=case(
                (back > PrimaryStorageVO.total_capacity, PrimaryStorageVO.total_capacity),
                else_=back,
            )
        )
    )

"""Primary storage capacity, reserved with one conditional UPDATE (like host capacity)."""

from __future__ import annotations

from sqlalchemy import case, update
from sqlalchemy.orm import Session

from core.storage.models import PrimaryStorageVO


def reserve_primary_capacity(session: Session, storage_uuid: str, size: int) -> bool:
    result = session.execute(
        update(PrimaryStorageVO)
        .where(PrimaryStorageVO.uuid == storage_uuid, PrimaryStorageVO.available_capacity >= size)
        .values(available_capacity=PrimaryStorageVO.available_capacity - size)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def return_primary_capacity(session: Session, storage_uuid: str, size: int) -> None:
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

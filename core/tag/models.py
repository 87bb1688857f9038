from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, new_uuid, utcnow


class _TagColumns:
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    resource_uuid: Mapped[str] = mapped_column(String(32), index=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    tag: Mapped[str] = mapped_column(String(256), index=True)
    type: Mapped[str] = mapped_column(String(16))
    create_date: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_op_date: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SystemTagVO(_TagColumns, Base):
    __tablename__ = "system_tag"
    __table_args__ = (UniqueConstraint("resource_uuid", "tag"),)

    inherent: Mapped[bool] = mapped_column(Boolean, default=False)
    """Written by the system; the API refuses to delete it."""


class UserTagVO(_TagColumns, Base):
    __tablename__ = "user_tag"
    __table_args__ = (UniqueConstraint("resource_uuid", "tag"),)

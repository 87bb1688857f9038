"""The table of finished operations; a row's inventory is the journal's record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base

UUID_LENGTH = 64
"""Room for resource uuids (32 characters) and whatever a refused call named as one."""


class OperationLogVO(Base):
    """One finished operation (not a resource: it has no name/description of its own)."""

    __tablename__ = "operation_log"

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    api_name: Mapped[str | None] = mapped_column(String(255), default=None)
    parent_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    resource_uuid: Mapped[str | None] = mapped_column(String(UUID_LENGTH), index=True, default=None)
    resource_name: Mapped[str | None] = mapped_column(String(255), default=None)
    """The resource's name when the operation knew it (a create names what it makes)."""
    resource_uuids: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(32))
    create_date: Mapped[datetime] = mapped_column(DateTime, index=True)
    duration: Mapped[float | None] = mapped_column(Float, default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    chains: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)

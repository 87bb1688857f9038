from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class ManagementNodeVO(ResourceMixin, Base):
    """The node that owns this data dir: one row, updated at every start and stop."""

    __tablename__ = "management_node"
    resource_type = "ManagementNodeVO"

    host_name: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    state: Mapped[str] = mapped_column(String(32), default="Running")
    started: Mapped[datetime | None] = mapped_column(DateTime, default=None)

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class ZoneVO(ResourceMixin, Base):
    __tablename__ = "zone"
    resource_type = "ZoneVO"

    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    type: Mapped[str] = mapped_column(String(32), default="zstack")

from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class ClusterVO(ResourceMixin, Base):
    """A group of hosts of one hypervisor type inside a zone."""

    __tablename__ = "cluster"
    resource_type = "ClusterVO"

    zone_uuid: Mapped[str] = mapped_column(ForeignKey("zone.uuid"), index=True)
    hypervisor_type: Mapped[str] = mapped_column(String(32))
    """KVM or Simulator."""
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    type: Mapped[str] = mapped_column(String(32), default="zstack")

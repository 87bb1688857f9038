from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class VolumeVO(ResourceMixin, Base):
    __tablename__ = "volume"
    resource_type = "VolumeVO"

    vm_instance_uuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    primary_storage_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    root_image_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    install_path: Mapped[str | None] = mapped_column(String(1024), default=None)
    type: Mapped[str] = mapped_column(String(16), default="Root")
    format: Mapped[str] = mapped_column(String(16), default="qcow2")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    actual_size: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(32), default="NotInstantiated")
    """NotInstantiated, Creating, Ready, Deleted."""
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    device_id: Mapped[int] = mapped_column(Integer, default=0)

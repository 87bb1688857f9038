from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class InstanceOfferingVO(ResourceMixin, Base):
    """A VM size: how many CPUs and how much memory."""

    __tablename__ = "instance_offering"
    resource_type = "InstanceOfferingVO"

    cpu_num: Mapped[int] = mapped_column(Integer)
    memory_size: Mapped[int] = mapped_column(BigInteger)
    """Bytes."""
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    type: Mapped[str] = mapped_column(String(32), default="UserVm")
    allocator_strategy: Mapped[str] = mapped_column(
        String(64), default="DefaultHostAllocatorStrategy"
    )


class DiskOfferingVO(ResourceMixin, Base):
    """A data volume size."""

    __tablename__ = "disk_offering"
    resource_type = "DiskOfferingVO"

    disk_size: Mapped[int] = mapped_column(BigInteger)
    """Bytes."""
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    type: Mapped[str] = mapped_column(String(32), default="DefaultDiskOfferingType")

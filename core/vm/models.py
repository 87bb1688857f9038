from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class VmInstanceVO(ResourceMixin, Base):
    __tablename__ = "vm_instance"
    resource_type = "VmInstanceVO"

    zone_uuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    cluster_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    host_uuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    last_host_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    image_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    instance_offering_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    root_volume_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    state: Mapped[str] = mapped_column(String(32), default="Created", index=True)
    type: Mapped[str] = mapped_column(String(32), default="UserVm")
    hypervisor_type: Mapped[str | None] = mapped_column(String(32), default=None)
    cpu_num: Mapped[int] = mapped_column(Integer)
    memory_size: Mapped[int] = mapped_column(BigInteger)
    platform: Mapped[str] = mapped_column(String(32), default="Linux")
    default_l3_network_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    allocator_strategy: Mapped[str | None] = mapped_column(String(64), default=None)

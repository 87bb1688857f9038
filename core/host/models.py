from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class HostVO(ResourceMixin, Base):
    """A hypervisor host, driven through its agent; capacity columns are ZStack's
    HostCapacityVO folded in, so a reservation is one conditional UPDATE."""

    __tablename__ = "host"
    resource_type = "HostVO"
    inventory_exclude = frozenset({"agent_token"})

    zone_uuid: Mapped[str] = mapped_column(ForeignKey("zone.uuid"), index=True)
    cluster_uuid: Mapped[str] = mapped_column(ForeignKey("cluster.uuid"), index=True)
    management_ip: Mapped[str] = mapped_column(String(255))
    agent_port: Mapped[int] = mapped_column(Integer)
    agent_token: Mapped[str] = mapped_column(String(255), default="")
    hypervisor_type: Mapped[str] = mapped_column(String(32))
    """KVM or Simulator."""
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    """Enabled, Disabled or Maintenance: what the user wants."""
    status: Mapped[str] = mapped_column(String(32), default="Connecting")
    """Connecting, Connected or Disconnected: what the agent answers."""
    acceleration: Mapped[str | None] = mapped_column(String(16), default=None)
    """kvm or tcg, from the agent's boot probe."""
    cpu_num: Mapped[int] = mapped_column(Integer, default=0)
    cpu_sockets: Mapped[int] = mapped_column(Integer, default=0)
    total_cpu_capacity: Mapped[int] = mapped_column(Integer, default=0)
    """cpuNum x host.cpu.overProvisioning.ratio."""
    available_cpu_capacity: Mapped[int] = mapped_column(Integer, default=0)
    total_physical_memory: Mapped[int] = mapped_column(BigInteger, default=0)
    total_memory_capacity: Mapped[int] = mapped_column(BigInteger, default=0)
    """Physical memory less the reserved memory (kvm.reservedMemory)."""
    available_memory_capacity: Mapped[int] = mapped_column(BigInteger, default=0)

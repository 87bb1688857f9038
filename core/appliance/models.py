"""Appliances: system-owned machines that provide network services (ZStack's ApplianceVmVO).

The default backend is a network namespace on a host, made by the host agent,
with veths into the bridges of the appliance's L3 networks; its NICs are
``VmNicVO`` rows whose ``vmInstanceUuid`` is the appliance's uuid.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class ApplianceVmVO(ResourceMixin, Base):
    __tablename__ = "appliance_vm"
    resource_type = "ApplianceVmVO"

    appliance_vm_type: Mapped[str] = mapped_column(String(64), default="VirtualRouter")
    zone_uuid: Mapped[str] = mapped_column(ForeignKey("zone.uuid"), index=True)
    cluster_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    host_uuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    state: Mapped[str] = mapped_column(String(32), default="Creating")
    """Creating, Running, Destroying."""
    status: Mapped[str] = mapped_column(String(32), default="Connecting")
    """Connecting, Connected or Disconnected: whether its agent answers with its signature."""
    backend: Mapped[str] = mapped_column(String(32), default="Namespace")
    namespace: Mapped[str | None] = mapped_column(String(64), default=None)
    agent_socket_path: Mapped[str | None] = mapped_column(String(255), default=None)
    agent_token_file: Mapped[str | None] = mapped_column(String(255), default=None)
    agent_pid: Mapped[int | None] = mapped_column(Integer, default=None)
    offering_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    public_network_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    guest_network_uuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    """The L3 network it serves (one virtual router per guest network, as ZStack's
    classic virtual router)."""

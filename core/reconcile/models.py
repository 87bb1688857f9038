"""Orphans the reconciler has seen: what it must remember across comparisons and restarts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, new_uuid


class HostOrphanVO(Base):
    """An object of the lab on a host that had no owner in the database at the last
    comparison; its row goes when it is removed, gone, or owned again."""

    __tablename__ = "host_orphan"
    __table_args__ = (UniqueConstraint("host_uuid", "kind", "name"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    host_uuid: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    """domain, process, namespace, veth, tap, hostNat, nftTable, bridge or file
    (agent.lab_inventory)."""
    name: Mapped[str] = mapped_column(String(1024))
    ref: Mapped[str] = mapped_column(String(1024), default="")
    """What names its owner (a VM uuid, a router's short id, a bridge name...)."""
    detail: Mapped[str] = mapped_column(String(1024), default="")
    first_seen: Mapped[datetime] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime)

"""The orphans' first sight, kept in ``host_orphan`` so a grace period survives restarts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from contracts import kvm
from core.host.models import HostVO
from core.reconcile.models import HostOrphanVO


class Orphan(kvm.HostObjectTO):
    """An object as the agent lists it (LAB_INVENTORY), once tracked."""

    first_seen: datetime
    new: bool = False
    """First seen by this comparison."""


def track(
    session: Session, host_uuid: str, orphans: list[kvm.HostObjectTO], now: datetime
) -> list[Orphan]:
    """Record this comparison's orphans of a host: a new one is first seen ``now``; a row
    whose object is not an orphan any more (gone, or owned again) is forgotten, so an
    object owned again before its grace period ends starts a new one if it is orphaned
    later."""
    rows = {
        (r.kind, r.name): r
        for r in session.scalars(select(HostOrphanVO).where(HostOrphanVO.host_uuid == host_uuid))
    }
    tracked = []
    for obj in orphans:
        row = rows.pop((obj.kind, obj.name), None)
        new = row is None
        if row is None:
            row = HostOrphanVO(host_uuid=host_uuid, kind=obj.kind, name=obj.name, first_seen=now)
            session.add(row)
        row.ref = obj.ref[:1024]
        row.detail = obj.detail[:1024]
        row.last_seen = now
        tracked.append(Orphan(**obj.model_dump(), first_seen=row.first_seen, new=new))
    for row in rows.values():
        session.delete(row)
    return tracked


def due(tracked: list[Orphan], now: datetime, grace: float | None) -> list[Orphan]:
    """The orphans whose grace period has ended (none when it is Never)."""
    if grace is None:
        return []
    return [o for o in tracked if (now - o.first_seen).total_seconds() >= grace]


def forget(session: Session, host_uuid: str, kind: str, name: str) -> None:
    session.execute(
        delete(HostOrphanVO).where(
            HostOrphanVO.host_uuid == host_uuid,
            HostOrphanVO.kind == kind,
            HostOrphanVO.name == name,
        )
    )


def forget_gone_hosts(session: Session) -> None:
    """A host that is gone has no orphans to remember."""
    session.execute(delete(HostOrphanVO).where(HostOrphanVO.host_uuid.not_in(select(HostVO.uuid))))

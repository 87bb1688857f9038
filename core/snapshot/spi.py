"""What other services use of snapshots: a volume's expunge deletes them all."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from core.kernel.rest import AgentClient
from core.snapshot.flows import forget_snapshot
from core.snapshot.models import VolumeSnapshotVO

__all__ = ["expunge_snapshots"]


async def expunge_snapshots(
    node: Any, agent: AgentClient, volume_uuid: str, storage_path: str = ""
) -> int:
    """Delete every snapshot file of a volume that is going (its active file goes with
    it, so no file of the volume is kept: no keep list), then their rows, giving their
    room back to the primary storage; the bytes given back.

    Idempotent (a missing file is deleted already), so a resumed expunge calls it again.
    The files go first, the rows last: a crash between leaves rows a repeat deletes."""

    def read(session: Session) -> list[tuple[str, str, int]]:
        rows = session.scalars(
            select(VolumeSnapshotVO).where(VolumeSnapshotVO.volume_uuid == volume_uuid)
        )
        return [(r.uuid, r.install_path, r.size) for r in rows]

    snapshots = await node.db.run(read)
    for _uuid, path, _size in snapshots:
        await agent.send(kvm.DeleteVolumeCmd(install_path=path, storage_path=storage_path))

    def forget(session: Session) -> None:
        for uuid, _path, _size in snapshots:
            forget_snapshot(session, uuid)

    await node.db.run(forget)
    return sum(size for _uuid, _path, size in snapshots)

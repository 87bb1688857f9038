"""The chains of volume snapshots: create (``createVolumeSnapshot``), revert
(``revertVolumeFromSnapshot``), both durable and rolled back, and delete
(``deleteVolumeSnapshot``), durable and resumable.

A volume's files form qcow2 chains: the active file (``VolumeVO.install_path``) stands on
the latest snapshot's file, which stands on its parent's, down to the volume's base (an
image cache, or nothing).  The database says which snapshot stands on which
(``parent_uuid``) and which one the active file stands on (``latest``); the chains on the
disk are the truth the database follows, and every step keeps the two agreeing.

Create: the snapshot's row (``Creating``, its uuid chosen before the chain, so a rollback
finds it) names the volume's active file, and the room that file takes now is reserved on
the primary storage with it (refused if the storage has not that much free); then one
flow takes the snapshot on the host (TakeSnapshotCmd: the active file becomes the
snapshot's and a new file on it, its path chosen before the chain, the active one; live
through libvirt while the VM runs) and commits the result in one transaction (row Ready,
``latest`` moved to it, the volume's install path the new file, the reservation corrected
to the frozen file's size).  **That commit is the point of no return**, as in ZStack,
where a snapshot taken is never undone: once the database names the new file, a guest may
have written to it, so the rollback leaves the snapshot (the chain fails, the snapshot
exists).  Before the commit the rollback finds out from the disk (VolumeChainCmd on the
new path): no new file, nothing to undo; a new file of a volume that is not live is
deleted (no domain used it: the volume's lock was held); a new file of a live volume may
already be the running disk's (the crash came between the agent's answer and the
commit), so the take is repeated (idempotent: it answers as made, or makes it) and the
commit finished.  A full take first makes the active file standalone (content kept): a
rollback after that says the active file stands on no snapshot (``latest`` none).

Revert (VM Stopped or volume detached): a new file on the snapshot's, made offline by
TakeSnapshotCmd on the snapshot's file (``qemu-img create -b``; VOLUME_CREATE takes only a
standalone backing file), then one transaction moves the volume's install path and
``latest``, then the old active file is deleted (DeleteVolumeCmd with every other file of
the volume to keep: it is never a backing file).  A rollback puts the old file back while
it exists and deletes the new one if the database does not name it; once the old file is
gone the revert is done.

Delete, for a snapshot S whose file stands on P (read from the disk: its chain's first
entry, "" for none): S is marked Deleting; if the volume is live and S's file is in the
running disk's chain (S is the latest or an ancestor of it), the active file is rebased
live onto P (the data of the files skipped is copied into it) and ``latest`` moves to S's
parent; every file standing on S (its children's, and the active file of a volume that is
not live whose latest S is) is rebased offline onto P, the child taking S's parent in the
same step (a root's children become roots of trees of their own); then S's file is
deleted (the agent refuses while any file of the volume still stands on it) and its row
goes with its capacity.  Rebases never change what a file reads, so every other snapshot
and the volume keep their content whatever S's place; a failure before the file's
deletion changes no content, and the snapshot is Ready again.  After a crash the chain
runs on (every step is idempotent: a rebase already done answers at once, the children
are read again).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contracts import kvm
from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow
from core.kernel.flow_data import FlowData
from core.kernel.rest import AgentClient
from core.snapshot.models import VolumeSnapshotVO
from core.storage.capacity import reserve_primary_capacity, return_primary_capacity
from core.storage.models import PrimaryStorageVO
from core.vm.spec import human_size
from core.volume.models import VolumeVO
from core.volume.spi import files_of, volume_agent

log = logging.getLogger(__name__)

CREATE = "createVolumeSnapshot"
REVERT = "revertVolumeFromSnapshot"
DELETE = "deleteVolumeSnapshot"

CREATING, READY, DELETING = "Creating", "Ready", "Deleting"


class SnapshotData(FlowData):
    """What the snapshot chains share: the volume and snapshot, where their files are and
    who works on them (all read under the volume's lock before the chain)."""

    volume_uuid: str
    snapshot_uuid: str
    storage_path: str
    """The primary storage directory of the volume's files."""
    primary_storage_uuid: str
    zone_uuid: str
    host_uuid: str | None = None
    """The host of the volume's VM while it has one (its agent works on the files), else
    None (a local host of the zone's)."""
    vm_uuid: str = ""
    device_id: int = 0
    live: bool = False
    """A running domain holds the volume's files."""
    old_path: str = ""
    """Create, revert: the volume's active file before the chain."""
    new_path: str = ""
    """Create, revert: the volume's active file after it."""
    # create
    name: str = ""
    description: str | None = None
    volume_type: str = "Root"
    parent_uuid: str | None = None
    tree_uuid: str = ""
    full: bool = False
    # revert
    previous_latest: str | None = None
    # delete
    backing: str | None = None
    """The file the snapshot's file stands on ("" for none); None until read."""
    pull_live: bool = False
    """The snapshot's file is in the running disk's chain: the active file is rebased live."""

    def hosts(self) -> list[str]:
        return [self.host_uuid] if self.host_uuid else []


async def agent_of(data: SnapshotData) -> AgentClient:
    return await volume_agent(data.node, data.host_uuid, data.zone_uuid)


def file_op(data: SnapshotData, install_path: str, *, live: bool) -> dict[str, Any]:
    """The VolumeFileOp fields for ``install_path``: naming the VM's disk only for the
    volume's active file (a snapshot's file is never a disk's active file)."""
    return {
        "vm_uuid": data.vm_uuid if live else "",
        "device_id": data.device_id if live else 0,
        "storage_path": data.storage_path,
        "install_path": install_path,
    }


async def chain_of(data: SnapshotData, agent: AgentClient, path: str) -> list[str] | None:
    """The files ``path`` stands on, nearest first (None: there is no such file)."""
    answer = await agent.send(
        kvm.VolumeChainCmd(storage_path=data.storage_path, install_paths=[path])
    )
    if path in answer.missing:
        return None
    return answer.chains.get(path, [])


async def delete_file(data: SnapshotData, agent: AgentClient, path: str) -> None:
    """Delete one file of the volume, refused by the agent if another file of the volume
    (as the database has them now) stands on it."""
    keep = await data.node.db.run(lambda s: [f for f in files_of(s, data.volume_uuid) if f != path])
    await agent.send(
        kvm.DeleteVolumeCmd(install_path=path, storage_path=data.storage_path, keep_if_backing=keep)
    )


def _volume(session: Session, uuid: str) -> VolumeVO:
    volume = session.get(VolumeVO, uuid)
    if volume is None:
        raise operr(f"volume {uuid} is gone")
    return volume


def set_latest(session: Session, volume_uuid: str, snapshot_uuid: str | None) -> None:
    """``snapshot_uuid`` (or none) is the snapshot the volume's active file stands on."""
    session.execute(
        update(VolumeSnapshotVO)
        .where(VolumeSnapshotVO.volume_uuid == volume_uuid, VolumeSnapshotVO.latest.is_(True))
        .values(latest=False)
    )
    if snapshot_uuid is not None:
        session.execute(
            update(VolumeSnapshotVO)
            .where(VolumeSnapshotVO.uuid == snapshot_uuid)
            .values(latest=True)
        )


def take_primary_capacity(session: Session, storage_uuid: str, size: int) -> None:
    """A file already on the storage counts against it (unconditionally: it is there; a
    live snapshot's file grew a little past its estimate)."""
    session.execute(
        update(PrimaryStorageVO)
        .where(PrimaryStorageVO.uuid == storage_uuid)
        .values(available_capacity=PrimaryStorageVO.available_capacity - size)
    )


def forget_snapshot(session: Session, snapshot_uuid: str) -> None:
    """The row goes and the storage gets its size back (no-op if it is gone)."""
    row = session.get(VolumeSnapshotVO, snapshot_uuid)
    if row is None:
        return
    if row.size and session.get(PrimaryStorageVO, row.primary_storage_uuid) is not None:
        return_primary_capacity(session, row.primary_storage_uuid, row.size)
    session.delete(row)


# -- create ---------------------------------------------------------------------------
class SnapshotRowFlow(Flow):
    """The snapshot's row, Creating, naming the volume's active file, with the room of that
    file (its size now: the snapshot's estimate) reserved on the primary storage in the
    same transaction (its uuid is in the journal before this runs: a rollback, after a
    crash too, finds the row and gives back what it holds)."""

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        agent = await agent_of(data)
        estimate = (await agent.send(kvm.ImageInfoCmd(install_path=data.old_path))).actual_size

        def insert(session: Session) -> None:
            if not reserve_primary_capacity(session, data.primary_storage_uuid, estimate):
                raise operr(
                    f"the primary storage of volume {data.volume_uuid} has not "
                    f"{human_size(estimate)} free for the snapshot's file"
                )
            session.add(
                VolumeSnapshotVO(
                    uuid=data.snapshot_uuid,
                    name=data.name,
                    description=data.description,
                    volume_uuid=data.volume_uuid,
                    tree_uuid=data.tree_uuid,
                    parent_uuid=data.parent_uuid,
                    primary_storage_uuid=data.primary_storage_uuid,
                    install_path=data.old_path,
                    volume_type=data.volume_type,
                    size=estimate,
                    latest=False,
                    full=data.full,
                    status=CREATING,
                )
            )

        await data.node.db.run(insert)

    async def rollback(self, data: SnapshotData) -> None:  # type: ignore[override]
        def forget(session: Session) -> None:
            row = session.get(VolumeSnapshotVO, data.snapshot_uuid)
            if row is not None and row.status == CREATING:  # a Ready one was taken: it stays
                forget_snapshot(session, row.uuid)

        await data.node.db.run(forget)


class SnapshotTakeFlow(Flow):
    """The snapshot taken on the host, and committed in one transaction: the point of no
    return (see the module)."""

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        await self._take_and_commit(data, await agent_of(data))

    @staticmethod
    async def _take_and_commit(data: SnapshotData, agent: AgentClient) -> None:
        answer = await agent.send(
            kvm.TakeSnapshotCmd(
                **file_op(data, data.old_path, live=True),
                new_install_path=data.new_path,
                full=data.full,
            ),
            timeout=3600,
        )

        def commit(session: Session) -> None:
            row = session.get(VolumeSnapshotVO, data.snapshot_uuid)
            volume = _volume(session, data.volume_uuid)
            if row is None:
                raise operr(f"snapshot {data.snapshot_uuid} is gone")
            if volume.install_path == data.new_path and row.status == READY:
                return  # committed already
            if volume.install_path != data.old_path:
                raise operr(
                    f"the active file of volume {volume.name} changed meanwhile "
                    f"({volume.install_path}, not {data.old_path})"
                )
            set_latest(session, data.volume_uuid, data.snapshot_uuid)
            # The room reserved was the file's size before the take: now it is known.
            more = answer.actual_size - row.size
            if more > 0:
                take_primary_capacity(session, data.primary_storage_uuid, more)
            elif more < 0:
                return_primary_capacity(session, data.primary_storage_uuid, -more)
            row.status, row.size = READY, answer.actual_size
            volume.install_path = data.new_path

        await data.node.db.run(commit)

    async def rollback(self, data: SnapshotData) -> None:  # type: ignore[override]
        active = await data.node.db.run(lambda s: _volume(s, data.volume_uuid).install_path)
        if active == data.new_path:
            return  # taken and committed: the snapshot exists (the point of no return)
        agent = await agent_of(data)
        made = await chain_of(data, agent, data.new_path) is not None
        if made and data.live:
            # The running disk may be on the new file already (a crash between the agent's
            # answer and the commit): nothing may delete it; the take is finished instead.
            log.warning(
                "snapshot %s of volume %s: the live take may have switched the disk to %s; "
                "finishing it instead of undoing it",
                data.snapshot_uuid, data.volume_uuid, data.new_path,
            )  # fmt: skip
            await self._take_and_commit(data, agent)
            return
        if made:
            await delete_file(data, agent, data.new_path)
        if data.full:
            await self._settle_pulled_chain(data, agent)

    @staticmethod
    async def _settle_pulled_chain(data: SnapshotData, agent: AgentClient) -> None:
        """A full take begins by making the active file standalone (its content kept): if
        it got that far, the active file stands on no snapshot any more."""
        chain = await chain_of(data, agent, data.old_path) or []

        def settle(session: Session) -> None:
            latest = session.scalars(
                select(VolumeSnapshotVO).where(
                    VolumeSnapshotVO.volume_uuid == data.volume_uuid,
                    VolumeSnapshotVO.latest.is_(True),
                )
            ).first()
            if latest is not None and latest.install_path not in chain:
                set_latest(session, data.volume_uuid, None)

        await data.node.db.run(settle)


# -- revert ---------------------------------------------------------------------------
class RevertOverlayFlow(Flow):
    """A new file on the snapshot's (offline: TakeSnapshotCmd on the snapshot's file makes
    a qcow2 overlay on it, and is idempotent); the rollback deletes it unless the database
    names it as the volume's active file."""

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        snapshot_path = await data.node.db.run(
            lambda s: _snapshot(s, data.snapshot_uuid).install_path
        )
        await (await agent_of(data)).send(
            kvm.TakeSnapshotCmd(
                **file_op(data, snapshot_path, live=False), new_install_path=data.new_path
            ),
            timeout=600,
        )

    async def rollback(self, data: SnapshotData) -> None:  # type: ignore[override]
        active = await data.node.db.run(lambda s: _volume(s, data.volume_uuid).install_path)
        if active == data.new_path:
            return  # the revert is done (its old file is gone: see RevertCommitFlow)
        await delete_file(data, await agent_of(data), data.new_path)


class RevertCommitFlow(Flow):
    """One transaction: the new file is the volume's active file, the snapshot its latest.
    The rollback puts the old file back while it exists."""

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        def commit(session: Session) -> None:
            volume = _volume(session, data.volume_uuid)
            _snapshot(session, data.snapshot_uuid)
            if volume.install_path not in (data.old_path, data.new_path):
                raise operr(f"the active file of volume {volume.name} changed meanwhile")
            volume.install_path = data.new_path
            set_latest(session, data.volume_uuid, data.snapshot_uuid)

        await data.node.db.run(commit)

    async def rollback(self, data: SnapshotData) -> None:  # type: ignore[override]
        active = await data.node.db.run(lambda s: _volume(s, data.volume_uuid).install_path)
        if active != data.new_path:
            return
        if await chain_of(data, await agent_of(data), data.old_path) is None:
            return  # the old file was deleted: the revert is done, there is no way back

        def put_back(session: Session) -> None:
            volume = _volume(session, data.volume_uuid)
            if volume.install_path == data.new_path:
                volume.install_path = data.old_path
                set_latest(session, data.volume_uuid, data.previous_latest)

        await data.node.db.run(put_back)


class RevertDeleteOldFileFlow(NoRollbackFlow):
    """The old active file goes (nothing stands on an active file: the agent checks)."""

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        await delete_file(data, await agent_of(data), data.old_path)


# -- delete ---------------------------------------------------------------------------
class SnapshotDeletingFlow(Flow):
    """The snapshot is Deleting, and the file its file stands on is read from the disk;
    the rollback makes it Ready again (nothing before the file's deletion changes content)."""

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        def mark(session: Session) -> str:
            row = _snapshot(session, data.snapshot_uuid)
            row.status = DELETING
            return row.install_path

        path = await data.node.db.run(mark)
        chain = await chain_of(data, await agent_of(data), path)
        data.backing = None if chain is None else (chain[0] if chain else "")

    async def rollback(self, data: SnapshotData) -> None:  # type: ignore[override]
        def ready(session: Session) -> None:
            row = session.get(VolumeSnapshotVO, data.snapshot_uuid)
            if row is not None:
                row.status = READY

        await data.node.db.run(ready)


def _backing(data: SnapshotData) -> str:
    if data.backing is None:
        raise operr(
            f"the file of snapshot {data.snapshot_uuid} is missing: what stands on it cannot "
            "be merged"
        )
    return data.backing


class SnapshotPullLiveFlow(NoRollbackFlow):
    """The running disk's active file is rebased live past the snapshot's file (onto the
    file it stands on); ``latest`` moves to the snapshot's parent."""

    def skip(self, data: SnapshotData) -> bool:  # type: ignore[override]
        return not data.pull_live

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        backing = _backing(data)
        active = await data.node.db.run(lambda s: _volume(s, data.volume_uuid).install_path)
        assert active is not None
        await (await agent_of(data)).send(
            kvm.RebaseVolumeCmd(**file_op(data, active, live=True), backing_file=backing),
            timeout=24 * 3600,
        )

        def move_latest(session: Session) -> None:
            row = _snapshot(session, data.snapshot_uuid)
            set_latest(session, data.volume_uuid, row.parent_uuid)

        await data.node.db.run(move_latest)


class SnapshotRebaseChildrenFlow(NoRollbackFlow):
    """Every file standing on the snapshot's is rebased offline onto the file below it:
    its children's (each then takes the snapshot's parent), and the active file of a volume
    that is not live whose latest the snapshot is (``latest`` then moves to its parent)."""

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        agent = await agent_of(data)

        def read(session: Session) -> tuple[list[tuple[str, str]], str | None, bool]:
            row = _snapshot(session, data.snapshot_uuid)
            children = session.scalars(
                select(VolumeSnapshotVO)
                .where(VolumeSnapshotVO.parent_uuid == row.uuid)
                .order_by(VolumeSnapshotVO.create_date)
            )
            active = (
                _volume(session, data.volume_uuid).install_path
                if row.latest and not data.live
                else None
            )
            return [(c.uuid, c.install_path) for c in children], active, row.latest

        children, active, latest = await data.node.db.run(read)
        if latest and data.live:
            raise operr(
                f"snapshot {data.snapshot_uuid} is the running disk's latest but was not pulled"
            )
        if not children and active is None:
            return
        backing = _backing(data)
        for child_uuid, path in children:
            await agent.send(
                kvm.RebaseVolumeCmd(**file_op(data, path, live=False), backing_file=backing),
                timeout=24 * 3600,
            )
            await data.node.db.run(_adopter(data.snapshot_uuid, child_uuid))
        if active is not None:
            await agent.send(
                kvm.RebaseVolumeCmd(**file_op(data, active, live=True), backing_file=backing),
                timeout=24 * 3600,
            )

            def move_latest(session: Session) -> None:
                row = _snapshot(session, data.snapshot_uuid)
                set_latest(session, data.volume_uuid, row.parent_uuid)

            await data.node.db.run(move_latest)


def _adopter(snapshot_uuid: str, child_uuid: str) -> Callable[[Session], None]:
    return lambda session: _adopt(session, snapshot_uuid, child_uuid)


def _adopt(session: Session, snapshot_uuid: str, child_uuid: str) -> None:
    """The child stands on the snapshot's parent now (a root's child is a new tree's root,
    with its descendants)."""
    row = _snapshot(session, snapshot_uuid)
    child = session.get(VolumeSnapshotVO, child_uuid)
    if child is None or child.parent_uuid != row.uuid:
        return
    child.parent_uuid = row.parent_uuid
    if row.parent_uuid is None:
        for uuid in _subtree(session, child.uuid):
            session.execute(
                update(VolumeSnapshotVO)
                .where(VolumeSnapshotVO.uuid == uuid)
                .values(tree_uuid=child.uuid)
            )


def _subtree(session: Session, root_uuid: str) -> list[str]:
    found, todo = [], [root_uuid]
    while todo:
        uuid = todo.pop()
        found.append(uuid)
        todo += session.scalars(
            select(VolumeSnapshotVO.uuid).where(VolumeSnapshotVO.parent_uuid == uuid)
        )
    return found


class SnapshotDeleteFileFlow(NoRollbackFlow):
    """The snapshot's file goes (refused by the agent while any file of the volume stands
    on it), then its row, with its capacity back."""

    async def run(self, data: SnapshotData) -> None:  # type: ignore[override]
        path = await data.node.db.run(
            lambda s: (
                row.install_path if (row := s.get(VolumeSnapshotVO, data.snapshot_uuid)) else None
            )
        )
        if path is None:
            return  # done already
        await delete_file(data, await agent_of(data), path)
        await data.node.db.run(lambda s: forget_snapshot(s, data.snapshot_uuid))


def _snapshot(session: Session, uuid: str) -> VolumeSnapshotVO:
    row = session.get(VolumeSnapshotVO, uuid)
    if row is None:
        raise operr(f"volume snapshot {uuid} is gone")
    return row


def new_active_path(old_path: str, volume_uuid: str, uuid: str) -> str:
    """A new active file of the volume, beside its current one."""
    return os.path.join(os.path.dirname(old_path), f"{volume_uuid}-{uuid}.qcow2")


def paths(*classes: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__name__}" for cls in classes]


CREATE_FLOWS = paths(SnapshotRowFlow, SnapshotTakeFlow)
REVERT_FLOWS = paths(RevertOverlayFlow, RevertCommitFlow, RevertDeleteOldFileFlow)
DELETE_FLOWS = paths(
    SnapshotDeletingFlow, SnapshotPullLiveFlow, SnapshotRebaseChildrenFlow, SnapshotDeleteFileFlow
)

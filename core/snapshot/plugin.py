"""The volume snapshot service: create, revert, delete and read snapshots of a volume
(ZStack's VolumeSnapshotManager), each holding the volume's queue then its VM's
(core.volume.spi.volume_locked); the chains are in :mod:`core.snapshot.flows`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.config.plugin import GlobalConfigPlugin
from core.kernel.db import new_uuid
from core.kernel.errors import not_found, stateerr
from core.kernel.extensions import Plugin
from core.kernel.operation import name_subject
from core.kernel.service import Service, handles
from core.snapshot import flows, global_config
from core.snapshot.api import (
    CreateVolumeSnapshot,
    DeleteVolumeSnapshot,
    GetVolumeSnapshotTree,
    QueryVolumeSnapshot,
    RevertVolumeFromSnapshot,
)
from core.snapshot.flows import READY, SnapshotData
from core.snapshot.models import VolumeSnapshotVO
from core.volume.spi import VolumeSite, volume_locked

SNAPSHOT_STATES = ("Running", "Paused", "Stopped")
"""States of a VM whose volumes can be snapshotted (live in the first two)."""
DELETE_STATES = (*SNAPSHOT_STATES, "Destroyed")
"""States of a VM whose volumes' snapshots can be deleted."""


class SnapshotPlugin(Plugin, GlobalConfigProvider, Service):
    implements = (GlobalConfigProvider, Service)
    service_id = "volumeSnapshot"
    queries = (QueryVolumeSnapshot,)

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        node.declare_chain(flows.CREATE, flows.CREATE_FLOWS, SnapshotData)
        node.declare_chain(flows.REVERT, flows.REVERT_FLOWS, SnapshotData)
        node.declare_chain(flows.DELETE, flows.DELETE_FLOWS, SnapshotData, resumable=True)

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    # -- create ------------------------------------------------------------------------
    @handles(CreateVolumeSnapshot)
    async def create(self, msg: CreateVolumeSnapshot) -> dict[str, Any]:
        max_num = int(
            self.node.plugin(GlobalConfigPlugin).value(
                global_config.CATEGORY, global_config.INCREMENTAL_MAX_NUM.name
            )
        )
        snapshot_uuid = new_uuid()
        name_subject(snapshot_uuid, msg.name)
        async with volume_locked(self.node, msg.volume_uuid) as site:
            volume = site.volume
            _check_volume(site, "snapshot")
            _check_vm(site, "snapshot", SNAPSHOT_STATES)

            def plan(session: Session) -> SnapshotData:
                latest = _latest(session, site.uuid)
                full = latest is not None and len(_ancestry(session, latest)) >= max_num
                parent = None if latest is None or full else latest
                return _data(
                    site,
                    snapshot_uuid,
                    old_path=volume["installPath"],
                    new_path=flows.new_active_path(volume["installPath"], site.uuid, snapshot_uuid),
                    name=msg.name,
                    description=msg.description or None,
                    volume_type=volume["type"],
                    parent_uuid=None if parent is None else parent.uuid,
                    tree_uuid=snapshot_uuid if parent is None else parent.tree_uuid,
                    full=full,
                )

            data = await self.node.db.run(plan)
            await self._run(flows.CREATE, data, f"cannot snapshot volume {volume['name']}")
        return await self._inventory(snapshot_uuid)

    # -- revert ------------------------------------------------------------------------
    @handles(RevertVolumeFromSnapshot)
    async def revert(self, msg: RevertVolumeFromSnapshot) -> dict[str, Any]:
        volume_uuid = await self._volume_of(msg.uuid)
        async with volume_locked(self.node, volume_uuid) as site:
            volume = site.volume
            _check_volume(site, "revert")
            if site.vm is not None and site.vm["state"] != "Stopped":
                raise stateerr(
                    f"cannot revert volume {volume['name']} from a snapshot: its VM "
                    f"{site.vm['name']} is {site.vm['state']}",
                    "stop the VM (or detach the volume) first",
                )

            def plan(session: Session) -> SnapshotData:
                row = _ready(session, msg.uuid, volume_uuid, "revert to")
                latest = _latest(session, volume_uuid)
                return _data(
                    site,
                    row.uuid,
                    old_path=volume["installPath"],
                    new_path=flows.new_active_path(volume["installPath"], volume_uuid, new_uuid()),
                    previous_latest=None if latest is None else latest.uuid,
                )

            data = await self.node.db.run(plan)
            await self._run(
                flows.REVERT, data, f"cannot revert volume {volume['name']} from snapshot"
            )
        return await self._inventory(msg.uuid)

    # -- delete ------------------------------------------------------------------------
    @handles(DeleteVolumeSnapshot)
    async def delete(self, msg: DeleteVolumeSnapshot) -> None:
        volume_uuid = await self._volume_of(msg.uuid)
        async with volume_locked(self.node, volume_uuid) as site:
            _check_vm(site, "delete snapshots of", DELETE_STATES)

            def plan(session: Session) -> SnapshotData:
                row = _ready(session, msg.uuid, volume_uuid, "delete")
                latest = _latest(session, volume_uuid)
                in_running_chain = (
                    site.live
                    and latest is not None
                    and row.uuid in [r.uuid for r in _ancestry(session, latest)]
                )
                return _data(site, row.uuid, pull_live=in_running_chain)

            data = await self.node.db.run(plan)
            await self._run(flows.DELETE, data, f"cannot delete volume snapshot {msg.uuid}")

    # -- read --------------------------------------------------------------------------
    @handles(GetVolumeSnapshotTree)
    async def tree(self, msg: GetVolumeSnapshotTree) -> dict[str, Any]:
        def read(session: Session) -> dict[str, Any]:
            from core.volume.models import VolumeVO

            volume = session.get(VolumeVO, msg.volume_uuid)
            if volume is None:
                raise not_found("VolumeVO", msg.volume_uuid)
            rows = list(
                session.scalars(
                    select(VolumeSnapshotVO)
                    .where(VolumeSnapshotVO.volume_uuid == volume.uuid)
                    .order_by(VolumeSnapshotVO.create_date, VolumeSnapshotVO.uuid)
                )
            )
            nodes: dict[str, dict[str, Any]] = {
                r.uuid: {"inventory": r.to_inventory(), "current": r.latest, "children": []}
                for r in rows
            }
            roots: list[dict[str, Any]] = []
            for r in rows:
                parent = nodes.get(r.parent_uuid) if r.parent_uuid else None
                siblings: list[dict[str, Any]] = roots if parent is None else parent["children"]
                siblings.append(nodes[r.uuid])
            return {
                "volumeUuid": volume.uuid,
                "installPath": volume.install_path,
                "trees": roots,
            }

        return await self.node.db.run(read)

    # -- helpers -----------------------------------------------------------------------
    async def _run(self, chain: str, data: SnapshotData, failure: str) -> None:
        data.bind(self.node)
        # FlowChain.start is typed for dict data (core.kernel.flow); it takes the chain's FlowData
        outcome = await self.node.chain(chain).start(data)  # type: ignore[arg-type]
        outcome.raise_for_error(failure)

    async def _volume_of(self, snapshot_uuid: str) -> str:
        """The volume of the snapshot (the operation is about the snapshot)."""

        def read(session: Session) -> tuple[str, str]:
            row = session.get(VolumeSnapshotVO, snapshot_uuid)
            if row is None:
                raise not_found(VolumeSnapshotVO.resource_type, snapshot_uuid)
            return row.volume_uuid, row.name

        volume_uuid, name = await self.node.db.run(read)
        name_subject(snapshot_uuid, name)
        return volume_uuid

    async def _inventory(self, snapshot_uuid: str) -> dict[str, Any]:
        def read(session: Session) -> dict[str, Any]:
            row = session.get(VolumeSnapshotVO, snapshot_uuid)
            if row is None:
                raise not_found(VolumeSnapshotVO.resource_type, snapshot_uuid)
            return row.to_inventory()

        return await self.node.db.run(read)


def _data(site: VolumeSite, snapshot_uuid: str, **fields: Any) -> SnapshotData:
    vm = site.vm
    return SnapshotData(
        volume_uuid=site.uuid,
        snapshot_uuid=snapshot_uuid,
        storage_path=site.storage_path,
        primary_storage_uuid=site.volume["primaryStorageUuid"],
        zone_uuid=site.zone_uuid,
        host_uuid=vm["hostUuid"] if vm is not None and vm.get("hostUuid") else None,
        vm_uuid=vm["uuid"] if vm is not None else "",
        device_id=site.volume["deviceId"] if vm is not None else 0,
        live=site.live,
        **fields,
    )


def _check_volume(site: VolumeSite, operation: str) -> None:
    volume = site.volume
    if volume["status"] != "Ready" or not volume["installPath"]:
        raise stateerr(
            f"cannot {operation} volume {volume['name']}: it is {volume['status']}",
            "only a Ready volume (one with its file) has snapshots",
        )


def _check_vm(site: VolumeSite, operation: str, states: tuple[str, ...]) -> None:
    vm = site.vm
    if vm is not None and vm["state"] not in states:
        raise stateerr(
            f"cannot {operation} volume {site.volume['name']}: its VM {vm['name']} is "
            f"{vm['state']}",
            f"the VM must be {', '.join(states[:-1])} or {states[-1]}",
        )


def _latest(session: Session, volume_uuid: str) -> VolumeSnapshotVO | None:
    return session.scalars(
        select(VolumeSnapshotVO).where(
            VolumeSnapshotVO.volume_uuid == volume_uuid, VolumeSnapshotVO.latest.is_(True)
        )
    ).first()


def _ancestry(session: Session, row: VolumeSnapshotVO) -> list[VolumeSnapshotVO]:
    """The snapshot and its ancestors through ``parent_uuid``, nearest first."""
    found = [row]
    while found[-1].parent_uuid is not None and len(found) <= 1024:
        parent = session.get(VolumeSnapshotVO, found[-1].parent_uuid)
        if parent is None:
            break
        found.append(parent)
    return found


def _ready(session: Session, uuid: str, volume_uuid: str, operation: str) -> VolumeSnapshotVO:
    row = session.get(VolumeSnapshotVO, uuid)
    if row is None or row.volume_uuid != volume_uuid:
        raise not_found(VolumeSnapshotVO.resource_type, uuid)
    if row.status != READY:
        raise stateerr(
            f"cannot {operation} volume snapshot {row.name}: it is {row.status}",
            "wait for the operation on it to end",
        )
    return row

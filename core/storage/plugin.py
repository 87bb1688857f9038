"""Backup storage (images) and primary storage (volumes): directories on this machine.

The core never touches the directories itself: the agent of a Connected host
on this machine in the storage's zone makes them and measures them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts import kvm
from core.cluster.models import ClusterVO
from core.host.plugin import HostPlugin
from core.image.models import ImageBackupStorageRefVO
from core.kernel.errors import argerr, not_found, operr
from core.kernel.extensions import Plugin
from core.kernel.service import Service, handles
from core.storage.api import (
    AddLocalBackupStorage,
    AddLocalPrimaryStorage,
    AttachPrimaryStorageToCluster,
    DeleteBackupStorage,
    DeletePrimaryStorage,
    QueryBackupStorage,
    QueryPrimaryStorage,
)
from core.storage.models import (
    BackupStorageVO,
    ImageCacheVO,
    PrimaryStorageClusterRefVO,
    PrimaryStorageVO,
)
from core.tag.plugin import TagPlugin, delete_all_tags
from core.volume.models import VolumeVO

StorageModel = type[BackupStorageVO] | type[PrimaryStorageVO]


class StoragePlugin(Plugin, Service):
    implements = (Service,)
    service_id = "storage"
    queries = (QueryBackupStorage, QueryPrimaryStorage)

    @handles(AddLocalBackupStorage)
    async def add_backup_storage(self, msg: AddLocalBackupStorage) -> dict[str, Any]:
        return await self._add(BackupStorageVO, msg)

    @handles(AddLocalPrimaryStorage)
    async def add_primary_storage(self, msg: AddLocalPrimaryStorage) -> dict[str, Any]:
        return await self._add(PrimaryStorageVO, msg)

    async def _add(self, model: StorageModel, msg: Any) -> dict[str, Any]:
        url = msg.url.rstrip("/") or "/"

        def clash(session: Session) -> None:
            models: tuple[StorageModel, ...] = (BackupStorageVO, PrimaryStorageVO)
            for other in models:
                taken = session.scalars(select(other.name).where(other.url == url)).first()
                if taken is not None:
                    raise argerr(f"{url} is already used by {other.resource_type} {taken}")

        await self.node.db.run(clash)
        agent = await self.node.plugin(HostPlugin).local_agent(msg.zone_uuid)
        measured = await agent.send(kvm.InitStorageCmd(path=url))
        tags = self.node.plugin(TagPlugin)

        def create(session: Session) -> dict[str, Any]:
            storage = model(
                name=msg.name,
                description=msg.description,
                zone_uuid=msg.zone_uuid,
                url=url,
                total_capacity=measured.total_capacity,
                available_capacity=measured.available_capacity,
            )
            session.add(storage)
            session.flush()
            tags.create_tags_from_message(session, msg, model.resource_type, storage.uuid)
            return storage.to_inventory()

        return await self.node.db.run(create)

    @handles(AttachPrimaryStorageToCluster)
    async def attach(self, msg: AttachPrimaryStorageToCluster) -> dict[str, Any]:
        def attach(session: Session) -> dict[str, Any]:
            storage = session.get(PrimaryStorageVO, msg.primary_storage_uuid)
            cluster = session.get(ClusterVO, msg.cluster_uuid)
            assert storage is not None and cluster is not None  # checked by the bus
            if storage.zone_uuid != cluster.zone_uuid:
                raise argerr(
                    f"primary storage {storage.name} and cluster {cluster.name} "
                    "are in different zones"
                )
            attached = session.scalars(
                select(PrimaryStorageClusterRefVO).where(
                    PrimaryStorageClusterRefVO.primary_storage_uuid == storage.uuid,
                    PrimaryStorageClusterRefVO.cluster_uuid == cluster.uuid,
                )
            ).first()
            if attached is None:
                session.add(
                    PrimaryStorageClusterRefVO(
                        primary_storage_uuid=storage.uuid, cluster_uuid=cluster.uuid
                    )
                )
                session.flush()
            clusters = session.scalars(
                select(PrimaryStorageClusterRefVO.cluster_uuid).where(
                    PrimaryStorageClusterRefVO.primary_storage_uuid == storage.uuid
                )
            )
            return storage.to_inventory() | {"attachedClusterUuids": sorted(clusters)}

        return await self.node.db.run(attach)

    @handles(DeleteBackupStorage)
    async def delete_backup_storage(self, msg: DeleteBackupStorage) -> None:
        def delete(session: Session) -> None:
            storage = _get(session, BackupStorageVO, msg.uuid)
            images = _count(
                session,
                ImageBackupStorageRefVO,
                ImageBackupStorageRefVO.backup_storage_uuid == msg.uuid,
            )
            if images:
                raise operr(f"backup storage {storage.name} still holds {images} image(s)")
            session.delete(storage)
            delete_all_tags(session, [msg.uuid])

        await self.node.db.run(delete)

    @handles(DeletePrimaryStorage)
    async def delete_primary_storage(self, msg: DeletePrimaryStorage) -> None:
        def delete(session: Session) -> None:
            storage = _get(session, PrimaryStorageVO, msg.uuid)
            volumes = _count(session, VolumeVO, VolumeVO.primary_storage_uuid == msg.uuid)
            caches = _count(session, ImageCacheVO, ImageCacheVO.primary_storage_uuid == msg.uuid)
            if volumes or caches:
                raise operr(
                    f"primary storage {storage.name} still holds {volumes} volume(s) "
                    f"and {caches} cached image(s)"
                )
            for ref in session.scalars(
                select(PrimaryStorageClusterRefVO).where(
                    PrimaryStorageClusterRefVO.primary_storage_uuid == msg.uuid
                )
            ):
                session.delete(ref)
            session.delete(storage)
            delete_all_tags(session, [msg.uuid])

        await self.node.db.run(delete)


def _get(session: Session, model: StorageModel, uuid: str) -> Any:
    row = session.get(model, uuid)
    if row is None:
        raise not_found(model.resource_type, uuid)
    return row


def _count(session: Session, model: Any, condition: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(condition)) or 0)

"""Images made from volumes: ZStack's ``CreateRootVolumeTemplateFromRootVolume`` and
``CreateDataVolumeTemplateFromVolume``, one durable chain (``createTemplateFromVolume``).

The volume is held (core.volume.spi.volume_locked: its queue, then its VM's) from the
check to the chain's end, so its VM, Stopped when the call began, cannot start while the
volume is read.  The chain:

1. :class:`TemplateImageRowFlow`: the image's row (``Creating``, qcow2) and one copy row
   per backup storage (``<storage dir>/<imageUuid>.qcow2``, AddImage's layout), written
   down with them; the rollback deletes the rows and the image's tags.
2. :class:`TemplateExportFlow`: each copy made by the host (``VOLUME_EXPORT``: the volume's
   chain flattened into a standalone qcow2, written beside its target and put in place
   when whole), its progress relayed as AddImage's is (``/image/download/progress``,
   stage ``export``).  The rollback deletes every target (``FILE_DELETE`` also removes
   what an export left half-made): the paths hold the new image's uuid, so nothing there
   can be another's.
3. :class:`TemplateReadyFlow`: the image and its copies Ready, with the size, actual size
   and md5 the host measured.

Backup storage has no capacity accounting here (AddImage reserves none either), so there
is none to reserve or give back.  A node killed anywhere is rolled back at the next start.
"""

from __future__ import annotations

import logging
import posixpath
from typing import Any

from pydantic import BaseModel, PrivateAttr
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.image.rows import forget_image
from core.kernel.db import new_uuid
from core.kernel.errors import OperationError, argerr, operr, stateerr
from core.kernel.flow import Flow, NoRollbackFlow, checkpointer
from core.kernel.flow_data import FlowData
from core.kernel.operation import name_subject
from core.storage.models import BackupStorageVO
from core.volume.spi import VolumeSite, volume_locked

log = logging.getLogger(__name__)

CHAIN = "createTemplateFromVolume"
ROOT_TEMPLATE = "RootVolumeTemplate"
DATA_TEMPLATE = "DataVolumeTemplate"
CREATING = "Creating"
"""The status of an image (and its copies) while it is being made."""
READY = "Ready"
EXPORT_TIMEOUT = 3600.0
"""Seconds one copy's export may take."""


class TemplateRequest(BaseModel):
    """What the caller asked for."""

    name: str
    description: str | None = None
    backup_storage_uuids: list[str] = []
    media_type: str = ROOT_TEMPLATE
    platform: str | None = None
    """None: the platform of the volume's VM (Linux without one)."""


class TemplateFromVolumeData(FlowData):
    """What the createTemplateFromVolume flows share."""

    image_uuid: str
    volume_uuid: str
    request: TemplateRequest
    platform: str
    storage_path: str
    """The primary storage directory of the volume's files."""
    install_path: str
    """The volume's active file (what its VM would read, with the chain below it)."""
    zone_uuid: str
    """The zone of the volume's primary storage: its local host reads the volume."""
    targets: list[dict[str, str]] = []
    """``{backupStorageUuid, name, zoneUuid, installPath}`` of each copy, once its row exists."""
    exported: dict[str, dict[str, Any]] = {}
    """Each copy's VOLUME_EXPORT answer by backup storage uuid."""
    _inventory: dict[str, Any] | None = PrivateAttr(default=None)


async def create_template(node: Any, volume_uuid: str, request: TemplateRequest) -> dict[str, Any]:
    """Make an image of the volume (the handlers of the two API messages); its inventory."""
    from core.image.plugin import image_inventory

    image_uuid = new_uuid()
    name_subject(image_uuid, request.name)  # the operation is about the new image
    async with volume_locked(node, volume_uuid) as site:
        check_exportable(site, request.media_type)
        platform = request.platform or (site.vm or {}).get("platform") or "Linux"
        data = TemplateFromVolumeData(
            image_uuid=image_uuid,
            volume_uuid=volume_uuid,
            request=request,
            platform=platform,
            storage_path=site.storage_path,
            install_path=site.volume["installPath"],
            zone_uuid=site.zone_uuid,
        ).bind(node)
        outcome = await node.chain(CHAIN).start(data)
        outcome.raise_for_error(
            f"cannot create image {request.name} from volume {site.volume['name']}"
        )
    if data._inventory is not None:
        return data._inventory
    return await node.db.run(lambda s: image_inventory(s, image_uuid))  # type: ignore[no-any-return]


def check_exportable(site: VolumeSite, media_type: str) -> None:
    """Refuse a volume that cannot be read as a whole now: a running VM writes it (stop it
    first), or it is not a Ready volume of the kind the image is made from."""
    volume = site.volume
    what = f"cannot create an image from volume {volume['name']}"
    if media_type == ROOT_TEMPLATE and volume["type"] != "Root":
        raise argerr(
            f"{what}: it is a {volume['type']} volume, not a root volume",
            "make a data volume's image with CreateDataVolumeTemplateFromVolume",
        )
    if volume["status"] != "Ready" or not volume["installPath"]:
        raise stateerr(f"{what}: it is {volume['status']}", "only a Ready volume is read")
    vm = site.vm
    if vm is not None and vm["state"] != "Stopped":
        raise stateerr(
            f"{what}: its VM {vm['name']} is {vm['state']}; stop it first (StopVmInstance)",
            "the volume is copied as it is on disk, which a VM that runs keeps changing"
            + ("" if volume["type"] == "Root" else "; or detach the volume from it"),
        )


class TemplateImageRowFlow(Flow):
    """The image's row (Creating) and its copies' rows, written down with them."""

    checkpointed = True

    async def run(self, data: TemplateFromVolumeData) -> None:  # type: ignore[override]
        request = data.request
        save = checkpointer()

        def create(session: Session) -> None:
            storages = _chosen_storages(session, request.backup_storage_uuids, data.zone_uuid)
            session.add(
                ImageVO(
                    uuid=data.image_uuid,
                    name=request.name,
                    description=request.description,
                    url=f"volume://{data.volume_uuid}",
                    status=CREATING,
                    format="qcow2",
                    media_type=request.media_type,
                    platform=data.platform,
                )
            )
            session.flush()
            targets = []
            for storage in storages:
                path = posixpath.join(storage.url, f"{data.image_uuid}.qcow2")
                session.add(
                    ImageBackupStorageRefVO(
                        image_uuid=data.image_uuid,
                        backup_storage_uuid=storage.uuid,
                        install_path=path,
                        status=CREATING,
                    )
                )
                targets.append(
                    {
                        "backupStorageUuid": storage.uuid,
                        "name": storage.name,
                        "zoneUuid": storage.zone_uuid,
                        "installPath": path,
                    }
                )
            session.flush()
            data.targets = targets
            save(session.connection())

        await data.node.db.run(create)

    async def rollback(self, data: TemplateFromVolumeData) -> None:  # type: ignore[override]
        # Found by the image's uuid, chosen before the chain: undoing twice is harmless.
        image_uuid = data.image_uuid

        await data.node.db.run(lambda s: forget_image(s, image_uuid))


class TemplateExportFlow(Flow):
    """Each copy exported by the host that reads the volume, with progress."""

    async def run(self, data: TemplateFromVolumeData) -> None:  # type: ignore[override]
        from core.host.plugin import HostPlugin
        from core.image.plugin import ImagePlugin

        node = data.node
        images = node.plugin(ImagePlugin)
        # The VM is Stopped (or there is none): the storage's local host reads the files.
        agent = await node.plugin(HostPlugin).local_agent(data.zone_uuid)
        for target in data.targets:
            storage_uuid = target["backupStorageUuid"]
            async with images.tracking_progress(data.image_uuid, storage_uuid) as task_uuid:
                try:
                    answer = await agent.send(
                        kvm.ExportVolumeCmd(
                            storage_path=data.storage_path,
                            install_path=data.install_path,
                            target_path=target["installPath"],
                            task_uuid=task_uuid,
                        ),
                        timeout=EXPORT_TIMEOUT,
                        cancellable=True,  # a cancelled export leaves nothing behind
                    )
                except OperationError as exc:
                    raise operr(
                        f"cannot export the volume to backup storage {target['name']}",
                        cause=exc.error,
                    ) from None
            data.exported = {**data.exported, storage_uuid: answer.model_dump()}

    async def rollback(self, data: TemplateFromVolumeData) -> None:  # type: ignore[override]
        from core.host.plugin import HostPlugin

        hosts = data.node.plugin(HostPlugin)
        # Every target, made or not: deleting a missing file succeeds, and the delete
        # also removes what an interrupted export left beside it.
        for target in data.targets:
            agent = await hosts.local_agent(target["zoneUuid"])
            await agent.send(kvm.DeleteFileCmd(path=target["installPath"]))


class TemplateReadyFlow(NoRollbackFlow):
    """The image and its copies Ready, as the host measured them."""

    async def run(self, data: TemplateFromVolumeData) -> None:  # type: ignore[override]
        from core.image.plugin import image_inventory

        exported = data.exported
        if len({e["md5sum"] for e in exported.values()}) > 1:
            raise operr(f"the copies of image {data.request.name} differ: the volume changed")

        def ready(session: Session) -> dict[str, Any]:
            image = session.get(ImageVO, data.image_uuid)
            assert image is not None  # made by TemplateImageRowFlow, under the volume's lock
            first = next(iter(exported.values()))
            image.format = first["format"]
            image.size = first["size"]
            image.actual_size = first["actual_size"]
            image.md5sum = first["md5sum"]
            image.status = READY
            for ref in session.scalars(
                select(ImageBackupStorageRefVO).where(
                    ImageBackupStorageRefVO.image_uuid == data.image_uuid
                )
            ):
                ref.install_path = exported[ref.backup_storage_uuid]["install_path"]
                ref.status = READY
            session.flush()
            return image_inventory(session, data.image_uuid)

        data._inventory = await data.node.db.run(ready)


def _chosen_storages(session: Session, uuids: list[str], zone_uuid: str) -> list[BackupStorageVO]:
    """The backup storages named (each usable and in the volume's zone), or every usable
    one of the volume's zone."""
    from core.image.plugin import chosen_storages

    if uuids:
        storages = chosen_storages(session, uuids)
        elsewhere = [s.name for s in storages if s.zone_uuid != zone_uuid]
        if elsewhere:
            raise operr(
                f"backup storage {', '.join(elsewhere)} is not in the zone of the volume's "
                "primary storage; its host cannot write there"
            )
        return storages
    every = list(
        session.scalars(
            select(BackupStorageVO)
            .where(BackupStorageVO.zone_uuid == zone_uuid)
            .order_by(BackupStorageVO.create_date)
        )
    )
    usable = [s for s in every if s.state == "Enabled" and s.status == "Connected"]
    if not usable:
        raise operr(
            "no backup storage of the volume's zone can take the image"
            + (
                ": " + ", ".join(f"{s.name} is {s.state} and {s.status}" for s in every)
                if every
                else "; add one first"
            )
        )
    return usable


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


DEFAULT_FLOWS = [_path(c) for c in (TemplateImageRowFlow, TemplateExportFlow, TemplateReadyFlow)]

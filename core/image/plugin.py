"""Images: added to backup storage by the agent, deleted as image.deletionPolicy says.

``AddImage`` records the image (Downloading, so nothing may use it yet) with
one reference per backup storage, then has the local agent of each storage's
zone fetch the URL to ``<storage dir>/<imageUuid>.<ext>`` (``IMAGE_DOWNLOAD``:
the agent checks the checksum and the format with ``qemu-img``).  The agent's
``REPORT_PROGRESS`` reports are relayed as ``/image/download/progress`` events.
When every copy is in place the image is Ready.  Whatever fails (or if the call
is cancelled: the downloads are then cancelled on the agents, ``TASK_CANCEL``), the
copies already made are deleted, then the records and tags: nothing is left behind.
A download that receives nothing for ``image.download.stallTimeout`` seconds fails.

Images are also made from volumes (``CreateRootVolumeTemplateFromRootVolume``,
``CreateDataVolumeTemplateFromVolume``): core.image.from_volume, whose exports report
their progress through the same events.

``DeleteImage`` follows ``image.deletionPolicy``: Direct expunges at once;
Delay and Never keep the image Deleted (unusable, recoverable with
``RecoverImage``) until ``ExpungeImage`` deletes its files and records.  The
periodic expunger of Delay images (after ``image.expungePeriod``) is not there
yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from contracts import events as ev
from contracts import kvm
from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.config.plugin import GlobalConfigPlugin
from core.host.plugin import HostPlugin
from core.image import from_volume, global_config
from core.image.api import (
    DOWNLOAD_TIMEOUT,
    AddImage,
    CreateDataVolumeTemplateFromVolume,
    CreateRootVolumeTemplateFromRootVolume,
    DeleteImage,
    ExpungeImage,
    QueryImage,
    RecoverImage,
)
from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.image.rows import forget_image
from core.kernel.db import InTransaction, new_uuid
from core.kernel.deletion import expunge_expired
from core.kernel.errors import ErrorCode, OperationError, SysErrors, not_found, operr, stateerr
from core.kernel.extensions import Component, Plugin
from core.kernel.periodic import PeriodicTask
from core.kernel.rest import AgentClient
from core.kernel.service import Service, handles
from core.storage.models import BackupStorageVO
from core.tag.plugin import TagPlugin, delete_all_tags

log = logging.getLogger(__name__)

PROGRESS_EVENT = ev.ImageDownloadProgress.PATH
"""Data: {imageUuid, backupStorageUuid, stage, progress, total} (bytes; total 0 if unknown)."""
REPORT_GRACE = 2.0
"""Seconds a finished download waits for the agent's last progress report (reports and
the answer travel on different connections, so the answer may overtake them)."""

ROLLBACK_WAIT = 30.0
"""Seconds the image service's stop waits for the rollbacks of cancelled AddImage calls."""

DOWNLOADING = "Downloading"
CREATING = from_volume.CREATING
"""An image being made from a volume (core.image.from_volume)."""
READY = "Ready"
DELETED = "Deleted"
ROOT_VOLUME_FORMATS = ("qcow2", "raw")


@dataclass
class _Progress:
    """One download the agent reports on, by the task uuid given in IMAGE_DOWNLOAD."""

    image_uuid: str
    backup_storage_uuid: str
    progress: int = 0
    total: int = -1
    """-1 until the first report; 0 when the size is unknown (no Content-Length)."""
    complete: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class _Target:
    """One copy of an image: where it goes and which zone's agent makes it."""

    backup_storage_uuid: str
    backup_storage_name: str
    zone_uuid: str
    install_path: str


class ImagePlugin(Plugin, GlobalConfigProvider, Service, Component):
    implements = (GlobalConfigProvider, Service, Component)
    service_id = "image"
    queries = (QueryImage,)

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self._expunger = PeriodicTask(
            node,
            "image-expunger",
            global_config.CATEGORY,
            global_config.EXPUNGE_INTERVAL.name,
            self.expunge_expired,
        )
        self._progress: dict[str, _Progress] = {}
        self._rollbacks: set[asyncio.Task[list[str]]] = set()
        node.rest.on_report(kvm.REPORT_PROGRESS, self._on_progress)
        node.declare_chain(
            from_volume.CHAIN, from_volume.DEFAULT_FLOWS, from_volume.TemplateFromVolumeData
        )

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    # -- AddImage ---------------------------------------------------------------------------

    @handles(AddImage)
    async def add(self, msg: AddImage) -> dict[str, Any]:
        tags = self.node.plugin(TagPlugin)
        extension = msg.format or "img"

        def create(session: Session) -> tuple[str, list[_Target]]:
            storages = _chosen_storages(session, msg.backup_storage_uuids)
            image = ImageVO(
                name=msg.name,
                description=msg.description,
                url=msg.url,
                status=DOWNLOADING,
                media_type=msg.media_type,
                platform=msg.platform,
            )
            session.add(image)
            session.flush()
            targets = []
            for storage in storages:
                path = posixpath.join(storage.url, f"{image.uuid}.{extension}")
                session.add(
                    ImageBackupStorageRefVO(
                        image_uuid=image.uuid,
                        backup_storage_uuid=storage.uuid,
                        install_path=path,
                        status=DOWNLOADING,
                    )
                )
                targets.append(_Target(storage.uuid, storage.name, storage.zone_uuid, path))
            session.flush()
            tags.create_tags_from_message(session, msg, ImageVO.resource_type, image.uuid)
            return image.uuid, targets

        image_uuid, targets = await self.node.db.run(create)
        dispatched: list[_Target] = []
        refused: set[str] = set()
        downloads: list[asyncio.Task[kvm.DownloadImageRsp]] = []
        try:
            hosts = self.node.plugin(HostPlugin)
            agents = {t.zone_uuid: await hosts.local_agent(t.zone_uuid) for t in targets}
            for target in targets:
                dispatched.append(target)
                downloads.append(
                    asyncio.create_task(
                        self._download(agents[target.zone_uuid], msg, image_uuid, target, refused),
                        name=f"image-download-{image_uuid}-{target.backup_storage_uuid}",
                    )
                )
            # Every download runs to its end, failed or not, unless this call is cancelled:
            # then each is cancelled on its agent (which removes its partial file).
            await asyncio.wait(downloads)
            answers = _answers(msg, targets, downloads)
            return await self.node.db.run(lambda s: _ready(s, image_uuid, answers))
        except BaseException as exc:
            for download in downloads:
                download.cancel()
            rollback = asyncio.create_task(
                self._rollback(image_uuid, dispatched, refused, downloads),
                name=f"image-rollback-{image_uuid}",
            )
            self._rollbacks.add(rollback)
            rollback.add_done_callback(self._rollbacks.discard)
            leftovers = await asyncio.shield(rollback)
            if not isinstance(exc, OperationError):
                raise
            details = f"could not remove {', '.join(leftovers)}" if leftovers else ""
            raise OperationError(
                ErrorCode(
                    SysErrors.OPERATION_ERROR,
                    f"cannot add image {msg.name} from {msg.url}",
                    details,
                    cause=exc.error,
                )
            ) from None

    async def _download(
        self,
        agent: AgentClient,
        msg: AddImage,
        image_uuid: str,
        target: _Target,
        refused: set[str],
    ) -> kvm.DownloadImageRsp:
        """One copy; its storage's uuid goes into ``refused`` if the agent answered a failure
        (then, by the protocol, it left nothing behind)."""
        stall_timeout = self.node.plugin(GlobalConfigPlugin).value(
            global_config.CATEGORY, global_config.DOWNLOAD_STALL_TIMEOUT.name
        )
        async with self.tracking_progress(image_uuid, target.backup_storage_uuid) as task_uuid:
            try:
                return await agent.send(
                    kvm.DownloadImageCmd(
                        url=msg.url,
                        install_path=target.install_path,
                        checksum=msg.checksum or "",
                        task_uuid=task_uuid,
                        stall_timeout=stall_timeout,
                    ),
                    timeout=DOWNLOAD_TIMEOUT,
                    cancellable=True,
                )
            except OperationError as exc:
                if _answered_failure(exc.error):
                    refused.add(target.backup_storage_uuid)
                raise operr(
                    f"cannot download the image to backup storage {target.backup_storage_name}",
                    cause=exc.error,
                ) from None

    @contextlib.asynccontextmanager
    async def tracking_progress(
        self, image_uuid: str, backup_storage_uuid: str
    ) -> AsyncIterator[str]:
        """A task uuid for a host command that makes a copy of an image (a download, an
        export) with REPORT_PROGRESS: its reports are relayed as ``/image/download/progress``
        events while the block runs; on a normal exit the last report is waited for a
        little (REPORT_GRACE)."""
        task_uuid = new_uuid()
        progress = self._progress[task_uuid] = _Progress(image_uuid, backup_storage_uuid)
        try:
            yield task_uuid
            if progress.total != 0 and not progress.complete.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(progress.complete.wait(), REPORT_GRACE)
        finally:
            del self._progress[task_uuid]

    async def _on_progress(self, body: dict[str, Any]) -> None:
        """REPORT_PROGRESS from an agent: relayed as an event if it is one of our downloads."""
        report = kvm.ProgressReport.model_validate(body)
        progress = self._progress.get(report.task_uuid)
        if progress is None:
            return  # not an image download, or one that has ended
        progress.progress = max(report.progress, 0)
        progress.total = max(report.total, 0)
        event = ev.ImageDownloadProgress(
            image_uuid=progress.image_uuid,
            backup_storage_uuid=progress.backup_storage_uuid,
            stage=report.stage,
            progress=progress.progress,
            total=progress.total,
        )
        self.node.events.publish(event.PATH, event.to_json())
        if 0 < progress.total <= progress.progress:
            progress.complete.set()

    async def _rollback(
        self,
        image_uuid: str,
        dispatched: Sequence[_Target],
        refused: set[str],
        downloads: Sequence[asyncio.Task[kvm.DownloadImageRsp]],
    ) -> list[str]:
        """Undo an AddImage: copies, then records and tags.  The paths that may remain.

        ``refused``: the storages whose agent answered the download with a failure, so
        left nothing (filled in by the downloads, hence read only once they all ended).
        """
        if downloads:
            await asyncio.wait(downloads)  # a copy may still be on its way: let it land
            for task in downloads:  # their errors are reported by the caller, if at all
                if not task.cancelled():
                    task.exception()
        # A copy whose outcome is unknown (succeeded, timed out, cancelled) is deleted: its
        # path holds the new image's uuid, so a file there can only be this download's.
        leftovers = await self._delete_files(
            [t for t in dispatched if t.backup_storage_uuid not in refused]
        )
        for target, error in leftovers:
            log.warning(
                "image %s: cannot delete %s after a failed AddImage: %s",
                image_uuid,
                target.install_path,
                error,
            )

        await self.node.db.run(lambda s: forget_image(s, image_uuid))
        return [target.install_path for target, _ in leftovers]

    async def _delete_files(self, targets: Sequence[_Target]) -> list[tuple[_Target, ErrorCode]]:
        """FILE_DELETE every target through its zone's local agent; the ones that failed."""
        hosts = self.node.plugin(HostPlugin)
        failed = []
        for target in targets:
            try:
                agent = await hosts.local_agent(target.zone_uuid)
                await agent.send(kvm.DeleteFileCmd(path=target.install_path))
            except OperationError as exc:
                failed.append((target, exc.error))
        return failed

    # -- images from volumes (core.image.from_volume) ------------------------------------------

    @handles(CreateRootVolumeTemplateFromRootVolume)
    async def create_root_template(
        self, msg: CreateRootVolumeTemplateFromRootVolume
    ) -> dict[str, Any]:
        return await from_volume.create_template(
            self.node,
            msg.root_volume_uuid,
            from_volume.TemplateRequest(
                name=msg.name,
                description=msg.description,
                backup_storage_uuids=list(msg.backup_storage_uuids),
                media_type=from_volume.ROOT_TEMPLATE,
                platform=msg.platform,
            ),
        )

    @handles(CreateDataVolumeTemplateFromVolume)
    async def create_data_template(self, msg: CreateDataVolumeTemplateFromVolume) -> dict[str, Any]:
        return await from_volume.create_template(
            self.node,
            msg.volume_uuid,
            from_volume.TemplateRequest(
                name=msg.name,
                description=msg.description,
                backup_storage_uuids=list(msg.backup_storage_uuids),
                media_type=from_volume.DATA_TEMPLATE,
            ),
        )

    # -- delete, recover, expunge ---------------------------------------------------------------

    @handles(DeleteImage)
    async def delete(self, msg: DeleteImage) -> None:
        policy = self.node.plugin(GlobalConfigPlugin).value(
            global_config.CATEGORY, global_config.DELETION_POLICY.name
        )

        def mark_deleted(session: Session) -> None:
            image = _image(session, msg.uuid)
            if image.status == DOWNLOADING:
                raise stateerr(
                    f"cannot delete image {image.name}: it is being downloaded",
                    "a failed download removes the image by itself",
                )
            if image.status == CREATING:
                raise stateerr(
                    f"cannot delete image {image.name}: it is being made from a volume",
                    "a failed export removes the image by itself",
                )
            if image.status != DELETED:
                _set_status(session, image, DELETED)

        await self.node.db.run(mark_deleted)
        if policy == "Direct":
            await self._expunge(msg.uuid)

    @handles(RecoverImage)
    async def recover(self, msg: RecoverImage) -> dict[str, Any]:
        def recover(session: Session) -> dict[str, Any]:
            image = _image(session, msg.uuid)
            if image.status != DELETED:
                raise stateerr(
                    f"cannot recover image {image.name}: it is {image.status}",
                    "only a Deleted image can be recovered",
                )
            _set_status(session, image, READY)
            return _inventory(session, image)

        return await self.node.db.run(recover)

    async def start(self) -> None:
        self._expunger.start()

    async def stop(self) -> None:
        await self._expunger.stop()
        if self._rollbacks:  # a cancelled AddImage still removing what it made
            await asyncio.wait(self._rollbacks, timeout=ROLLBACK_WAIT)

    async def expunge_expired(self) -> None:
        """With the Delay policy, expunge images Deleted longer than image.expungePeriod ago."""
        await expunge_expired(
            self.node, global_config.CATEGORY, ImageVO, "status", DELETED, "ExpungeImage"
        )

    @handles(ExpungeImage)
    async def expunge(self, msg: ExpungeImage) -> None:
        def check(session: Session) -> None:
            image = _image(session, msg.uuid)
            if image.status != DELETED:
                raise stateerr(
                    f"cannot expunge image {image.name}: it is {image.status}",
                    "only a Deleted image can be expunged; delete it first (DeleteImage)",
                )

        await self.node.db.run(check)
        await self._expunge(msg.uuid)

    async def _expunge(self, image_uuid: str) -> None:
        """Delete a Deleted image's files on every backup storage, then its records and tags.

        A file that cannot be deleted keeps its reference (and the image): ExpungeImage
        can be tried again.
        """

        def targets(session: Session) -> tuple[str, list[_Target]]:
            image = _image(session, image_uuid)
            rows = session.execute(
                select(ImageBackupStorageRefVO, BackupStorageVO)
                .join(
                    BackupStorageVO,
                    BackupStorageVO.uuid == ImageBackupStorageRefVO.backup_storage_uuid,
                )
                .where(ImageBackupStorageRefVO.image_uuid == image_uuid)
            ).all()
            return image.name, [
                _Target(bs.uuid, bs.name, bs.zone_uuid, ref.install_path) for ref, bs in rows
            ]

        name, copies = await self.node.db.run(targets)
        failed = await self._delete_files(copies)
        kept = {target.backup_storage_uuid for target, _ in failed}

        def forget(session: Session) -> None:
            for ref in session.scalars(
                select(ImageBackupStorageRefVO).where(
                    ImageBackupStorageRefVO.image_uuid == image_uuid
                )
            ):
                if ref.backup_storage_uuid not in kept:
                    session.delete(ref)
            session.flush()
            if not kept:
                image = session.get(ImageVO, image_uuid)
                if image is not None:
                    session.delete(image)
                delete_all_tags(session, [image_uuid])

        await self.node.db.run(forget)
        if failed:
            error = failed[0][1]
            raise operr(
                f"cannot expunge image {name}: {len(failed)} of its files could not be deleted",
                ", ".join(t.install_path for t, _ in failed),
                cause=error,
            )


# -- for the services that use images ------------------------------------------------------------


_images = ImageVO.__table__
_USABLE = select(
    _images.c.uuid,
    _images.c.name,
    _images.c.status,
    _images.c.state,
    _images.c.platform,
    _images.c.size,
    _images.c.media_type,
).where(_images.c.uuid == bindparam("image"))


def ready_image(session: InTransaction, image_uuid: str) -> Row[*tuple[Any, ...]]:
    """The image (uuid, name, status, state, platform, size, media_type) if it can be
    used, e.g. for a root volume; a clear refusal otherwise.

    A Downloading image is not complete yet and a Deleted one is on its way out.
    """
    image = session.execute(_USABLE, {"image": image_uuid}).first()
    if image is None:
        raise not_found(ImageVO.resource_type, image_uuid)
    if image.status != READY:
        raise stateerr(
            f"image {image.name} cannot be used: it is {image.status}",
            "only a Ready image can be used",
        )
    if image.state != "Enabled":
        raise stateerr(f"image {image.name} cannot be used: it is {image.state}")
    return image


def ready_copies(session: Session, image_uuid: str) -> list[ImageBackupStorageRefVO]:
    """The Ready copies of an image on backup storage."""
    return list(
        session.scalars(
            select(ImageBackupStorageRefVO).where(
                ImageBackupStorageRefVO.image_uuid == image_uuid,
                ImageBackupStorageRefVO.status == READY,
            )
        )
    )


def image_inventory(session: Session, image_uuid: str) -> dict[str, Any]:
    """The inventory of an image, with its copies."""
    return _inventory(session, _image(session, image_uuid))


def chosen_storages(session: Session, uuids: Sequence[str]) -> list[BackupStorageVO]:
    """The backup storages named, each checked usable, or every usable one."""
    return _chosen_storages(session, uuids)


# -- helpers --------------------------------------------------------------------------------------


def _chosen_storages(session: Session, uuids: Sequence[str]) -> list[BackupStorageVO]:
    """The backup storages named (each checked), or every usable one."""
    if uuids:
        storages = []
        for uuid in dict.fromkeys(uuids):
            storage = session.get(BackupStorageVO, uuid)
            if storage is None:
                raise not_found(BackupStorageVO.resource_type, uuid)
            if storage.state != "Enabled" or storage.status != "Connected":
                raise operr(
                    f"backup storage {storage.name} cannot take images: it is "
                    f"{storage.state} and {storage.status}"
                )
            storages.append(storage)
        return storages
    every = list(session.scalars(select(BackupStorageVO).order_by(BackupStorageVO.create_date)))
    if not every:
        raise operr("there is no backup storage to add the image to; add one first")
    usable = [s for s in every if s.state == "Enabled" and s.status == "Connected"]
    if not usable:
        raise operr(
            "no backup storage can take images: "
            + ", ".join(f"{s.name} is {s.state} and {s.status}" for s in every)
        )
    return usable


def _answers(
    msg: AddImage,
    targets: Sequence[_Target],
    downloads: Sequence[asyncio.Task[kvm.DownloadImageRsp]],
) -> dict[str, kvm.DownloadImageRsp]:
    """Each copy's IMAGE_DOWNLOAD answer by backup storage; raise the first failure."""
    answers: dict[str, kvm.DownloadImageRsp] = {}
    for target, task in zip(targets, downloads, strict=True):
        if task.cancelled():
            raise operr(
                f"the download to backup storage {target.backup_storage_name} was cancelled"
            )
        answers[target.backup_storage_uuid] = task.result()
    first = next(iter(answers.values()))
    found = first.format
    if msg.format and found != msg.format:
        raise _wrong_format(f"{msg.url} is a {found} image, not {msg.format} as expected")
    if msg.media_type == "ISO" and found != "iso":
        raise _wrong_format(f"{msg.url} is a {found} image; an ISO must be an iso image")
    if msg.media_type == "RootVolumeTemplate" and found not in ROOT_VOLUME_FORMATS:
        raise _wrong_format(
            f"{msg.url} is an {found} image; a RootVolumeTemplate must be "
            f"{' or '.join(ROOT_VOLUME_FORMATS)} (add an iso with mediaType ISO)"
        )
    if len({a.md5sum for a in answers.values()}) > 1:
        raise operr(f"{msg.url} changed while it was downloaded: the copies differ")
    return answers


def _wrong_format(details: str) -> OperationError:
    return operr("the image is not in the expected format", details)


def _ready(
    session: Session, image_uuid: str, answers: dict[str, kvm.DownloadImageRsp]
) -> dict[str, Any]:
    image = _image(session, image_uuid)
    first = next(iter(answers.values()))
    image.format = first.format
    image.size = first.size
    image.actual_size = first.actual_size
    image.md5sum = first.md5sum
    image.status = READY
    for ref in _refs(session, image_uuid):
        ref.install_path = answers[ref.backup_storage_uuid].install_path
        ref.status = READY
    session.flush()
    return _inventory(session, image)


def _image(session: Session, uuid: str) -> ImageVO:
    image = session.get(ImageVO, uuid)
    if image is None:
        raise not_found(ImageVO.resource_type, uuid)
    return image


def _refs(session: Session, image_uuid: str) -> list[ImageBackupStorageRefVO]:
    return list(
        session.scalars(
            select(ImageBackupStorageRefVO)
            .where(ImageBackupStorageRefVO.image_uuid == image_uuid)
            .order_by(ImageBackupStorageRefVO.backup_storage_uuid)
        )
    )


def _set_status(session: Session, image: ImageVO, status: str) -> None:
    """The image's status and its copies' (Deleted copies are Deleted too, as in ZStack)."""
    image.status = status
    for ref in _refs(session, image.uuid):
        ref.status = status
    session.flush()


def _inventory(session: Session, image: ImageVO) -> dict[str, Any]:
    """The image inventory with its copies, as ZStack's ImageInventory.backupStorageRefs."""
    return image.to_inventory() | {
        "backupStorageRefs": [
            {
                "backupStorageUuid": ref.backup_storage_uuid,
                "installPath": ref.install_path,
                "status": ref.status,
            }
            for ref in _refs(session, image.uuid)
        ]
    }


def _answered_failure(error: ErrorCode) -> bool:
    """Whether an AgentClient error is the agent's own failure answer (``success: false``),
    rather than no answer (unreachable, timed out) whose outcome is unknown."""
    return error.code == SysErrors.OPERATION_ERROR and error.cause is None

"""Volumes, images and storage directories.  A volume creation or download waits for one
to the same target still running (a repeat whose answer was lost), then finds its file.
The commands on a volume's chain (snapshot, rebase, resize, export) hold the lock of its
file, and of the VM disk it may be live in, so a repeat waits for the first."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Any

from agent.backend import VolumeOp
from agent.context import HostAgentContext
from agent.fields import Fields, absolute_path
from agentkit.errors import ArgumentError
from agentkit.locks import KeyedLocks
from agentkit.parse import parse_request
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts import kvm
from contracts.base import Ack


class StorageCommands(AgentPlugin[HostAgentContext]):
    def __init__(self, ctx: HostAgentContext) -> None:
        super().__init__(ctx)
        self.file_locks = KeyedLocks()
        """Volume creations and downloads, by target path."""

    def commands(self, registry: CommandRegistry) -> None:
        registry.add(kvm.VOLUME_CREATE, self.volume_create)
        registry.add(kvm.VOLUME_DELETE, self.volume_delete)
        registry.add(kvm.IMAGE_DOWNLOAD, self.image_download, is_async=True)
        registry.add(kvm.IMAGE_INFO, self.image_info)
        registry.add(kvm.FILE_DELETE, self.file_delete)
        registry.add(kvm.STORAGE_INIT, self.storage_init)
        registry.add(kvm.VOLUME_SNAPSHOT, self.volume_snapshot)
        registry.add(kvm.VOLUME_REBASE, self.volume_rebase)
        registry.add(kvm.VOLUME_RESIZE, self.volume_resize)
        registry.add(kvm.VOLUME_CHAIN, self.volume_chain)
        registry.add(kvm.VOLUME_EXPORT, self.volume_export, is_async=True)

    async def volume_create(
        self, body: dict[str, Any], _ctx: CommandContext
    ) -> kvm.CreateVolumeRsp:
        f = Fields(body)
        install_path = absolute_path(f, "installPath")
        backing_file = absolute_path(f, "backingFile", optional=True)
        size, fmt = f.integer("size", 0), f.text("format", "qcow2")
        async with self.file_locks.hold(install_path):
            volume = await self.ctx.backend.volume_create(install_path, backing_file, size, fmt)
        return kvm.CreateVolumeRsp(
            install_path=volume.install_path, size=volume.size, actual_size=volume.actual_size
        )

    async def volume_delete(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        f = Fields(body)
        install_path = absolute_path(f, "installPath")
        storage_path = absolute_path(f, "storagePath", optional=True)
        keep = tuple(_absolute(p, "keepIfBacking") for p in f.texts("keepIfBacking"))
        async with self.file_locks.hold(install_path):
            await self.ctx.backend.volume_delete(install_path, storage_path, keep)
        return Ack()

    # -- chains ----------------------------------------------------------------------
    async def volume_snapshot(
        self, body: dict[str, Any], _ctx: CommandContext
    ) -> kvm.TakeSnapshotRsp:
        cmd = parse_request(kvm.TakeSnapshotCmd, body)
        op = _volume_op(cmd)
        new_install_path = _absolute(cmd.new_install_path, "newInstallPath")
        async with self._holding(op):
            made = await self.ctx.backend.volume_snapshot(op, new_install_path, cmd.full)
        return kvm.TakeSnapshotRsp(
            install_path=made.install_path,
            new_install_path=made.new_install_path,
            size=made.size,
            actual_size=made.actual_size,
        )

    async def volume_rebase(
        self, body: dict[str, Any], _ctx: CommandContext
    ) -> kvm.RebaseVolumeRsp:
        cmd = parse_request(kvm.RebaseVolumeCmd, body)
        op = _volume_op(cmd)
        backing = _absolute(cmd.backing_file, "backingFile") if cmd.backing_file else ""
        async with self._holding(op):
            backing = await self.ctx.backend.volume_rebase(op, backing)
        return kvm.RebaseVolumeRsp(install_path=op.install_path, backing_file=backing)

    async def volume_resize(
        self, body: dict[str, Any], _ctx: CommandContext
    ) -> kvm.ResizeVolumeRsp:
        cmd = parse_request(kvm.ResizeVolumeCmd, body)
        op = _volume_op(cmd)
        async with self._holding(op):
            size = await self.ctx.backend.volume_resize(op, cmd.size)
        return kvm.ResizeVolumeRsp(size=size)

    async def volume_chain(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.VolumeChainRsp:
        cmd = parse_request(kvm.VolumeChainCmd, body)
        storage_path = _absolute(cmd.storage_path, "storagePath")
        paths = [_absolute(p, "installPaths") for p in cmd.install_paths]
        chains, missing = await self.ctx.backend.volume_chain(storage_path, paths)
        return kvm.VolumeChainRsp(chains=chains, missing=missing)

    async def volume_export(self, body: dict[str, Any], ctx: CommandContext) -> kvm.ExportVolumeRsp:
        cmd = parse_request(kvm.ExportVolumeCmd, body)
        task_uuid = cmd.task_uuid or ctx.task_uuid
        storage_path = _absolute(cmd.storage_path, "storagePath")
        install_path = _absolute(cmd.install_path, "installPath")
        target_path = _absolute(cmd.target_path, "targetPath")

        def progress(done: int, total: int) -> None:
            self.ctx.reporter.progress(task_uuid, "export", done, total)

        async with self.file_locks.hold(target_path):
            result = await self.ctx.backend.volume_export(
                storage_path, install_path, target_path, progress
            )
        return kvm.ExportVolumeRsp(
            install_path=result.install_path,
            format=result.format,
            size=result.size,
            actual_size=result.actual_size,
            md5sum=result.md5sum,
        )

    @contextlib.asynccontextmanager
    async def _holding(self, op: VolumeOp) -> AsyncIterator[None]:
        """The locks of the volume's file and, if it names one, of the VM's disk."""
        async with contextlib.AsyncExitStack() as stack:
            if op.vm_uuid:
                await stack.enter_async_context(self.file_locks.hold(f"{op.vm_uuid}/{op.target}"))
            await stack.enter_async_context(self.file_locks.hold(op.install_path))
            yield

    async def image_download(
        self, body: dict[str, Any], ctx: CommandContext
    ) -> kvm.DownloadImageRsp:
        f = Fields(body)
        task_uuid = f.text("taskUuid", ctx.task_uuid)

        def progress(done: int, total: int) -> None:
            self.ctx.reporter.progress(task_uuid, "download", done, total)

        stall_timeout = f.number("stallTimeout", kvm.DEFAULT_STALL_TIMEOUT)
        if stall_timeout == 0:
            raise ArgumentError("field 'stallTimeout' must be a number > 0")
        url, install_path = f.text("url"), absolute_path(f, "installPath")
        checksum = f.text("checksum", "")
        async with self.file_locks.hold(install_path):
            result = await self.ctx.backend.image_download(
                url, install_path, checksum, progress, stall_timeout
            )
        return kvm.DownloadImageRsp(
            install_path=result.install_path,
            format=result.format,
            size=result.size,
            actual_size=result.actual_size,
            md5sum=result.md5sum,
        )

    async def image_info(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.ImageInfoRsp:
        info = await self.ctx.backend.image_info(absolute_path(Fields(body), "installPath"))
        return kvm.ImageInfoRsp(format=info.format, size=info.size, actual_size=info.actual_size)

    async def file_delete(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        await self.ctx.backend.file_delete(absolute_path(Fields(body), "path"))
        return Ack()

    async def storage_init(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.InitStorageRsp:
        path = absolute_path(Fields(body), "path")
        capacity = await self.ctx.backend.storage_init(path)
        return kvm.InitStorageRsp(
            path=path, total_capacity=capacity.total, available_capacity=capacity.available
        )


def _absolute(value: str, field: str) -> str:
    """An absolute path that does not climb with ``..``; an ArgumentError naming ``field``."""
    if not value.startswith("/"):
        raise ArgumentError(f"field {field!r} must be an absolute path: {value!r}")
    if ".." in PurePosixPath(value).parts:
        raise ArgumentError(f"field {field!r} must not climb with '..': {value!r}")
    return value


def _volume_op(cmd: kvm.VolumeFileOp) -> VolumeOp:
    if cmd.vm_uuid:
        Fields({"vmUuid": cmd.vm_uuid}).vm_uuid()  # the same check as every VM command
    return VolumeOp(
        storage_path=_absolute(cmd.storage_path, "storagePath"),
        install_path=_absolute(cmd.install_path, "installPath"),
        vm_uuid=cmd.vm_uuid,
        device_id=cmd.device_id,
    )

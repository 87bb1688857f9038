"""Volumes, images and storage directories.  A volume creation or download waits for one
to the same target still running (a repeat whose answer was lost), then finds its file."""

from __future__ import annotations

from typing import Any

from agent.context import HostAgentContext
from agent.fields import Fields, absolute_path
from agentkit.errors import ArgumentError
from agentkit.locks import KeyedLocks
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
        await self.ctx.backend.volume_delete(absolute_path(Fields(body), "installPath"))
        return Ack()

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

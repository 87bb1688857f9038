"""The volume and image half of a backend: real files through ``qemu-img`` (agent.images).

Shared by the libvirt backend and the simulator, so both create real overlays and
download real images.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from agent import images
from agent.backend import (
    DownloadResult,
    ImageInfo,
    ProgressCallback,
    StorageCapacity,
    VolumeInfo,
)
from agent.errors import ArgumentError
from agent.protocol import DEFAULT_STALL_TIMEOUT


class LocalFileStorage:
    async def volume_create(
        self, install_path: str, backing_file: str, size: int, fmt: str = "qcow2"
    ) -> VolumeInfo:
        return await images.create_volume(install_path, backing_file, size, fmt)

    async def volume_delete(self, install_path: str) -> None:
        await images.delete_file(install_path)

    async def image_download(
        self,
        url: str,
        install_path: str,
        checksum: str,
        progress_cb: ProgressCallback | None = None,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    ) -> DownloadResult:
        return await images.download(url, install_path, checksum, progress_cb, stall_timeout)

    async def image_info(self, install_path: str) -> ImageInfo:
        return await images.info(install_path)

    async def file_delete(self, path: str) -> None:
        await images.delete_file(path)

    async def storage_init(self, path: str) -> StorageCapacity:
        return await asyncio.to_thread(_storage_init, Path(path))


def _storage_init(path: Path) -> StorageCapacity:
    if path.exists() and not path.is_dir():
        raise ArgumentError(f"{path} exists and is not a directory")
    # 0711: QEMU (libvirt-qemu) must traverse it to the disks inside; nobody may list it.
    images.make_directories(path)
    path.chmod(images.DIRECTORY_MODE)
    stat = os.statvfs(path)
    return StorageCapacity(stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize)

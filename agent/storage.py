"""The volume and image half of a backend: real files through ``qemu-img`` (agent.images).

Shared by the libvirt backend and the simulator, so both create real overlays and
download real images.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
from pathlib import Path

from agent import images
from agent.backend import (
    DownloadResult,
    ImageInfo,
    ProgressCallback,
    StorageCapacity,
    VolumeInfo,
)
from agentkit.errors import ArgumentError
from contracts.kvm import DEFAULT_STALL_TIMEOUT

VM_VOLUME_DIRECTORY = re.compile(r"vm-[0-9a-f]{32}")
"""The directory of one VM's volumes on primary storage (the core's layout)."""


class LocalFileStorage:
    async def volume_create(
        self, install_path: str, backing_file: str, size: int, fmt: str = "qcow2"
    ) -> VolumeInfo:
        return await images.create_volume(install_path, backing_file, size, fmt)

    async def volume_delete(self, install_path: str) -> None:
        await images.delete_file(install_path)
        await asyncio.to_thread(remove_empty_vm_directory, Path(install_path).parent)

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


def remove_empty_vm_directory(directory: Path) -> None:
    """A VM's volume directory goes with its last volume; any other directory, a symlink,
    or one that still holds something stays."""
    if not VM_VOLUME_DIRECTORY.fullmatch(directory.name) or directory.is_symlink():
        return
    try:
        directory.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


async def delete_console_log(vm_uuid: str, path: str) -> None:
    """A VM's console log and virtlogd's rotated copies (``<log>.0``, ``<log>.1``…)."""
    log = Path(path)
    if log.name != f"{vm_uuid}.log":
        raise ArgumentError(f"{path} is not the console log of VM {vm_uuid} ({vm_uuid}.log)")
    for copy in await asyncio.to_thread(_rotated_copies, log):
        await images.delete_file(str(copy))
    await images.delete_file(path)


def _rotated_copies(log: Path) -> list[Path]:
    rotated = re.compile(re.escape(log.name) + r"\.\d+")
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        return [log.parent / name for name in os.listdir(log.parent) if rotated.fullmatch(name)]
    return []

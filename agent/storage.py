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
from dataclasses import dataclass
from pathlib import Path

from agent import images, volume_chain
from agent.backend import (
    DownloadResult,
    ImageInfo,
    ProgressCallback,
    SnapshotResult,
    StorageCapacity,
    VolumeInfo,
    VolumeOp,
)
from agentkit.errors import AgentError, ArgumentError
from contracts.kvm import DEFAULT_STALL_TIMEOUT

VOLUME_DIRECTORY = re.compile(r"(vm|vol)-[0-9a-f]{32}")
"""The directory of one VM's root volume files (``vm-<vmUuid>``) or of one data volume's
files (``vol-<volumeUuid>``) on primary storage (the core's layout)."""


@dataclass(frozen=True)
class LiveDisk:
    """A disk of a running (or paused) domain of the project."""

    vm_uuid: str
    target: str
    """``vda``, ``vdb``..."""
    chain: tuple[str, ...]
    """Its active file first, then its backing files, as QEMU has them open."""


class LocalFileStorage:
    """Volumes and images as files, with ``qemu-img``: the offline half of every volume
    command.  A backend that runs domains overrides :meth:`_running_disks` (the files its
    running domains hold, which an offline operation must not touch) and does the live
    half itself."""

    async def _running_disks(self) -> list[LiveDisk]:
        return []

    async def _refuse_running(self, path: str, doing: str) -> None:
        """An AgentError if a running domain's disk has ``path`` in its chain."""
        real = os.path.realpath(path)
        for disk in await self._running_disks():
            if any(os.path.realpath(p) == real for p in disk.chain):
                role = "reads" if os.path.realpath(disk.chain[0]) != real else "writes"
                raise AgentError(
                    f"cannot {doing} {path}: the running VM {disk.vm_uuid} {role} it "
                    f"(disk {disk.target})"
                )

    async def volume_create(
        self, install_path: str, backing_file: str, size: int, fmt: str = "qcow2"
    ) -> VolumeInfo:
        return await images.create_volume(install_path, backing_file, size, fmt)

    async def volume_delete(
        self, install_path: str, storage_path: str = "", keep_if_backing: tuple[str, ...] = ()
    ) -> None:
        if keep_if_backing:
            if not storage_path:
                raise ArgumentError("field 'storagePath' is required with 'keepIfBacking'")
            holders = await volume_chain.holders(install_path, list(keep_if_backing), storage_path)
            if holders:
                stand = "stands" if len(holders) == 1 else "stand"
                raise AgentError(
                    f"cannot delete {install_path}: {', '.join(holders)} {stand} on it "
                    "(it is in the backing chain)"
                )
        if storage_path or keep_if_backing:
            await self._refuse_running(install_path, "delete")
        await images.delete_file(install_path)
        await asyncio.to_thread(remove_empty_vm_directory, Path(install_path).parent)

    # -- chains (agent.volume_chain), offline ------------------------------------
    async def volume_snapshot(
        self, op: VolumeOp, new_install_path: str, full: bool
    ) -> SnapshotResult:
        await self._refuse_running(op.install_path, "snapshot offline")
        top, new = await volume_chain.snapshot(
            op.install_path, new_install_path, op.storage_path, full
        )
        return await self._snapshot_result(top.path, new.path)

    @staticmethod
    async def _snapshot_result(install_path: str, new_install_path: str) -> SnapshotResult:
        found = await images.info(install_path)
        return SnapshotResult(install_path, new_install_path, found.size, found.actual_size)

    async def volume_rebase(self, op: VolumeOp, backing_file: str) -> str:
        await self._refuse_running(op.install_path, "rebase offline")
        return await volume_chain.rebase(op.install_path, backing_file, op.storage_path)

    async def volume_resize(self, op: VolumeOp, size: int) -> int:
        await self._refuse_running(op.install_path, "resize offline")
        return await volume_chain.resize(op.install_path, size, op.storage_path)

    async def volume_chain(
        self, storage_path: str, install_paths: list[str]
    ) -> tuple[dict[str, list[str]], list[str]]:
        return await volume_chain.chains(storage_path, install_paths)

    async def volume_export(
        self,
        storage_path: str,
        install_path: str,
        target_path: str,
        progress_cb: ProgressCallback | None = None,
    ) -> DownloadResult:
        real = os.path.realpath(install_path)
        for disk in await self._running_disks():
            if os.path.realpath(disk.chain[0]) == real:
                raise AgentError(
                    f"cannot export {install_path}: the running VM {disk.vm_uuid} writes it "
                    f"(disk {disk.target}); export a snapshot or stop the VM"
                )
        return await volume_chain.export(install_path, target_path, storage_path, progress_cb)

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
    """A VM's or a data volume's directory goes with its last file; any other directory,
    a symlink, or one that still holds something stays."""
    if not VOLUME_DIRECTORY.fullmatch(directory.name) or directory.is_symlink():
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

"""A volume's qcow2 backing chain on a primary storage directory, and what ``qemu-img``
does to it offline (contracts.kvm "data volumes, snapshots, resize, images from volumes").

A chain is read header by header here first (agent.image_header, which refuses data
files, encryption and unknown features) and every backing name is checked before
anything opens it: an absolute plain path (no ``json:`` or protocol spec) of a regular
file (not a symlink) whose real path is under the storage directory, with its format
recorded as qcow2 or raw.  Only then does ``qemu-img info --backing-chain`` read it, and
its answer must name the same files.  A guest writes the data of its disks, and an image
file comes from anyone: neither may make QEMU or ``qemu-img`` open another host file.

The operations are idempotent (a repeat after a lost answer finds the work done) and
crash-safe: a new file is made under a temporary name beside its target and linked into
place whole; ``qemu-img rebase`` (safe mode) copies the data of the files it skips into
the file before it changes its header, so a rebase cut short reads the same as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent import image_header, images
from agent.backend import DownloadResult, ProgressCallback
from agentkit.errors import AgentError, ArgumentError

log = logging.getLogger(__name__)

MAX_CHAIN = 256
"""Files a chain may have (QEMU's own limit on backing depth is 1000)."""
CHAIN_FORMATS = ("qcow2", "raw")
DATA_VOLUMES_DIR = "datavolumes"
"""The subdirectory of a primary storage with the data volumes (``vol-<uuid>/``)."""
ROOT_VOLUMES_DIR = "rootvolumes"
"""The subdirectory of a primary storage with the root volumes (``vm-<uuid>/``)."""
IMAGE_CACHE_DIR = "imagecache"
"""The subdirectory of a primary storage with the images root volumes stand on."""


@dataclass(frozen=True)
class ChainFile:
    path: str
    format: str
    size: int
    """Virtual size, bytes."""
    actual_size: int
    backing_file: str = ""
    backing_format: str = ""


def storage_root(storage_path: str, field: str = "storagePath") -> str:
    """The real path of a primary storage directory (it must exist)."""
    if not storage_path or not os.path.isabs(storage_path):
        raise ArgumentError(f"field {field!r} must be an absolute path: {storage_path!r}")
    real = os.path.realpath(storage_path)
    if not os.path.isdir(real):
        raise AgentError(f"primary storage {storage_path} does not exist or is not a directory")
    return real


def storage_of_data_volume(install_path: str) -> str:
    """The primary storage a data volume's file is on: the directory holding the
    ``datavolumes`` directory above it (the core's layout); an ArgumentError if none."""
    parts = Path(install_path).parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == DATA_VOLUMES_DIR:
            return str(Path(*parts[:i]))
    raise ArgumentError(
        f"data volume {install_path} is not in a primary storage's {DATA_VOLUMES_DIR}/ directory"
    )


def storage_of_root_volume(install_path: str) -> str | None:
    """The primary storage a root volume's file is on: the directory holding the
    ``rootvolumes`` directory of its ``vm-<uuid>`` directory (the core's layout); None for
    a file elsewhere."""
    parts = Path(install_path).parts
    if (
        len(parts) >= 4
        and parts[-3] == ROOT_VOLUMES_DIR
        and parts[-2].startswith("vm-")
        and os.path.isabs(install_path)
    ):
        return str(Path(*parts[:-3]))
    return None


def in_storage(path: str, root: str) -> bool:
    """``path`` is absolute, names a regular file (not a symlink) and really is under
    ``root`` (no symlinked directory leads out of it)."""
    if not path or not os.path.isabs(path) or path.startswith("json:"):
        return False
    real = os.path.realpath(path)
    return image_header.is_regular_file(path) and real.startswith(root.rstrip("/") + "/")


def require_in_storage(path: str, root: str, label: str) -> None:
    if not path or not os.path.isabs(path):
        raise ArgumentError(f"{label} must be an absolute path: {path!r}")
    if not image_header.is_regular_file(path):
        what = "a symlink" if os.path.islink(path) else "missing or not a regular file"
        raise AgentError(f"{label} {path} is {what}")
    if not in_storage(path, root):
        raise AgentError(f"{label} {path} is not under the primary storage {root}")


def require_target_in_storage(path: str, root: str, label: str) -> None:
    """A file to be made: an absolute path whose (existing) directory is under ``root``."""
    if not path or not os.path.isabs(path):
        raise ArgumentError(f"{label} must be an absolute path: {path!r}")
    parent = Path(path).parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    real = os.path.realpath(parent)
    if real != root and not real.startswith(root.rstrip("/") + "/"):
        raise AgentError(f"{label} {path} is not under the primary storage {root}")
    if os.path.islink(path):
        raise AgentError(f"{label} {path} is a symlink")


def _check_headers(path: str, root: str, fmt: str = "") -> list[image_header.Header]:
    """The headers of ``path``'s chain, each backing name checked before it is followed.
    A file known to be raw (``fmt``, or its overlay's recorded backing format) is not
    read: a guest writes all of a raw disk, a qcow2 header too.  Blocking."""
    headers: list[image_header.Header] = []
    current, label, known = path, f"volume file {path}", fmt
    seen: set[str] = set()
    while True:
        header = _step(path, current, label, known, root, seen, len(headers))
        headers.append(header)
        if not header.backing_file:
            return headers
        current, label = header.backing_file, f"backing file {header.backing_file} of {path}"
        known = header.backing_format


def _step(
    path: str, current: str, label: str, known: str, root: str, seen: set[str], depth: int
) -> image_header.Header:
    """The header of ``current``, the file at ``depth`` in ``path``'s chain (``seen``: the
    real paths above it, ``current``'s added), its backing name checked (see the module)."""
    require_in_storage(current, root, label)
    real = os.path.realpath(current)
    if real in seen:
        raise AgentError(f"the backing chain of {path} loops at {current}")
    seen.add(real)
    if depth >= MAX_CHAIN:
        raise AgentError(f"the backing chain of {path} is longer than {MAX_CHAIN} files")
    if known == "raw":
        return image_header.Header("raw")
    header = image_header.inspect(current, label, allow_backing=True)
    if known and header.format != known:
        raise AgentError(f"{label} is a {header.format} file, not {known}; refused")
    backing = header.backing_file
    if not backing:
        return header
    what = f"{current} (in the chain of {path}) has the backing file {backing!r}"
    if backing.startswith("json:") or not os.path.isabs(backing) or ":" in backing:
        raise AgentError(f"{what}: not an absolute plain file path; refused")
    if header.backing_format not in CHAIN_FORMATS:
        raise AgentError(
            f"{what} of format {header.backing_format or 'unrecorded'}; refused "
            "(only a recorded qcow2 or raw backing file is followed)"
        )
    if not in_storage(backing, root):
        raise AgentError(
            f"{what}, which is not a regular file under the primary storage {root}; refused"
        )
    return header


async def read_chain(path: str, storage_path: str, fmt: str = "") -> list[ChainFile]:
    """``path`` (of format ``fmt`` if known) and its backing files, top first, all
    checked (see the module)."""
    root = storage_root(storage_path)
    headers = await asyncio.to_thread(_check_headers, path, root, fmt)
    raws = await images.backing_chain(path, headers[0].format)
    if len(raws) != len(headers):
        raise AgentError(
            f"qemu-img reads {len(raws)} files in the chain of {path}, the headers {len(headers)}"
        )
    chain: list[ChainFile] = []
    current = path
    for raw, header in zip(raws, headers, strict=True):
        backing = raw.get("full-backing-filename") or raw.get("backing-filename") or ""
        if raw.get("format") != header.format or backing != header.backing_file:
            raise AgentError(f"qemu-img reads {current} otherwise than its header says; refused")
        chain.append(
            ChainFile(
                path=current,
                format=header.format,
                size=int(raw.get("virtual-size", 0)),
                actual_size=int(raw.get("actual-size", 0)),
                backing_file=header.backing_file,
                backing_format=header.backing_format,
            )
        )
        current = header.backing_file
    return chain


async def check_root_volume(install_path: str, fmt: str) -> None:
    """Before QEMU opens a root volume (VM_START): its chain must be one the project makes;
    an AgentError naming what is wrong otherwise.

    A root volume in its primary storage's ``rootvolumes/vm-<uuid>/`` is checked as every
    chain here (``read_chain``): its active file may stand on snapshot files, all in its
    own directory, and the chain may end on one image of that storage's ``imagecache/``,
    which stands on nothing (an image is standalone: ``images.download`` made it so); a raw
    image there must look like a disk (MBR/GPT), as ``images.check_root_volume`` asks.
    Elsewhere (a file not in that layout): ``images.check_root_volume``, an overlay on a
    standalone image and nothing more."""
    storage = storage_of_root_volume(install_path)
    if storage is None:
        await images.check_root_volume(install_path, fmt)
        return
    chain = await read_chain(install_path, storage_root(storage))
    label = f"root volume {install_path}"
    if chain[0].format != fmt:
        raise AgentError(f"{label} is a {chain[0].format} file, not {fmt}")
    own = os.path.realpath(os.path.dirname(install_path))
    cache = os.path.join(storage_root(storage), IMAGE_CACHE_DIR)
    for i, file in enumerate(chain):
        where = os.path.dirname(os.path.realpath(file.path))
        if where == own:
            continue
        if where != cache or i == 0:
            raise AgentError(
                f"{file.path} (in the chain of {label}) is neither in the volume's directory "
                f"nor an image of {cache}; refused"
            )
        if file.backing_file:
            raise AgentError(
                f"the image {file.path} (in the chain of {label}) has a backing file "
                f"{file.backing_file!r}; refused (an image stands on nothing)"
            )
        if file.format == "raw" and await asyncio.to_thread(images.sniff_raw, file.path) != "raw":
            raise AgentError(
                f"the image {file.path} (in the chain of {label}) is not a disk image "
                "(no MBR/GPT boot signature); refused"
            )


# -- offline operations (no running domain holds the file) ------------------------------
async def existing_snapshot(
    install_path: str, new_install_path: str, root: str
) -> list[ChainFile] | None:
    """The chain of ``new_install_path`` if it is already the overlay asked for (a repeat),
    None if there is no file; an AgentError for any other file there."""
    if not os.path.lexists(new_install_path):
        return None
    chain = await read_chain(new_install_path, root)
    if chain[0].format != "qcow2" or chain[0].backing_file != install_path:
        raise AgentError(
            f"{new_install_path} already exists and is not an overlay of {install_path}"
        )
    log.info("snapshot overlay %s exists already; answering it as made", new_install_path)
    return chain


async def snapshot(
    install_path: str, new_install_path: str, storage_path: str, full: bool
) -> tuple[ChainFile, ChainFile]:
    """Make ``new_install_path`` a qcow2 overlay of ``install_path`` (after pulling its
    chain into it, if ``full``); the snapshot file and the new active file."""
    root = storage_root(storage_path)
    require_target_in_storage(new_install_path, root, "newInstallPath")
    if new_install_path == install_path:
        raise ArgumentError("fields 'installPath' and 'newInstallPath' are the same file")
    done = await existing_snapshot(install_path, new_install_path, root)
    if done is not None:
        return done[1], done[0]
    chain = await read_chain(install_path, root)
    if full and len(chain) > 1:
        await rebase(install_path, "", storage_path)
        chain = await read_chain(install_path, root)
    top = chain[0]
    made = await images.create_overlay(new_install_path, install_path, top.format, top.size)
    return top, ChainFile(made.install_path, "qcow2", made.size, made.actual_size, install_path)


async def rebase(install_path: str, backing_file: str, storage_path: str) -> str:
    """``qemu-img rebase`` (safe mode: the data of the files skipped is copied first) of
    ``install_path`` onto ``backing_file``, a file of its chain below its backing file,
    or "" (standalone).  Its backing file afterwards."""
    root = storage_root(storage_path)
    chain = await read_chain(install_path, root)
    top = chain[0]
    if top.backing_file == backing_file:
        return backing_file  # done already (or a repeat)
    if top.format != "qcow2":
        raise AgentError(f"{install_path} is a {top.format} file; only a qcow2 has a backing file")
    args = ["rebase", "-f", "qcow2"]
    if backing_file:
        below = {c.path: c for c in chain[2:]}
        if backing_file not in below:
            raise AgentError(
                f"{backing_file} is not in the backing chain of {install_path} below its "
                f"backing file {top.backing_file or '(none)'}: "
                f"{' -> '.join(c.path for c in chain)}"
            )
        args += ["-F", below[backing_file].format, "-b", backing_file]
    else:
        args += ["-b", ""]
    await images.run_qemu_img(*args, install_path, timeout=24 * 3600.0)
    log.info("rebased %s onto %s", install_path, backing_file or "nothing")
    return backing_file


async def resize(install_path: str, size: int, storage_path: str) -> int:
    """Grow the virtual size of ``install_path`` to ``size`` (never shrink); the size."""
    root = storage_root(storage_path)
    top = (await read_chain(install_path, root))[0]
    check_growth(install_path, top.size, size)
    if size == top.size:
        return size
    await images.run_qemu_img("resize", "-q", "-f", top.format, install_path, str(size))
    return (await read_chain(install_path, root))[0].size


def check_growth(install_path: str, current: int, size: int) -> None:
    if size < current:
        raise AgentError(
            f"field 'size' ({size} bytes) is smaller than the {current} bytes of "
            f"{install_path}: a volume only grows"
        )


async def chains(storage_path: str, paths: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Each file's backing files (nearest first); missing files listed apart."""
    root = storage_root(storage_path)
    found: dict[str, list[str]] = {}
    missing: list[str] = []
    for path in paths:
        if not path or not os.path.isabs(path):
            raise ArgumentError(f"field 'installPaths' must hold absolute paths: {path!r}")
        if not os.path.lexists(path):
            found[path] = []
            missing.append(path)
            continue
        found[path] = [c.path for c in (await read_chain(path, root))[1:]]
    return found, missing


async def holders(install_path: str, candidates: list[str], storage_path: str) -> list[str]:
    """The files of ``candidates`` (those that exist) whose chains hold ``install_path``.

    The delete guard: each chain is followed through the files' headers alone, checked as
    ``read_chain`` checks them (a hostile name is refused, not followed), each header read
    once however many chains share it; no ``qemu-img`` (one run per kept file made the
    guard quadratic over a volume's snapshots)."""
    if not candidates:
        return []
    root = storage_root(storage_path)
    return await asyncio.to_thread(_holders, install_path, candidates, root)


def _holders(install_path: str, candidates: list[str], root: str) -> list[str]:
    real = os.path.realpath(install_path)
    backing_of: dict[tuple[str, str], tuple[str, str]] = {}
    """(real path, format known) -> (backing file, its recorded format)."""
    found = []
    for path in candidates:
        if not os.path.lexists(path) or os.path.realpath(path) == real:
            continue
        current, label, known = path, f"volume file {path}", ""
        seen: set[str] = set()
        while True:
            key = (os.path.realpath(current), known)
            if key in backing_of and key[0] not in seen:
                seen.add(key[0])
                if len(seen) > MAX_CHAIN:
                    raise AgentError(
                        f"the backing chain of {path} is longer than {MAX_CHAIN} files"
                    )
            else:
                header = _step(path, current, label, known, root, seen, len(seen))
                backing_of[key] = (header.backing_file, header.backing_format)
            backing, known = backing_of[key]
            if not backing:
                break
            if os.path.realpath(backing) == real:
                found.append(path)
                break
            current, label = backing, f"backing file {backing} of {path}"
    return found


async def export(
    install_path: str,
    target_path: str,
    storage_path: str,
    progress_cb: ProgressCallback | None = None,
) -> DownloadResult:
    """A standalone qcow2 copy of what ``install_path`` reads at ``target_path`` (written
    to ``.<name>.part`` beside it, linked into place when whole, with its md5)."""
    root = storage_root(storage_path)
    if not target_path or not os.path.isabs(target_path):
        raise ArgumentError(f"field 'targetPath' must be an absolute path: {target_path!r}")
    if os.path.lexists(target_path):
        return await _existing_export(install_path, target_path)
    chain = await read_chain(install_path, root)
    top = chain[0]
    images.make_directories(Path(target_path).parent)
    part = images.part_path(target_path)
    images.remove_quietly(part)  # left by an agent that died exporting
    total = top.size
    report: Callable[[float], None] | None = None
    if progress_cb is not None:
        callback = progress_cb

        def report(percent: float) -> None:
            callback(int(total * percent / 100), total)

        callback(0, total)
    try:
        await images.convert_to_qcow2(install_path, top.format, part, report)
        os.chmod(part, images.DISK_MODE)
        made = await images.info(part, "qcow2")
        md5 = await asyncio.to_thread(images.md5_of, part)
        images.put_in_place(part, target_path)
    except BaseException:
        images.remove_quietly(part)
        raise
    if progress_cb is not None:
        progress_cb(total, total)
    log.info("exported %s to %s (%d bytes)", install_path, target_path, made.actual_size)
    return DownloadResult(target_path, "qcow2", made.size, made.actual_size, md5)


async def _existing_export(install_path: str, target_path: str) -> DownloadResult:
    """An export found done (it is only linked into place whole): answered again if it
    is a standalone qcow2; anything else there is refused."""
    refused = f"{target_path} already exists"
    if not image_header.is_regular_file(target_path):
        raise AgentError(f"{refused} and is not a regular file")
    try:
        found = await images.standalone_info(target_path)
    except AgentError as exc:
        raise AgentError(f"{refused} and is not a standalone image: {exc}") from None
    if found.format != "qcow2":
        raise AgentError(f"{refused} and is a {found.format} file, not an export")
    md5 = await asyncio.to_thread(images.md5_of, target_path)
    log.info("%s exists already; answering the export of %s as done", target_path, install_path)
    return DownloadResult(target_path, "qcow2", found.size, found.actual_size, md5)

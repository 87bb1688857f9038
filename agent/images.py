"""Disk files: ``qemu-img`` info and overlays, image downloads, deletions.

A download goes to a temporary file beside its target, is checked (checksum, then
format: the header by agent.image_header, then ``qemu-img info``) and only then renamed
into place; whatever fails (or if it is cancelled), the temporary file is removed, so a
failed download leaves nothing behind.  A download larger than the free space is refused
before anything is written, and one that receives nothing for ``stall_timeout`` seconds
fails.

Disks are for root and QEMU only: files are made mode 0600 (libvirt's DAC driver gives a
disk and its backing file to the qemu user when a domain starts), directories 0711 (QEMU
must traverse them; nobody else may list them).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlparse

import aiohttp

from agent import image_header
from agent.backend import DownloadResult, ImageInfo, ProgressCallback, VolumeInfo
from agentkit.errors import AgentError, ArgumentError
from contracts.kvm import DEFAULT_STALL_TIMEOUT

log = logging.getLogger(__name__)
T = TypeVar("T")

QEMU_IMG = "qemu-img"
QEMU_IMG_TIMEOUT = 300.0
CHUNK = 1024 * 1024
CHECKSUM_ALGORITHMS = ("sha256", "md5")
IMAGE_FORMATS = ("qcow2", "raw", "iso")
"""What a download may be.  ``qemu-img`` calls any file "raw"; a raw file counts as
an image only if it starts like a disk (MBR/GPT boot signature) or is an ISO 9660."""
VOLUME_FORMATS = ("qcow2",)
DISK_MODE = 0o600
"""Images, image caches and volumes: root's (libvirt hands a VM's disks to QEMU)."""
DIRECTORY_MODE = 0o711
"""Storage directories: QEMU traverses them, nobody but root lists them."""
CONNECT_TIMEOUT = 30.0


# -- qemu-img -----------------------------------------------------------------
async def run_qemu_img(*args: str, timeout: float = QEMU_IMG_TIMEOUT) -> str:
    """Run ``qemu-img args``; its stdout, or an AgentError quoting its stderr."""
    try:
        proc = await asyncio.create_subprocess_exec(
            QEMU_IMG,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            umask=0o077,  # what it creates is a disk: DISK_MODE
        )
    except FileNotFoundError:
        raise AgentError(f"{QEMU_IMG} is not installed (Debian package qemu-utils)") from None
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        raise AgentError(f"{QEMU_IMG} {args[0]} timed out after {timeout:g}s") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise AgentError(f"{QEMU_IMG} {args[0]} failed: {message}")
    return out.decode(errors="replace")


async def qemu_img_version() -> str:
    """``7.2.22`` from ``qemu-img version 7.2.22 (Debian ...)``."""
    out = await run_qemu_img("--version")
    match = re.search(r"version\s+(\d+(?:\.\d+)+)", out)
    if match is None:
        raise AgentError(f"cannot read the version from {QEMU_IMG} --version: {out[:200]!r}")
    return match.group(1)


async def info(path: str, fmt: str = "") -> ImageInfo:
    """``qemu-img info`` of a file (readable even while a running VM holds it).

    The format is ``fmt`` or what the file's header says (agent.image_header: a file
    naming an external data file or using unusual features is refused; an overlay's
    backing file is named, not opened), and ``qemu-img`` is told it, so it probes nothing.
    """
    _require_absolute(path)
    if not os.path.isfile(path):
        raise AgentError(f"{path} does not exist or is not a file")
    if not fmt:
        fmt = (await _inspect(path, path, allow_backing=True)).format
    raw = json.loads(await run_qemu_img("info", "--output=json", "--force-share", "-f", fmt, path))
    unusual = _unusual(raw)
    if unusual:  # the header check missed it: refuse all the same
        raise AgentError(f"qemu-img reports {', '.join(unusual)} in {path}: refused")
    return ImageInfo(
        format=raw["format"],
        size=int(raw.get("virtual-size", 0)),
        actual_size=int(raw.get("actual-size", 0)),
        backing_file=raw.get("full-backing-filename") or raw.get("backing-filename") or "",
    )


def _unusual(raw: dict[str, Any]) -> list[str]:
    """What ``qemu-img info --output=json`` shows that no image of the project has."""
    data = (raw.get("format-specific") or {}).get("data") or {}
    found = []
    if "data-file" in data:
        found.append(f"an external data file ({data['data-file']})")
    if raw.get("encrypted") or "encrypt" in data:
        found.append("encryption")
    if data.get("corrupt"):
        found.append("the corrupt bit")
    if raw.get("dirty-flag"):
        found.append("the dirty bit")
    return found


async def create_volume(
    install_path: str, backing_file: str = "", size: int = 0, fmt: str = "qcow2"
) -> VolumeInfo:
    """A qcow2 overlay on ``backing_file`` (or a blank qcow2 of ``size`` bytes), mode 0600.

    Idempotent, keyed by ``install_path``: the file is made under a temporary name beside
    it (:func:`in_progress_paths`, replaced if an agent that died left one) and linked
    into place only once complete, so a file at ``install_path`` is always a whole
    volume; when it is already the volume asked for (a repeat of a call whose answer was
    lost) it is answered as made, anything else there is refused (it could be a VM's
    disk).  The backing file must be a standalone image (agent.image_header): an
    overlay's chain is always two files the project made.  ``qemu-img`` makes the first
    overlay of each backing file and size; later ones are copies of its bytes (see
    ``_OverlayTemplates``).
    """
    _require_absolute(install_path)
    if fmt not in VOLUME_FORMATS:
        raise ArgumentError(f"volume format {fmt!r} is not supported (only qcow2)")
    if size < 0:
        raise ArgumentError(f"size must not be negative, got {size}")
    if not backing_file and not size:
        raise ArgumentError("a volume without a backing file needs a size")
    if os.path.lexists(install_path):
        return await _existing_volume(install_path, backing_file, size)
    make_directories(Path(install_path).parent)
    creating = _creating_path(install_path)
    remove_quietly(creating)  # left by an agent that died making it
    key = _overlay_templates.key(backing_file, size) if backing_file else None
    template = _overlay_templates.get(key)
    if template is not None:
        _overlay_templates.write(creating, template)
        put_in_place(creating, install_path)
        return VolumeInfo(install_path, template.virtual_size, _allocated(install_path))
    args = ["create", "-q", "-f", fmt]
    if backing_file:
        backing = await standalone_info(backing_file)
        if size and size < backing.size:
            raise ArgumentError(
                f"size {size} is smaller than the backing image's {backing.size} bytes"
            )
        args += ["-F", backing.format, "-b", backing_file]
    args.append(creating)
    if size:
        args.append(str(size))
    try:
        await run_qemu_img(*args)
        created = await info(creating, "qcow2")
        if key is not None:
            _overlay_templates.remember(key, creating, created.size)
        put_in_place(creating, install_path)
    except BaseException:
        remove_quietly(creating)
        raise
    return VolumeInfo(install_path, created.size, created.actual_size)


async def create_overlay(
    install_path: str, backing_file: str, backing_format: str, size: int
) -> VolumeInfo:
    """A qcow2 overlay of ``backing_file`` (of a chain the caller checked) of ``size``
    bytes, mode 0600, made under its temporary name (:func:`in_progress_paths`) and
    linked into place when whole: a snapshot's new active file.  The backing file is
    not opened (``-u``): a running QEMU holds it, and the caller read its size and format
    already.  The caller answers a file already there."""
    _require_absolute(install_path)
    if backing_format not in ("qcow2", "raw"):
        raise ArgumentError(f"backing format {backing_format!r} is not qcow2 or raw")
    make_directories(Path(install_path).parent)
    creating = _creating_path(install_path)
    remove_quietly(creating)  # left by an agent that died making it
    try:
        await run_qemu_img(
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-F",
            backing_format,
            "-b",
            backing_file,
            creating,
            str(size),
        )
        created = await info(creating, "qcow2")
        put_in_place(creating, install_path)
    except BaseException:
        remove_quietly(creating)
        raise
    return VolumeInfo(install_path, created.size, created.actual_size)


async def backing_chain(path: str, fmt: str) -> list[dict[str, Any]]:
    """``qemu-img info --backing-chain`` of ``path`` (of format ``fmt``), top file first.
    Only call it on a chain whose headers were checked (agent.volume_chain): it opens
    every backing file the headers name."""
    _require_absolute(path)
    out = await run_qemu_img(
        "info", "--backing-chain", "--output=json", "--force-share", "-f", fmt, path
    )
    found = json.loads(out)
    if isinstance(found, dict):  # a single image
        found = [found]
    for raw in found:
        unusual = _unusual(raw)
        if unusual:
            raise AgentError(f"qemu-img reports {', '.join(unusual)} in {raw.get('filename')}")
    return list(found)


_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


async def convert_to_qcow2(
    source: str,
    fmt: str,
    target: str,
    progress_cb: Callable[[float], None] | None = None,
    timeout: float = 24 * 3600.0,
) -> None:
    """``qemu-img convert -p -f fmt -O qcow2 source target``: what ``source`` reads (its
    chain flattened) as one standalone qcow2; ``progress_cb`` gets the percentage
    ``qemu-img`` prints.  Cancelled or timed out: the process is killed (the caller
    removes ``target``)."""
    _require_absolute(source)
    _require_absolute(target)
    try:
        proc = await asyncio.create_subprocess_exec(
            QEMU_IMG,
            "convert",
            "-p",
            "-f",
            fmt,
            "-O",
            "qcow2",
            source,
            target,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            umask=0o077,
        )
    except FileNotFoundError:
        raise AgentError(f"{QEMU_IMG} is not installed (Debian package qemu-utils)") from None
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    async def read_progress() -> None:
        pending = b""
        while chunk := await stdout.read(4096):
            pending += chunk
            *done, pending = re.split(rb"[\r\n]", pending)
            for line in done:
                match = _PROGRESS.search(line)
                if match and progress_cb is not None:
                    progress_cb(float(match.group(1)))

    try:
        async with asyncio.timeout(timeout):
            _, err, _ = await asyncio.gather(read_progress(), stderr.read(), proc.wait())
    except TimeoutError:
        raise AgentError(f"{QEMU_IMG} convert timed out after {timeout:g}s") from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise AgentError(f"{QEMU_IMG} convert failed: {message}")


def md5_of(path: str) -> str:
    """The file's md5 (blocking)."""
    return _digests(path, "")[0]


async def _existing_volume(install_path: str, backing_file: str, size: int) -> VolumeInfo:
    """The volume at ``install_path`` if it is the one asked for; an AgentError otherwise."""
    refused = f"{install_path} already exists"
    if not image_header.is_regular_file(install_path):
        raise AgentError(f"{refused} and is not a regular file")
    try:
        header = await _inspect(install_path, install_path, allow_backing=True)
    except AgentError as exc:
        raise AgentError(f"{refused} and is not a volume of the project: {exc}") from None
    if header.format != "qcow2" or header.backing_file != backing_file:
        was = f"backing file {header.backing_file!r}" if header.backing_file else "no backing"
        raise AgentError(f"{refused}, a {header.format} with {was}: not the volume asked for")
    found = await info(install_path, "qcow2")
    wanted = size or (await standalone_info(backing_file)).size
    if found.size != wanted:
        raise AgentError(f"{refused} with {found.size} bytes, not {wanted}")
    log.info("volume %s exists already as asked; answering it as made", install_path)
    return VolumeInfo(install_path, found.size, found.actual_size)


def put_in_place(made: str, install_path: str) -> None:
    """Link the finished ``made`` to ``install_path`` (never over a file there), drop ``made``."""
    try:
        os.link(made, install_path)
    except FileExistsError:
        raise AgentError(f"{install_path} already exists") from None
    os.unlink(made)


def _creating_path(install_path: str) -> str:
    path = Path(install_path)
    return str(path.parent / f".{path.name}.creating")


def part_path(install_path: str) -> str:
    """The temporary file beside ``install_path`` a download or export writes to."""
    path = Path(install_path)
    return str(path.parent / f".{path.name}.part")


def in_progress_paths(install_path: str) -> list[str]:
    """Where a volume (``.<name>.creating``) or a download (``.<name>.part``) to
    ``install_path`` is written before it is put in place: one name per target, so a
    command sent again after the agent died overwrites what the dead one left, and a
    delete of the target removes it."""
    return [_creating_path(install_path), part_path(install_path)]


@dataclass(frozen=True)
class _Template:
    content: bytes
    virtual_size: int


class _OverlayTemplates:
    """The bytes of overlays ``qemu-img`` made, by backing file and size.

    A new qcow2 overlay holds only a header naming its backing file and format, and
    empty tables sized by its virtual size: nothing depends on its own path or on
    time.  So a copy of an earlier overlay of the same backing file (the same file:
    same inode, size and mtime) and size is the file ``qemu-img create`` would make,
    for a fraction of its cost (one process start and two ``qemu-img info`` calls).
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[object, ...], _Template] = {}

    def key(self, backing_file: str, size: int) -> tuple[object, ...] | None:
        try:
            st = os.stat(backing_file)
        except OSError:
            return None  # qemu-img info reports it
        return (backing_file, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, size)

    def get(self, key: tuple[object, ...] | None) -> _Template | None:
        return None if key is None else self._by_key.get(key)

    def remember(self, key: tuple[object, ...], path: str, virtual_size: int) -> None:
        self._by_key[key] = _Template(Path(path).read_bytes(), virtual_size)

    @staticmethod
    def write(path: str, template: _Template) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, DISK_MODE)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(template.content)
        except BaseException:
            remove_quietly(path)
            raise


_overlay_templates = _OverlayTemplates()


async def standalone_info(path: str) -> ImageInfo:
    """``info`` of an image that may back a volume: one that names no other file."""
    _require_absolute(path)
    if not image_header.is_regular_file(path):
        raise AgentError(f"{path} does not exist or is not a file")
    header = await _inspect(path, path)
    return await info(path, header.format)


async def check_root_volume(path: str, fmt: str) -> None:
    """Before QEMU opens a root volume: its chain must be the one ``create_volume`` makes,
    a qcow2 overlay whose backing file (by a plain absolute path, format recorded) is a
    standalone qcow2 or raw disk; an AgentError naming what is wrong otherwise."""
    _require_absolute(path)
    if not image_header.is_regular_file(path):
        raise AgentError(f"root volume {path} does not exist or is not a file")
    header = await _inspect(path, f"root volume {path}", allow_backing=True)
    if header.format != fmt:
        raise AgentError(f"root volume {path} is a {header.format} file, not {fmt}")
    backing = header.backing_file
    if not backing:
        return
    what = f"root volume {path} has the backing file {backing!r}"
    if not os.path.isabs(backing) or backing.startswith("json:"):
        raise AgentError(f"{what}: not an absolute file path")
    if header.backing_format not in ("qcow2", "raw"):
        raise AgentError(f"{what} of format {header.backing_format or 'unrecorded'}")
    if not image_header.is_regular_file(backing):
        raise AgentError(f"{what}, which does not exist or is not a file")
    found = await _inspect(backing, f"the backing file {backing} of root volume {path}")
    if found.format != header.backing_format:
        raise AgentError(f"{what} recorded as {header.backing_format}; it is {found.format}")
    if found.format == "raw" and await asyncio.to_thread(sniff_raw, backing) != "raw":
        raise AgentError(f"{what}, which is not a disk image (no MBR/GPT boot signature)")


async def _inspect(path: str, label: str, *, allow_backing: bool = False) -> image_header.Header:
    return await asyncio.to_thread(image_header.inspect, path, label, allow_backing=allow_backing)


def make_directories(path: Path) -> None:
    """``mkdir -p`` whose new directories are DIRECTORY_MODE (existing ones are kept)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    if not path.is_dir():
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(DIRECTORY_MODE)
            directory.chmod(DIRECTORY_MODE)  # whatever the umask


def _allocated(path: str) -> int:
    """What ``qemu-img info`` calls the actual size: the blocks the file takes."""
    return os.stat(path).st_blocks * 512


# -- deletion -----------------------------------------------------------------
async def delete_file(path: str) -> None:
    """Remove a file and what a volume creation or download to it left half-made
    (:func:`in_progress_paths`); missing ones are fine, a directory is refused."""
    _require_absolute(path)
    if os.path.isdir(path) and not os.path.islink(path):
        raise AgentError(f"{path} is a directory; only files are deleted")
    for leftover in in_progress_paths(path):
        await asyncio.to_thread(remove_quietly, leftover)
    await asyncio.to_thread(Path(path).unlink, missing_ok=True)


# -- checksums ----------------------------------------------------------------
def parse_checksum(checksum: str) -> tuple[str, str]:
    """``("sha256", "<hex>")`` from ``sha256:<hex>``; ``("", "")`` for no checksum."""
    if not checksum:
        return "", ""
    algorithm, sep, digest = checksum.partition(":")
    algorithm = algorithm.lower()
    digest = digest.strip().lower()
    if not sep or algorithm not in CHECKSUM_ALGORITHMS:
        raise ArgumentError(f"checksum {checksum!r} is not 'sha256:<hex>' or 'md5:<hex>'")
    length = hashlib.new(algorithm).digest_size * 2
    if not re.fullmatch(rf"[0-9a-f]{{{length}}}", digest):
        raise ArgumentError(f"checksum {checksum!r} is not {length} hex digits")
    return algorithm, digest


class _Sink:
    """Writes a download to its temporary file, hashing and reporting progress."""

    def __init__(
        self, file: BinaryIO, algorithm: str, total: int, progress_cb: ProgressCallback | None
    ) -> None:
        self.file = file
        self.md5 = hashlib.md5()
        self.extra = hashlib.new(algorithm) if algorithm and algorithm != "md5" else None
        self.total = total
        self.done = 0
        self.progress_cb = progress_cb
        self.step = max(CHUNK, total // 20)  # every 1 MiB or 5%, whichever is more
        self._next = self.step

    def write(self, data: bytes) -> None:
        """Blocking: call in a thread."""
        self.file.write(data)
        self.md5.update(data)
        if self.extra is not None:
            self.extra.update(data)
        self.done += len(data)

    def due(self) -> bool:
        if self.done >= self._next:
            self._next = self.done + self.step
            return True
        return False

    def report(self) -> None:
        if self.progress_cb is not None:
            self.progress_cb(self.done, self.total)

    def digest(self, algorithm: str) -> str:
        if algorithm == "md5":
            return self.md5.hexdigest()
        assert self.extra is not None
        return self.extra.hexdigest()


# -- download -----------------------------------------------------------------
async def download(
    url: str,
    install_path: str,
    checksum: str = "",
    progress_cb: ProgressCallback | None = None,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
) -> DownloadResult:
    """Fetch ``url`` (http(s), ``file://`` or an absolute path) to ``install_path``, checked."""
    _require_absolute(install_path)
    if not stall_timeout > 0:
        raise ArgumentError(f"the stall timeout must be positive, got {stall_timeout:g}")
    algorithm, expected = parse_checksum(checksum)
    source = _local_source(url)
    if os.path.lexists(install_path):
        return await _existing_image(url, install_path, algorithm, expected)
    target = Path(install_path)
    make_directories(target.parent)
    part = _PartFile(target)
    try:
        if source is None:
            sink = await _fetch_http(url, part, algorithm, progress_cb, stall_timeout)
        else:
            sink = await _copy_local(source, part, algorithm, progress_cb)
        part.close()
        if algorithm:
            got = sink.digest(algorithm)
            if got != expected:
                raise AgentError(
                    f"checksum mismatch for {url}: expected {algorithm}:{expected}, "
                    f"got {algorithm}:{got}"
                )
        fmt, found = await _image_format(part.path, url)
        os.chmod(part.path, DISK_MODE)
        put_in_place(part.path, install_path)
    except BaseException:
        part.remove()
        raise
    log.info("downloaded %s to %s (%s, %d bytes)", url, install_path, fmt, sink.done)
    return DownloadResult(install_path, fmt, found.size, found.actual_size, sink.md5.hexdigest())


async def _existing_image(
    url: str, install_path: str, algorithm: str, expected: str
) -> DownloadResult:
    """A download whose target is there already (a repeat of a call whose answer was lost:
    a download is only renamed into place once checked): checked again (the checksum if
    one is given, the format) and answered; anything else there is refused."""
    refused = f"{install_path} already exists"
    if not image_header.is_regular_file(install_path):
        raise AgentError(f"{refused} and is not a regular file")
    md5, digest = await asyncio.to_thread(_digests, install_path, algorithm)
    if algorithm and digest != expected:
        raise AgentError(f"{refused} and its {algorithm} is not the one asked for")
    try:
        fmt, found = await _image_format(install_path, url)
    except AgentError as exc:
        raise AgentError(f"{refused} and is not an image: {exc}") from None
    log.info("%s exists already (%s); answering the download of %s as done", install_path, fmt, url)
    return DownloadResult(install_path, fmt, found.size, found.actual_size, md5)


def _digests(path: str, algorithm: str) -> tuple[str, str]:
    """The file's md5 and its ``algorithm`` digest (blocking)."""
    md5 = hashlib.md5()
    extra = hashlib.new(algorithm) if algorithm and algorithm != "md5" else None
    with open(path, "rb") as file:
        while data := file.read(CHUNK):
            md5.update(data)
            if extra is not None:
                extra.update(data)
    return md5.hexdigest(), (extra or md5).hexdigest()


class _PartFile:
    """The temporary file beside the target that a download goes to (mode 0600), made
    only once the download's declared size is known to fit in the free space."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = ""
        self._file: BinaryIO | None = None

    def open(self, size: int, url: str) -> BinaryIO:
        """The file for ``size`` bytes (0: unknown); an AgentError if they cannot fit."""
        directory = self.target.parent
        stat = os.statvfs(directory)
        free = stat.f_bavail * stat.f_frsize
        if size > free:
            raise AgentError(
                f"{url} is {_bytes(size)}, more than the {_bytes(free)} free on {directory}: "
                "not downloaded"
            )
        # One name per target (not a random one): what an agent that died while
        # downloading left is overwritten by the repeat, and removed by delete_file.
        self.path = part_path(str(self.target))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, DISK_MODE)
        self._file = os.fdopen(fd, "wb")
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def remove(self) -> None:
        self.close()
        if self.path:
            remove_quietly(self.path)


def _bytes(count: int) -> str:
    return f"{count} bytes ({count / 1024**3:.2f} GiB)"


def _local_source(url: str) -> str | None:
    """The local path ``url`` names, or None for an http(s) URL."""
    if not url:
        raise ArgumentError("url is empty")
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        path = unquote(parsed.path)
    elif parsed.scheme == "" and url.startswith("/"):
        path = url
    else:
        raise ArgumentError(f"{url!r} is neither an http(s) URL nor an absolute file path")
    if not os.path.isfile(path):
        raise AgentError(f"{path} does not exist or is not a file")
    return path


async def _fetch_http(
    url: str,
    part: _PartFile,
    algorithm: str,
    progress_cb: ProgressCallback | None,
    stall_timeout: float,
) -> _Sink:
    # sock_read bounds each wait for data (the headers, then every chunk): a stall.
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT, sock_read=stall_timeout
    )
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as resp,
        ):
            if resp.status != 200:
                raise AgentError(f"GET {url} answered HTTP {resp.status} {resp.reason or ''}")
            total = resp.content_length or 0
            sink = _Sink(part.open(total, url), algorithm, total, progress_cb)
            sink.report()
            buffer = bytearray()
            async for chunk in resp.content.iter_chunked(256 * 1024):
                buffer += chunk
                if len(buffer) >= CHUNK:
                    await _in_thread(sink.write, bytes(buffer))
                    buffer.clear()
                    if sink.due():
                        sink.report()
            if buffer:
                await _in_thread(sink.write, bytes(buffer))
    except aiohttp.ConnectionTimeoutError:
        raise AgentError(f"cannot reach {url}: no connection within {CONNECT_TIMEOUT:g}s") from None
    except aiohttp.ServerTimeoutError:
        raise AgentError(
            f"download of {url} stalled: nothing received for {stall_timeout:g}s "
            "(image.download.stallTimeout)"
        ) from None
    except aiohttp.ClientConnectorError as exc:
        raise AgentError(f"cannot reach {url}: {exc}") from None
    except aiohttp.ClientResponseError as exc:
        raise AgentError(f"GET {url} failed: HTTP {exc.status} {exc.message}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise AgentError(f"download of {url} failed: {type(exc).__name__}: {exc}") from None
    sink.report()
    return sink


async def _copy_local(
    source: str, part: _PartFile, algorithm: str, progress_cb: ProgressCallback | None
) -> _Sink:
    loop = asyncio.get_running_loop()

    def threadsafe(done: int, total: int) -> None:
        if progress_cb is not None:
            loop.call_soon_threadsafe(progress_cb, done, total)

    size = os.path.getsize(source)
    sink = _Sink(part.open(size, source), algorithm, size, threadsafe)
    stop = threading.Event()

    def copy() -> None:
        sink.report()
        with open(source, "rb") as src:
            while not stop.is_set() and (data := src.read(CHUNK)):
                sink.write(data)
                if sink.due():
                    sink.report()
        sink.report()

    try:
        await _in_thread(copy, on_cancel=stop.set)
    except OSError as exc:
        raise AgentError(f"cannot copy {source}: {exc.strerror or exc}") from None
    return sink


async def _in_thread(
    fn: Callable[..., T], *args: Any, on_cancel: Callable[[], None] | None = None
) -> T:
    """``asyncio.to_thread``, except that a cancelled caller (``on_cancel`` called first)
    still waits for the thread to end: it writes to the download's file, which is closed
    and removed as soon as the cancellation reaches ``download``."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        await asyncio.wait({future})
        raise


async def _image_format(path: str, url: str) -> tuple[str, ImageInfo]:
    """qcow2, raw or iso (and qemu-img's info); an AgentError naming the problem otherwise.

    The header is read first (agent.image_header): a qcow2 naming any other file (backing
    or data file) or using an unusual feature is refused before ``qemu-img`` opens it.
    """
    header = await _inspect(path, url)
    found = await info(path, header.format)
    if found.backing_file:  # qemu-img agrees with the header, or the image is refused
        raise AgentError(f"{url} is a qcow2 image with a backing file ({found.backing_file})")
    if header.format == "qcow2":
        return "qcow2", found
    kind = await asyncio.to_thread(sniff_raw, path)
    if kind is None:
        raise AgentError(
            f"{url} is not a disk image: qemu-img sees plain data, with no qcow2 header, "
            "MBR/GPT boot signature or ISO 9660 volume descriptor"
        )
    return kind, found


def sniff_raw(path: str) -> str | None:
    with open(path, "rb") as f:
        head = f.read(512)
        f.seek(0x8001)
        iso = f.read(5)
    if iso == b"CD001":
        return "iso"
    if len(head) == 512 and head[510:512] == b"\x55\xaa":
        return "raw"
    return None


# -- helpers ------------------------------------------------------------------
def _require_absolute(path: str) -> None:
    if not path or not os.path.isabs(path):
        raise ArgumentError(f"path {path!r} must be absolute")


def remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)

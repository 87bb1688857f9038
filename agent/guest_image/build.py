"""Build the tiny guest image offline from Debian packages.

Usage: ``python -m agent.guest_image.build [--output build/tiny-guest.qcow2]``.

Steps (no loop mount, no kernel installed on the host):

1. ``apt-get download`` ``linux-image-cloud-amd64``, the versioned kernel image
   package it depends on, and ``busybox-static`` into a cache directory (kept,
   so later builds need no network), then ``dpkg-deb -x`` them.
2. An initramfs (newc cpio written here, gzip): busybox with its applet links,
   the virtio modules in dependency order (read from each module's
   ``.modinfo``), ``init.sh`` as ``/init``, ``udhcpc.script`` and ``inittab``.
3. A FAT16 partition image made with ``mkfs.fat``, made bootable with
   ``syslinux --install`` and filled with ``mcopy`` (kernel, initramfs,
   ``syslinux.cfg``); a raw disk with an ``sfdisk`` DOS label (one bootable
   partition at 1 MiB), SYSLINUX's ``mbr.bin`` as boot code and the partition
   image copied in at its offset; then ``qemu-img convert -O qcow2``.

The image is rebuilt only when it is missing or when the builder's inputs
changed: a digest of this file, the guest scripts, the package files and the
host's syslinux version is stored beside the image (``<image>.inputs``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import gzip
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.guest_image import IMAGE_NAME

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent.parent
DEFAULT_OUTPUT = PROJECT_ROOT / "build" / IMAGE_NAME
CACHE_DIR_NAME = "guest-image-cache"

GUEST_FILES = ("init.sh", "udhcpc.script", "inittab", "syslinux.cfg")
"""The guest-side files shipped beside this module; part of the inputs digest."""

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"

WANTED_MODULES = (
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_console",
    "button",
    "evdev",
    "crc32c_generic",
    "ext4",
)
"""Modules for the initramfs (with their dependencies, read from each module's
``depends``), in this order of wish.  ``ext4`` (with jbd2, mbcache, crc16) lets the guest
make and mount a file system on a data volume; ``crc32c_generic`` is what its metadata
checksums need, a soft dependency that ``depends`` does not list.  The cloud kernel has
them built in (and ACPI PCI hot-plug, ``acpiphp``, with them), so they are skipped there."""
REQUIRED_MODULES = frozenset({"virtio_pci", "virtio_net"})
"""Modules that must exist (as modules or built in) for the image to be any use."""

SECTOR = 512
DISK_MIB = 32
PART_START = 2048
"""First sector of the one partition (1 MiB, the usual alignment)."""
FAT_LABEL = "TINYGUEST"
DISK_ID = "0x7a5c0001"
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
MBR_CODE_SIZE = 440
"""Bytes of boot code before the disk signature and the partition table."""

POWER_BUTTON_SCRIPT = "#!/bin/sh\nexec poweroff\n"
ETC_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/hosts": "127.0.0.1 localhost\n",
    "etc/resolv.conf": "",
}


class BuildError(RuntimeError):
    """A step of the image build failed (the message says which and why)."""


@dataclass(frozen=True)
class Packages:
    """The cached .deb files the image is made of."""

    kernel_meta: Path
    kernel: Path
    busybox: Path

    def files(self) -> tuple[Path, ...]:
        """All package files, in a stable order."""
        return (self.kernel_meta, self.kernel, self.busybox)


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """Run a host tool; its stdout. Raises :class:`BuildError` with its stderr on failure."""
    args = [str(c) for c in cmd]
    try:
        proc = subprocess.run(
            args,
            cwd=cwd,
            input=input,
            capture_output=True,
            env={**os.environ, **env} if env else None,
            check=False,
        )
    except FileNotFoundError as exc:
        raise BuildError(f"{args[0]} is not installed (make system-deps installs it)") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise BuildError(f"{' '.join(args)} failed ({proc.returncode}): {err}")
    return proc.stdout


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"guest-image: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- packages


def deb_field(deb: Path, field: str) -> str:
    """A control field of a .deb (empty when absent)."""
    return run(["dpkg-deb", "-f", deb, field]).decode().strip()


def _version_gt(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b], check=False).returncode == 0


def _newest(debs: list[Path]) -> Path:
    def cmp(x: Path, y: Path) -> int:
        vx, vy = deb_field(x, "Version"), deb_field(y, "Version")
        return 1 if _version_gt(vx, vy) else (-1 if _version_gt(vy, vx) else 0)

    return max(debs, key=functools.cmp_to_key(cmp))


def apt_download(cache: Path, spec: str) -> None:
    """``apt-get download SPEC`` into ``cache`` (once more after ``apt-get update``)."""
    cmd = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", spec]
    try:
        run(cmd, cwd=cache)
    except BuildError as first:
        log(f"apt-get download {spec} failed; refreshing the package lists ({first})")
        run(["apt-get", "-q", "update"])
        run(cmd, cwd=cache)


def _cached(cache: Path, package: str, version: str | None = None) -> list[Path]:
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if version is not None:
        debs = [d for d in debs if deb_field(d, "Version") == version]
    return debs


def fetch_packages(cache: Path, refresh: bool = False) -> Packages:
    """The .debs of the image, downloaded into ``cache`` only when not there yet.

    With ``refresh`` the cached ones are dropped first, so the current candidate
    versions are fetched.
    """
    cache.mkdir(parents=True, exist_ok=True)
    if refresh:
        for deb in cache.glob("*.deb"):
            deb.unlink()

    def one(package: str, version: str | None = None) -> Path:
        debs = _cached(cache, package, version)
        if not debs:
            log(f"downloading {package}{'=' + version if version else ''}")
            apt_download(cache, f"{package}={version}" if version else package)
            debs = _cached(cache, package, version)
        if not debs:
            raise BuildError(f"apt-get download {package} left no .deb in {cache}")
        return _newest(debs) if len(debs) > 1 else debs[0]

    meta = one(KERNEL_META_PACKAGE)
    depends = deb_field(meta, "Depends")
    image_dep = next(
        (d.strip() for d in depends.split(",") if d.strip().startswith("linux-image-")), ""
    )
    if not image_dep:
        raise BuildError(f"{meta.name} depends on no linux-image package: {depends!r}")
    name, _, rest = image_dep.partition(" ")
    version = rest.strip("() ").removeprefix("=").strip() or None
    return Packages(kernel_meta=meta, kernel=one(name, version), busybox=one(BUSYBOX_PACKAGE))


# --------------------------------------------------------------------------- inputs digest


def host_tool_versions() -> dict[str, str]:
    """Versions of the host packages whose files end up in the image."""
    out = run(["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "syslinux", "syslinux-common"])
    return dict(line.split(" ", 1) for line in out.decode().splitlines() if " " in line)


def inputs_manifest(packages: Packages) -> dict[str, object]:
    """What the image is made of; its digest decides whether to rebuild."""
    sources = {
        name: hashlib.sha256((HERE / name).read_bytes()).hexdigest()
        for name in ("build.py", *GUEST_FILES)
    }
    debs = {deb.name: deb.stat().st_size for deb in packages.files()}
    manifest: dict[str, object] = {
        "sources": sources,
        "packages": debs,
        "host": host_tool_versions(),
    }
    blob = json.dumps(manifest, sort_keys=True).encode()
    manifest["digest"] = hashlib.sha256(blob).hexdigest()
    return manifest


def stamp_path(output: Path) -> Path:
    """Where the inputs manifest of ``output`` is stored."""
    return output.with_name(output.name + ".inputs")


def is_up_to_date(output: Path, manifest: Mapping[str, object]) -> bool:
    """Whether ``output`` exists and was built from exactly these inputs."""
    stamp = stamp_path(output)
    if not output.is_file() or not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()).get("digest") == manifest["digest"]
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- modules


def read_modinfo(ko: Path) -> dict[str, list[str]]:
    """The ``.modinfo`` section of a kernel module (ELF64 little endian)."""
    data = ko.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BuildError(f"{ko} is not an ELF64 little-endian module")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", data, shoff + i * shentsize
        )
        return name, offset, size

    _, strtab, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        end = data.index(b"\0", strtab + name)
        if data[strtab + name : end] == b".modinfo":
            info: dict[str, list[str]] = {}
            for item in data[offset : offset + size].split(b"\0"):
                key, sep, value = item.partition(b"=")
                if sep:
                    info.setdefault(key.decode(), []).append(value.decode(errors="replace"))
            return info
    return {}


def _modname(name: str) -> str:
    return name.replace("-", "_")


def module_load_order(
    moddir: Path,
    wanted: Sequence[str] = WANTED_MODULES,
    required: frozenset[str] = REQUIRED_MODULES,
) -> list[Path]:
    """Modules (paths relative to ``moddir``) to insmod, dependencies first.

    Names built into the kernel (``modules.builtin``) are skipped; a wanted module
    that does not exist is skipped unless it is ``required``.
    """
    index = {_modname(ko.stem): ko for ko in (moddir / "kernel").rglob("*.ko")}
    builtin_file = moddir / "modules.builtin"
    builtin = {
        _modname(Path(line.strip()).stem)
        for line in (builtin_file.read_text().splitlines() if builtin_file.exists() else [])
        if line.strip()
    }
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in builtin:
            return
        if name not in index:
            raise BuildError(f"module {name} is neither in {moddir} nor built in")
        seen.add(name)
        for dep in ",".join(read_modinfo(index[name]).get("depends", [])).split(","):
            if dep.strip():
                visit(_modname(dep.strip()))
        order.append(index[name].relative_to(moddir))

    for name in map(_modname, wanted):
        if name in index:
            visit(name)
        elif name not in builtin and name in required:
            raise BuildError(f"required module {name} is neither in {moddir} nor built in")
    return order


# --------------------------------------------------------------------------- initramfs


@dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive (``path`` without a leading slash)."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def newc_archive(entries: Mapping[str, CpioEntry]) -> bytes:
    """A newc (``070701``) cpio archive of ``entries``, parents created first.

    Every member is owned by root with mtime 0, so the archive depends only on
    its contents. Missing parent directories are added (mode 0755).
    """
    members = dict(entries)
    for path in list(members):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            members.setdefault(parent, CpioEntry(parent, stat.S_IFDIR | 0o755))
    out = bytearray()

    def put(ino: int, name: str, mode: int, data: bytes, rdev: tuple[int, int]) -> None:
        raw_name = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, *rdev, len(raw_name), 0)
        out.extend(b"070701" + "".join(f"{v:08x}" for v in fields).encode() + raw_name)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, path in enumerate(sorted(members, key=lambda p: p.split("/")), start=1):
        entry = members[path]
        put(ino, path, entry.mode, entry.data, entry.rdev)
    put(0, "TRAILER!!!", 0, b"", (0, 0))
    return bytes(out)


def busybox_applets(busybox: Path) -> list[str]:
    """Install paths (``bin/sh``, ``sbin/ip``…) of every applet of this busybox."""
    out = run([busybox, "--list-full"]).decode()
    return [line.strip().lstrip("/") for line in out.splitlines() if line.strip()]


def initramfs_entries(kernel_root: Path, busybox_root: Path) -> dict[str, CpioEntry]:
    """The members of the initramfs, from the extracted packages and the guest scripts."""
    busybox = busybox_root / "bin" / "busybox"
    if not busybox.is_file():
        raise BuildError(f"{BUSYBOX_PACKAGE} has no bin/busybox")
    moddirs = sorted((kernel_root / "lib" / "modules").iterdir())
    if len(moddirs) != 1:
        raise BuildError(f"expected one kernel version in the package, found {moddirs}")
    moddir = moddirs[0]
    modules = module_load_order(moddir)
    log(f"kernel {moddir.name}; modules: {', '.join(m.stem for m in modules)}")

    def file(path: str, data: bytes | str, mode: int = 0o644) -> CpioEntry:
        raw = data.encode() if isinstance(data, str) else data
        return CpioEntry(path, stat.S_IFREG | mode, raw)

    def directory(path: str, mode: int = 0o755) -> CpioEntry:
        return CpioEntry(path, stat.S_IFDIR | mode)

    entries = [
        *(directory(d) for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "lib/modules")),
        *(directory(d) for d in ("dev", "proc", "sys", "run", "mnt", "var/log")),
        directory("root", 0o700),
        directory("tmp", 0o1777),
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3)),
        file("bin/busybox", busybox.read_bytes(), 0o755),
        file("init", (HERE / "init.sh").read_bytes(), 0o755),
        file("etc/udhcpc.script", (HERE / "udhcpc.script").read_bytes(), 0o755),
        file("etc/inittab", (HERE / "inittab").read_bytes()),
        file("etc/acpi/PWRF/00000080", POWER_BUTTON_SCRIPT, 0o755),
        *(file(path, text) for path, text in ETC_FILES.items()),
        file(
            "etc/tiny-guest.modules",
            "".join(f"{moddir.name}/{m}\n" for m in modules),
        ),
        *(file(f"lib/modules/{moddir.name}/{m}", (moddir / m).read_bytes()) for m in modules),
    ]
    members = {e.path: e for e in entries}
    for applet in busybox_applets(busybox):
        if applet not in members:
            members[applet] = CpioEntry(applet, stat.S_IFLNK | 0o777, b"/bin/busybox")
    return members


def build_initramfs(kernel_root: Path, busybox_root: Path) -> bytes:
    """The gzip-compressed initramfs."""
    archive = newc_archive(initramfs_entries(kernel_root, busybox_root))
    return gzip.compress(archive, compresslevel=9, mtime=0)


# --------------------------------------------------------------------------- disk


def build_partition(part: Path, files: Mapping[str, Path], sectors: int) -> None:
    """A FAT16 filesystem image with SYSLINUX installed and ``files`` copied to its root."""
    with part.open("wb") as f:
        f.truncate(sectors * SECTOR)
    run(["mkfs.fat", "-F", "16", "-h", str(PART_START), "-n", FAT_LABEL, "-i", "7a5c0001", part])
    run(["syslinux", "--install", part])
    env = {"MTOOLS_SKIP_CHECK": "1"}
    for name, src in files.items():
        run(["mcopy", "-o", "-i", part, src, f"::/{name}"], env=env)


def build_raw_disk(raw: Path, part: Path) -> None:
    """A raw MBR disk: DOS label with one bootable FAT16 partition, SYSLINUX's MBR code."""
    total = DISK_MIB * 1024 * 1024 // SECTOR
    part_sectors = part.stat().st_size // SECTOR
    if PART_START + part_sectors > total:
        raise BuildError("the partition does not fit in the disk")
    with raw.open("wb") as f:
        f.truncate(total * SECTOR)
    script = (
        f"label: dos\nlabel-id: {DISK_ID}\nunit: sectors\n\n"
        f"start={PART_START}, size={part_sectors}, type=e, bootable\n"
    )
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", raw], input=script.encode())
    mbr = MBR_BIN.read_bytes()
    if len(mbr) > MBR_CODE_SIZE:
        raise BuildError(f"{MBR_BIN} is {len(mbr)} bytes, more than {MBR_CODE_SIZE}")
    with raw.open("r+b") as f:
        f.write(mbr)
        f.seek(PART_START * SECTOR)
        with part.open("rb") as src:
            shutil.copyfileobj(src, f, 1024 * 1024)


# --------------------------------------------------------------------------- the build


@contextlib.contextmanager
def _locked(output: Path) -> Iterator[None]:
    lock = output.with_name(output.name + ".lock")
    with lock.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_image(
    output: Path = DEFAULT_OUTPUT,
    cache_dir: Path | None = None,
    *,
    refresh: bool = False,
    force: bool = False,
) -> bool:
    """Build ``output`` unless it is up to date; True when it was (re)built.

    ``cache_dir`` holds the downloaded .debs (default: ``guest-image-cache``
    beside the image). When the image is up to date its mtime is refreshed, so
    make sees the target as newer than the builder files.
    """
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    cache = (cache_dir or output.parent / CACHE_DIR_NAME).resolve()
    with _locked(output):
        packages = fetch_packages(cache, refresh=refresh)
        manifest = inputs_manifest(packages)
        if not force and is_up_to_date(output, manifest):
            os.utime(output)
            log(f"{output} is up to date")
            return False
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="tiny-guest-", dir=cache) as tmp:
            work = Path(tmp)
            kernel_root, busybox_root = work / "kernel", work / "busybox"
            log(f"extracting {packages.kernel.name}, {packages.busybox.name}")
            run(["dpkg-deb", "-x", packages.kernel, kernel_root])
            run(["dpkg-deb", "-x", packages.busybox, busybox_root])
            vmlinuz = sorted((kernel_root / "boot").glob("vmlinuz-*"))
            if len(vmlinuz) != 1:
                raise BuildError(f"expected one vmlinuz in {packages.kernel.name}: {vmlinuz}")
            initrd = work / "initrd.gz"
            initrd.write_bytes(build_initramfs(kernel_root, busybox_root))
            log(f"initramfs {initrd.stat().st_size // 1024} KiB")
            part = work / "part.img"
            build_partition(
                part,
                {"vmlinuz": vmlinuz[0], "initrd.gz": initrd, "syslinux.cfg": HERE / "syslinux.cfg"},
                DISK_MIB * 1024 * 1024 // SECTOR - PART_START,
            )
            raw = work / "disk.raw"
            build_raw_disk(raw, part)
            staged = work / IMAGE_NAME
            run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, staged])
            stamp_path(output).unlink(missing_ok=True)
            shutil.move(staged, output)
            output.chmod(0o644)
        stamp_path(output).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        log(
            f"built {output} ({output.stat().st_size // 1024} KiB on disk, {DISK_MIB} MiB "
            f"virtual) in {time.monotonic() - started:.1f} s"
        )
        return True


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the image; 0 on success, 1 with a message on failure."""
    parser = argparse.ArgumentParser(
        prog="python -m agent.guest_image.build", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the qcow2 to write")
    parser.add_argument("--cache-dir", type=Path, help="where the .debs are kept")
    parser.add_argument(
        "--refresh", action="store_true", help="download the current packages again"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    try:
        build_image(args.output, args.cache_dir, refresh=args.refresh, force=args.force)
    except BuildError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

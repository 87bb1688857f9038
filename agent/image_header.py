"""What a disk file is, read from its header by the agent itself, before ``qemu-img``.

A qcow2 header can name other files: a backing file (a path or a ``json:`` block
spec) and an external data file.  QEMU opens them, so an imported image could make
a guest read a host file.  ``qemu-img info`` would open some of them too, so the
header is read here first, in Python: only a qcow2 that names no other file and
uses only the features below is accepted, and later ``qemu-img`` calls are told
its format (``-f``), so nothing probes a format again.

Formats other than qcow2 that QEMU recognises by their magic (several can name
other files too: vmdk extents, qed backing files) are refused by name; anything
else is raw to QEMU (the caller decides whether raw content is a disk).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from agentkit.errors import AgentError

QCOW2_MAGIC = b"QFI\xfb"
MAX_NAME = 1023
"""QEMU's limit on a backing file name; longer is refused (and not read)."""

_V2_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")  # 72 bytes
_V3_FIELDS = struct.Struct(">QQQII")  # incompatible, compatible, autoclear, refcount order, length

# Feature bits (docs/interop/qcow2.txt).
_INCOMPATIBLE = {
    0: "the dirty bit (the image was not closed cleanly; run qemu-img check -r all on it)",
    1: "the corrupt bit (run qemu-img check -r all on it)",
    2: "an external data file",
}
_BIT_KEYS = {("incompatible feature", 2): "data file", ("autoclear feature", 1): "data file"}
"""Bits that mean what a header extension says better (its entry replaces theirs)."""
_INCOMPATIBLE_OK = {3: "compression type", 4: "extended L2 entries"}
_COMPATIBLE_OK = {0: "lazy refcounts"}
_AUTOCLEAR_OK = {0: "bitmaps"}
_AUTOCLEAR = {1: "a raw external data file"}

# Header extensions.
_EXT_END = 0
_EXT_BACKING_FORMAT = 0xE2792ACA
_EXT_FEATURE_NAMES = 0x6803F857
_EXT_BITMAPS = 0x23852875
_EXT_ENCRYPTION = 0x0537BE77
_EXT_DATA_FILE = 0x44415441
_EXT_OK = (_EXT_BACKING_FORMAT, _EXT_FEATURE_NAMES, _EXT_BITMAPS)

OTHER_FORMATS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"QED\x00", "qed"),
    (0, b"KDMV", "vmdk"),
    (0, b"COWD", "vmdk"),
    (0, b"# Disk DescriptorFile", "vmdk"),
    (0, b"conectix", "vpc"),
    (0, b"vhdxfile", "vhdx"),
    (0x40, b"\x7f\x10\xda\xbe", "vdi"),
    (0, b"LUKS\xba\xbe", "luks"),
    (0, b"WithoutFreeSpace", "parallels"),
    (0, b"WithouFreSpacExt", "parallels"),
    (0, b"Bochs Virtual HD Image", "bochs"),
    (0, b"#!/bin/sh\n#V2.0 Format\n", "cloop"),
)
"""(offset, magic, format) of what QEMU would probe as another format than qcow2 or raw."""


@dataclass(frozen=True)
class Header:
    format: str
    """``qcow2`` or ``raw`` (QEMU's format name: an iso is raw too)."""
    backing_file: str = ""
    backing_format: str = ""


def inspect(path: str, label: str, *, allow_backing: bool = False) -> Header:
    """The header of ``path``; an AgentError naming ``label`` and what is wrong if it names
    another file (a backing file unless ``allow_backing``), is encrypted, uses a qcow2
    feature not listed above or is a format other than qcow2 and raw.  Blocking."""
    try:
        with open(path, "rb") as file:
            head = file.read(0x48)
            if head[:4] == QCOW2_MAGIC:
                return _qcow2(file, head, label, allow_backing)
    except OSError as exc:
        raise AgentError(f"cannot read {label}: {exc.strerror or exc}") from None
    for offset, magic, name in OTHER_FORMATS:
        if head[offset : offset + len(magic)] == magic:
            raise AgentError(
                f"{label} is a {name} image; only qcow2 and raw images (and iso) are supported"
            )
    return Header("raw")


def _qcow2(file: BinaryIO, head: bytes, label: str, allow_backing: bool) -> Header:
    if len(head) < _V2_HEADER.size:
        raise AgentError(f"{label} has a truncated qcow2 header")
    (
        _magic,
        version,
        backing_offset,
        backing_size,
        cluster_bits,
        _size,
        crypt_method,
        *_rest,
    ) = _V2_HEADER.unpack(head)
    if version not in (2, 3):
        raise AgentError(
            f"{label} is a qcow2 image of version {version}; only 2 and 3 are supported"
        )
    if not 9 <= cluster_bits <= 21:
        raise AgentError(f"{label} has an invalid qcow2 cluster size (2^{cluster_bits})")
    cluster = 1 << cluster_bits
    problems: dict[str, str] = {}  # what -> how the error says it (one entry per kind)
    if crypt_method != 0:
        problems["encryption"] = "encryption"
    header_length = _V2_HEADER.size
    if version == 3:
        rest = file.read(_V3_FIELDS.size)
        if len(rest) < _V3_FIELDS.size:
            raise AgentError(f"{label} has a truncated qcow2 header")
        incompatible, compatible, autoclear, _order, header_length = _V3_FIELDS.unpack(rest)
        if header_length < _V2_HEADER.size + _V3_FIELDS.size or header_length > cluster:
            raise AgentError(f"{label} has an invalid qcow2 header length ({header_length})")
        problems |= _bits(incompatible, _INCOMPATIBLE, _INCOMPATIBLE_OK, "incompatible feature")
        problems |= _bits(compatible, {}, _COMPATIBLE_OK, "compatible feature")
        problems |= _bits(autoclear, _AUTOCLEAR, _AUTOCLEAR_OK, "autoclear feature")
    backing_format = ""
    for ext_type, data in _extensions(file, header_length, cluster, label):
        if ext_type == _EXT_BACKING_FORMAT:
            backing_format = data.decode(errors="replace")
        elif ext_type == _EXT_DATA_FILE:
            problems["data file"] = f"an external data file ({_quoted(data)})"
        elif ext_type == _EXT_ENCRYPTION:
            problems["encryption"] = "encryption"
        elif ext_type not in _EXT_OK:
            problems[f"extension {ext_type}"] = f"an unknown header extension 0x{ext_type:08x}"
    backing_file = ""
    if backing_offset or backing_size:
        if backing_size == 0 or backing_size > MAX_NAME or backing_offset + backing_size > cluster:
            problems["backing file"] = "an invalid backing file name"
        else:
            file.seek(backing_offset)
            name = file.read(backing_size)
            backing_file = name.decode(errors="replace")
            if not allow_backing:
                problems["backing file"] = f"a backing file ({_quoted(name)})"
    if problems:
        raise AgentError(
            f"{label} is a qcow2 image with {' and '.join(problems.values())}: refused, "
            "only standalone images without unusual features can be used"
        )
    return Header("qcow2", backing_file, backing_format)


def _bits(value: int, refused: dict[int, str], known: dict[int, str], kind: str) -> dict[str, str]:
    """The feature bits of ``value`` not in ``known``, as ``problems`` entries."""
    problems = {}
    for bit in range(64):
        if value >> bit & 1 and bit not in known:
            key = _BIT_KEYS.get((kind, bit), f"{kind} {bit}")
            problems[key] = refused.get(bit, f"the unknown {kind} bit {bit}")
    return problems


def _extensions(file: BinaryIO, start: int, cluster: int, label: str) -> list[tuple[int, bytes]]:
    """The header extensions (type, data), which must end within the first cluster."""
    found = []
    offset = start
    while True:
        if offset + 8 > cluster:
            raise AgentError(f"{label} has qcow2 header extensions past its first cluster")
        file.seek(offset)
        raw = file.read(8)
        if len(raw) < 8:
            raise AgentError(f"{label} has a truncated qcow2 header extension")
        ext_type, length = struct.unpack(">II", raw)
        if ext_type == _EXT_END:
            return found
        if offset + 8 + length > cluster:
            raise AgentError(f"{label} has qcow2 header extensions past its first cluster")
        data = file.read(length)
        found.append((ext_type, data))
        offset += 8 + (length + 7) // 8 * 8


def _quoted(name: bytes) -> str:
    text = name.decode(errors="replace")
    return repr(text if len(text) <= 200 else text[:200] + "…")


def is_regular_file(path: str) -> bool:
    """A regular file, not a symlink to one (a link could be repointed after a check)."""
    try:
        return os.path.isfile(path) and not os.path.islink(path)
    except OSError:
        return False

"""Disk files that name a host file (or are otherwise unusual): each must be refused.

Shared by the agent's tests and the node's AddImage tests.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SECRET = b"zsl-test host secret\n" * 64
"""What the host file holds; no refused image may change it (or leak it)."""


@dataclass(frozen=True)
class Crafted:
    path: Path
    reason: str
    """What the refusal says (a regular expression)."""


def _qcow2(path: Path, *options: str) -> Path:
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", *options, str(path), "1M"]
    for _ in range(5):
        done = subprocess.run(argv, capture_output=True, text=True)
        # LUKS times its key derivation by the thread's CPU clock, whose ticks can read
        # 0 ms on a busy machine: qemu-img then gives up ("Unable to get accurate CPU
        # usage").  A test machine's noise, so try again.
        if "Unable to get accurate CPU usage" not in done.stderr:
            break
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return path


def _backing(directory: Path, secret: Path) -> Crafted:
    path = _qcow2(directory / "backing.qcow2", "-F", "raw", "-b", str(secret))
    return Crafted(path, rf"with a backing file \({re.escape(repr(str(secret)))}\)")


def _json_backing(directory: Path, secret: Path) -> Crafted:
    spec = json.dumps({"driver": "raw", "file": {"driver": "file", "filename": str(secret)}})
    path = _qcow2(directory / "json.qcow2", "-u", "-F", "raw", "-b", f"json:{spec}")
    return Crafted(path, r"with a backing file \('json:\{")


def _data_file(directory: Path, _secret: Path) -> Crafted:
    path = _qcow2(directory / "data.qcow2", "-o", f"data_file={directory / 'data.bin'}")
    return Crafted(path, r"with an external data file \('.*/data\.bin'\)")


def _disguised(directory: Path, secret: Path) -> Crafted:
    """A qcow2 with a backing file, named (and announced) raw."""
    path = directory / "disguised.raw"
    path.write_bytes(_backing(directory, secret).path.read_bytes())
    return Crafted(path, "with a backing file")


def _encrypted(directory: Path, _secret: Path) -> Crafted:
    path = _qcow2(
        directory / "enc.qcow2",
        "--object=secret,id=k0,data=zsl",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=k0,encrypt.iter-time=10",
    )
    return Crafted(path, "with encryption")


def _feature_bits(directory: Path, _secret: Path) -> Crafted:
    path = _qcow2(directory / "bits.qcow2")
    with path.open("r+b") as f:  # the dirty bit and an unknown incompatible bit
        f.seek(72)
        f.write((1 | 1 << 40).to_bytes(8, "big"))
    return Crafted(path, r"with the dirty bit .* and the unknown incompatible feature bit 40")


def _vmdk_extent(directory: Path, secret: Path) -> Crafted:
    path = directory / "extent.vmdk"
    path.write_text(f'# Disk DescriptorFile\nversion=1\nRW 8 FLAT "{secret}" 0\n')
    return Crafted(path, "is a vmdk image")


CASES: dict[str, Callable[[Path, Path], Crafted]] = {
    "backing file": _backing,
    "json: backing file": _json_backing,
    "external data file": _data_file,
    "raw name, qcow2 inside": _disguised,
    "encrypted": _encrypted,
    "dirty and unknown bits": _feature_bits,
    "vmdk with a host extent": _vmdk_extent,
}


def craft(case: str, directory: Path, secret: Path) -> Crafted:
    """The file of ``case`` in ``directory`` (made if missing), pointing at ``secret``."""
    directory.mkdir(parents=True, exist_ok=True)
    return CASES[case](directory, secret)


def host_secret(directory: Path) -> Path:
    """A host file an image must never make QEMU read."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "secret.txt"
    path.write_bytes(SECRET)
    return path

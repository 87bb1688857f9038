"""Facts about this host read from /proc (the agent runs on the host it manages)."""

from __future__ import annotations

from pathlib import Path


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> tuple[str, tuple[str, ...]]:
    """``(model name, sorted CPU flags)`` of the first processor listed."""
    model = ""
    flags: tuple[str, ...] = ()
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = tuple(sorted(set(value.split())))
        if model and flags:
            break
    return model, flags


def read_meminfo(path: str | Path = "/proc/meminfo") -> dict[str, int]:
    """/proc/meminfo in bytes (``MemTotal``, ``MemAvailable``...)."""
    out: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        key, sep, value = line.partition(":")
        parts = value.split()
        if sep and parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            out[key.strip()] = int(parts[0]) * scale
    return out


def format_libvirt_version(number: int) -> str:
    """libvirt's ``major * 1,000,000 + minor * 1,000 + release`` as ``x.y.z``."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

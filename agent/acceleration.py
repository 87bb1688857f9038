"""Decide whether guests get KVM or TCG by booting a tiny guest, never by /dev/kvm existing.

The guest is one BIOS boot sector (hand-assembled real-mode x86 below): it writes
``ZSL`` to COM1, counts a 32-bit register down from ``WORKLOAD_ITERATIONS``, writes
``OK`` and halts.  The same sector boots under KVM and, as a reference, under TCG,
at the same time.  KVM is chosen only if its guest prints ``ZSLOK`` *before* the
TCG guest does.

Why a race and not just "did the marker appear": on a host whose /dev/kvm is a
nested, fully emulating KVM (seen here: ``kvm-pvm``), a guest does reach its
first instructions - a marker-only probe says "kvm" - yet runs about ten times
slower than TCG, so a Linux guest seems to hang.  Real hardware KVM runs the
count-down loop an order of magnitude faster than TCG, so the race is decided by
a wide margin either way; the probe costs about as long as the TCG boot (~1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from contracts.kvm import Acceleration

log = logging.getLogger(__name__)

QEMU_BINARY = "qemu-system-x86_64"
DEFAULT_TIMEOUT = 10.0
WORKLOAD_ITERATIONS = 100_000_000
"""About 0.6 s under TCG, a few hundredths under hardware KVM (13 s for a tenth of it here)."""

FIRST_MARKER = b"ZSL"
DONE_MARKER = b"ZSLOK"

_LOAD_ADDRESS = 0x7C00
_MSG_FIRST = 48  # offsets of the two strings inside the sector (asserted below)
_MSG_DONE = 52


def boot_sector(iterations: int = WORKLOAD_ITERATIONS) -> bytes:
    """A 512-byte MBR that prints ZSL, runs ``iterations`` loop turns, prints OK, halts."""
    if not 0 < iterations < 2**32:
        raise ValueError(f"iterations must fit in 32 bits, got {iterations}")
    first = struct.pack("<H", _LOAD_ADDRESS + _MSG_FIRST)
    done = struct.pack("<H", _LOAD_ADDRESS + _MSG_DONE)
    code = b"".join(
        [
            b"\xfa",  # 0   cli
            b"\xfc",  # 1   cld
            b"\x31\xc0",  # 2   xor ax, ax
            b"\x8e\xd8",  # 4   mov ds, ax
            b"\x8e\xd0",  # 6   mov ss, ax
            b"\xbc\x00\x7c",  # 8   mov sp, 0x7c00
            b"\xba\xf8\x03",  # 11  mov dx, 0x3f8          ; COM1 data register
            b"\xbe" + first,  # 14  mov si, FIRST
            b"\xe8\x13\x00",  # 17  call print             ; 39 - 20
            b"\x66\xb9" + struct.pack("<I", iterations),  # 20  mov ecx, iterations
            b"\x66\x49",  # 26  loop: dec ecx
            b"\x75\xfc",  # 28  jnz loop               ; 26 - 30
            b"\xbe" + done,  # 30  mov si, DONE
            b"\xe8\x03\x00",  # 33  call print             ; 39 - 36
            b"\xf4",  # 36  halt: hlt
            b"\xeb\xfd",  # 37  jmp halt               ; 36 - 39
            b"\xac",  # 39  print: lodsb
            b"\x84\xc0",  # 40  test al, al
            b"\x74\x03",  # 42  jz ret                 ; 47 - 44
            b"\xee",  # 44  out dx, al
            b"\xeb\xf8",  # 45  jmp print              ; 39 - 47
            b"\xc3",  # 47  ret
        ]
    )
    assert len(code) == _MSG_FIRST
    messages = b"ZSL\x00" + b"OK\r\n\x00"
    assert len(code) + 4 == _MSG_DONE
    body = code + messages
    return body + b"\x00" * (510 - len(body)) + b"\x55\xaa"


@dataclass(frozen=True)
class BootOutcome:
    """What one probe guest did: ``finished`` means the whole marker was printed."""

    accel: str
    finished: bool
    seconds: float
    output: bytes
    detail: str = ""


async def boot(
    accel: str,
    sector: Path,
    timeout: float,
    qemu_binary: str = QEMU_BINARY,
    output: bytearray | None = None,
) -> BootOutcome:
    """Boot ``sector`` under ``accel`` until it prints DONE_MARKER, exits, or ``timeout`` passes.

    The guest's serial output accumulates in ``output`` (so a caller that cancels this
    still knows how far the guest got).  The QEMU process is always killed and reaped
    before this returns, also on cancel.
    """
    started = time.monotonic()
    cmd = [
        qemu_binary,
        "-machine",
        f"pc,accel={accel}",
        "-nodefaults",
        "-display",
        "none",
        "-m",
        "16",
        "-serial",
        "stdio",
        "-drive",
        f"file={sector},format=raw,if=ide",
        "-no-reboot",
    ]
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return BootOutcome(accel, False, 0.0, b"", f"cannot run {qemu_binary}: {exc}")
    assert proc.stdout is not None and proc.stderr is not None
    if output is None:
        output = bytearray()
    detail = ""
    try:
        async with asyncio.timeout(timeout):
            while DONE_MARKER not in output:
                chunk = await proc.stdout.read(64)
                if not chunk:
                    await proc.wait()
                    err = (await proc.stderr.read()).decode(errors="replace").strip()
                    detail = f"QEMU exited with status {proc.returncode}: {err[-300:]}"
                    break
                output.extend(chunk)
    except TimeoutError:
        detail = f"no {DONE_MARKER.decode()} within {timeout:g}s"
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return BootOutcome(
        accel, DONE_MARKER in output, time.monotonic() - started, bytes(output), detail
    )


@dataclass(frozen=True)
class ProbeResult:
    acceleration: Acceleration
    reason: str
    seconds: float


class AccelerationProbe:
    """Runs the KVM-versus-TCG boot race once and caches the result for the agent's lifetime."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, qemu_binary: str = QEMU_BINARY) -> None:
        self.timeout = timeout
        self.qemu_binary = qemu_binary
        self._result: ProbeResult | None = None
        self._lock = asyncio.Lock()

    async def result(self) -> ProbeResult:
        async with self._lock:
            if self._result is None:
                self._result = await self._probe()
                log.info(
                    "acceleration: %s after %.1fs (%s)",
                    self._result.acceleration,
                    self._result.seconds,
                    self._result.reason,
                )
            return self._result

    async def _probe(self) -> ProbeResult:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="zsl-accel-probe-") as tmp:
            # One copy per guest: QEMU locks a disk image for writing.
            sectors = {}
            for accel in ("kvm", "tcg"):
                sectors[accel] = Path(tmp) / f"bootsector-{accel}.img"
                sectors[accel].write_bytes(boot_sector())
                os.chmod(sectors[accel], 0o600)
            acceleration, reason = await self._race(sectors["kvm"], sectors["tcg"])
        return ProbeResult(acceleration, reason, time.monotonic() - started)

    async def _race(self, kvm_sector: Path, tcg_sector: Path) -> tuple[Acceleration, str]:
        kvm_output = bytearray()
        kvm = asyncio.create_task(
            boot("kvm", kvm_sector, self.timeout, self.qemu_binary, kvm_output)
        )
        tcg = asyncio.create_task(boot("tcg", tcg_sector, self.timeout, self.qemu_binary))
        try:
            done, _ = await asyncio.wait({kvm, tcg}, return_when=asyncio.FIRST_COMPLETED)
            if kvm in done:
                k = kvm.result()
                if k.finished:
                    return "kvm", f"the KVM guest finished its workload in {k.seconds:.2f}s"
                return "tcg", f"the KVM guest failed: {k.detail}"
            t = tcg.result()
            if not t.finished:
                k = await kvm
                if k.finished:
                    return "kvm", f"the KVM guest finished in {k.seconds:.2f}s"
                return "tcg", (
                    f"neither guest finished (KVM: {k.detail}; TCG: {t.detail}); "
                    "the probe itself may be broken"
                )
            reached = FIRST_MARKER in kvm_output
            return "tcg", (
                f"the TCG guest finished in {t.seconds:.2f}s and the KVM guest had not"
                + (" (it had started running)" if reached else " (it had not even started)")
                + ": KVM here is slower than emulation, guests would seem to hang"
            )
        finally:
            for task in (kvm, tcg):
                task.cancel()
            await asyncio.gather(kvm, tcg, return_exceptions=True)


class FixedAcceleration(AccelerationProbe):
    """An operator's choice (``--acceleration kvm|tcg``) that replaces the probe."""

    def __init__(self, acceleration: str) -> None:
        if acceleration not in ("kvm", "tcg"):
            raise ValueError(f"acceleration must be kvm or tcg, got {acceleration!r}")
        super().__init__()
        self._result = ProbeResult(cast(Acceleration, acceleration), "set by the operator", 0.0)

"""The acceleration probe: the boot sector really boots (TCG), and the race's decisions."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent import acceleration
from agent.acceleration import (
    DONE_MARKER,
    AccelerationProbe,
    BootOutcome,
    FixedAcceleration,
    boot,
    boot_sector,
)

needs_qemu = pytest.mark.skipif(
    shutil.which(acceleration.QEMU_BINARY) is None, reason="qemu-system-x86_64 is not installed"
)


def test_boot_sector_shape() -> None:
    sector = boot_sector()
    assert len(sector) == 512
    assert sector[510:] == b"\x55\xaa"
    assert b"ZSL\x00OK\r\n\x00" in sector
    with pytest.raises(ValueError):
        boot_sector(0)


@needs_qemu
async def test_the_boot_sector_prints_its_marker_under_tcg(tmp_path: Path) -> None:
    """So a "tcg" answer means KVM failed, not that the probe guest is broken."""
    sector = tmp_path / "s.img"
    sector.write_bytes(boot_sector(1000))
    outcome = await boot("tcg", sector, timeout=20)
    assert outcome.finished, outcome
    assert outcome.output.startswith(DONE_MARKER)


@needs_qemu
async def test_the_full_workload_finishes_under_tcg_well_within_the_timeout(
    tmp_path: Path,
) -> None:
    sector = tmp_path / "s.img"
    sector.write_bytes(boot_sector())
    outcome = await boot("tcg", sector, timeout=acceleration.DEFAULT_TIMEOUT)
    assert outcome.finished, outcome
    assert outcome.seconds < acceleration.DEFAULT_TIMEOUT / 2


@needs_qemu
async def test_a_guest_that_never_finishes_is_killed_at_the_timeout(tmp_path: Path) -> None:
    sector = tmp_path / "s.img"
    sector.write_bytes(boot_sector(2**32 - 1))  # minutes under TCG
    outcome = await boot("tcg", sector, timeout=1.0)
    assert not outcome.finished
    assert outcome.output.startswith(b"ZSL")  # it did start
    assert "within 1s" in outcome.detail


async def test_a_missing_qemu_means_tcg_with_the_reason(tmp_path: Path) -> None:
    probe = AccelerationProbe(timeout=2, qemu_binary=str(tmp_path / "no-qemu"))
    result = await probe.result()
    assert result.acceleration == "tcg"
    assert "cannot run" in result.reason


def fake_boot(outcomes: dict[str, tuple[float, bool]]) -> Any:
    """A stand-in for boot(): per accel, (seconds it takes, whether it finishes)."""

    calls: list[str] = []

    async def run(accel: str, *_a: Any, **_k: Any) -> BootOutcome:
        calls.append(accel)
        seconds, finished = outcomes[accel]
        await asyncio.sleep(seconds)
        return BootOutcome(accel, finished, seconds, b"ZSLOK" if finished else b"", "failed")

    run.calls = calls  # type: ignore[attr-defined]
    return run


@pytest.mark.parametrize(
    ("outcomes", "expected", "why"),
    [
        ({"kvm": (0.01, True), "tcg": (0.2, True)}, "kvm", "KVM guest finished"),
        ({"kvm": (5.0, True), "tcg": (0.05, True)}, "tcg", "slower than emulation"),
        ({"kvm": (0.01, False), "tcg": (0.2, True)}, "tcg", "KVM guest failed"),
        ({"kvm": (0.1, False), "tcg": (0.01, False)}, "tcg", "neither guest finished"),
    ],
)
async def test_race_decisions(
    monkeypatch: pytest.MonkeyPatch,
    outcomes: dict[str, tuple[float, bool]],
    expected: str,
    why: str,
) -> None:
    fake = fake_boot(outcomes)
    monkeypatch.setattr(acceleration, "boot", fake)
    probe = AccelerationProbe()
    result = await probe.result()
    assert (result.acceleration, why in result.reason) == (expected, True), result
    assert result.seconds < 1.0  # a slow KVM guest is not waited for
    # Cached for the agent's lifetime: no second boot.
    assert await probe.result() is result
    assert sorted(fake.calls) == ["kvm", "tcg"]


async def test_fixed_acceleration() -> None:
    assert (await FixedAcceleration("kvm").result()).acceleration == "kvm"
    with pytest.raises(ValueError):
        FixedAcceleration("auto")

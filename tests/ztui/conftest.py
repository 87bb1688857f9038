"""Fixtures for the ztui tests: a config in a temp dir, and a way to wait on the app."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from core.kernel.properties import Properties, load


def write_config(tmp_path: Path, data_dir: Path | str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[core]\ndata_dir = "{data_dir}"\n')
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, tmp_path / "data")


@pytest.fixture
def props(config_path: Path) -> Properties:
    return load(config_path, env={})


async def wait_until(
    pilot: Pilot, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Let the app run until ``predicate()`` holds, or fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)
    await pilot.pause()

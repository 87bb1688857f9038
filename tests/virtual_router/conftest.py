"""Fixtures: a short socket directory (Unix socket paths are limited to 108 bytes) and an
agent in --simulate mode served in-process on a Unix socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.virtual_router.helpers import VrClient
from virtual_router.app import VrAgent


@pytest.fixture
async def sim_agent(short_dir: Path) -> AsyncIterator[VrAgent]:
    agent = VrAgent(short_dir / "data", short_dir / "token", simulate=True)
    await agent.start(str(short_dir / "vr.sock"))
    try:
        yield agent
    finally:
        await agent.stop()


@pytest.fixture
async def sim(sim_agent: VrAgent, short_dir: Path) -> AsyncIterator[VrClient]:
    client = VrClient(str(short_dir / "vr.sock"), sim_agent.token)
    try:
        yield client
    finally:
        await client.close()

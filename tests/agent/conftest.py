"""Fixtures: a fake core, and an agent with the simulator backend on an ephemeral port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.app import Agent
from agent.simulator_backend import SimulatorBackend
from agentkit.callback import RetryPolicy
from tests.agent.helpers import AgentCaller, CoreStub

FAST_RETRIES = RetryPolicy(deadline=5.0, first_delay=0.05, max_delay=0.2, attempt_timeout=2.0)


@pytest.fixture
async def core() -> AsyncIterator[CoreStub]:
    stub = await CoreStub().start()
    try:
        yield stub
    finally:
        await stub.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent"


@pytest.fixture
async def sim_agent(data_dir: Path) -> AsyncIterator[Agent]:
    agent = Agent(SimulatorBackend(), data_dir, callback_policy=FAST_RETRIES)
    await agent.start("127.0.0.1", 0)
    try:
        yield agent
    finally:
        await agent.stop()


@pytest.fixture
async def caller(sim_agent: Agent, core: CoreStub) -> AsyncIterator[AgentCaller]:
    c = AgentCaller(f"http://127.0.0.1:{sim_agent.port}", sim_agent.token, core)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def connected(caller: AgentCaller, core: CoreStub) -> AgentCaller:
    """A caller whose agent was connected with the fake core's report URL."""
    await caller.ok("/host/connect", {"hostUuid": "host-1", "reportUrl": core.report_url})
    return caller

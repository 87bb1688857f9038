"""The host agent is its plugins: together they serve every command of contracts.kvm,
each once, and a subset of plugins serves only theirs."""

from __future__ import annotations

from pathlib import Path

from agent.app import Agent
from agent.plugins.host import HostCommands
from agent.simulator_backend import SIM_SET_VM_STATE, SimulatorBackend
from contracts import envelope, kvm
from contracts.envelope import command_paths


def _module(command: object) -> str:
    return str(getattr(getattr(command, "handler", None), "__module__", ""))


async def test_the_installed_plugins_serve_exactly_the_contract(tmp_path: Path) -> None:
    agent = Agent(SimulatorBackend(), tmp_path / "agent")
    await agent.start("127.0.0.1", 0)
    try:
        assert agent.server is not None
        registry = agent.server.registry
        served = set(registry.paths())
        core = {p for p in served if not _module(registry.get(p)).startswith("zsl_")}
        assert core == command_paths(kvm) | {SIM_SET_VM_STATE}  # plugins under plugins/ add more
        assert set(agent.server.streams) == {kvm.VM_CONSOLE_STREAM}
        assert not served & command_paths(envelope)  # built into the server
    finally:
        await agent.stop()


async def test_an_agent_serves_only_the_plugins_it_is_given(tmp_path: Path) -> None:
    agent = Agent(SimulatorBackend(), tmp_path / "agent", plugins=[HostCommands])
    await agent.start("127.0.0.1", 0)
    try:
        assert agent.server is not None
        assert agent.server.registry.paths() == sorted(
            [kvm.HOST_CONNECT, kvm.HOST_PING, kvm.HOST_CAPACITY]
        )
        assert agent.server.streams == {}
    finally:
        await agent.stop()

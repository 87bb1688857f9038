"""The router agent is its plugins: together they serve every command of
contracts.virtual_router, each once."""

from __future__ import annotations

from pathlib import Path

from contracts import virtual_router as vr
from contracts.envelope import command_paths
from virtual_router.app import VrAgent


def _from_a_plugin(agent: VrAgent, path: str) -> bool:
    """Whether a distribution under plugins/ (not the agent itself) registered ``path``."""
    assert agent.server is not None
    command = agent.server.registry.get(path)
    assert command is not None
    return str(getattr(command.handler, "__module__", "")).startswith("zsl_")


async def test_the_installed_plugins_serve_exactly_the_contract(short_dir: Path) -> None:
    agent = VrAgent(short_dir / "data", short_dir / "token", simulate=True)
    await agent.start(str(short_dir / "vr.sock"))
    try:
        assert agent.server is not None
        core_paths = {p for p in agent.server.registry.paths() if not _from_a_plugin(agent, p)}
        assert core_paths == command_paths(vr)
    finally:
        await agent.stop()

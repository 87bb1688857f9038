"""The router agent is its plugins: together they serve every command of
contracts.virtual_router, each once."""

from __future__ import annotations

from pathlib import Path

from contracts import virtual_router as vr
from contracts.envelope import command_paths
from virtual_router.app import VrAgent


async def test_the_installed_plugins_serve_exactly_the_contract(short_dir: Path) -> None:
    agent = VrAgent(short_dir / "data", short_dir / "token", simulate=True)
    await agent.start(str(short_dir / "vr.sock"))
    try:
        assert agent.server is not None
        assert set(agent.server.registry.paths()) == command_paths(vr)
    finally:
        await agent.stop()

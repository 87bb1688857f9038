"""Chains declared by plugins, changed by config.toml [chains] and by contributor plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.kernel.chains import FlowChainContributor, FlowInsertion
from core.kernel.extensions import Plugin
from core.kernel.flow import FLOW_TRACE_PATH, Flow, FlowTraceEvent
from core.kernel.node import ManagementNode, NodeError
from core.kernel.properties import load

HERE = "tests.core.kernel.test_chains"


class _Step(Flow):
    async def run(self, data: dict[str, Any]) -> None:
        data.setdefault("ran", []).append(type(self).__name__)

    async def rollback(self, data: dict[str, Any]) -> None:
        data.setdefault("rolled_back", []).append(type(self).__name__)


class AllocateFlow(_Step):
    pass


class CreateFlow(_Step):
    pass


class AuditFlow(_Step):
    pass


class QuotaFlow(_Step):
    pass


class FailFlow(_Step):
    async def run(self, data: dict[str, Any]) -> None:
        raise RuntimeError("boom")


class DemoPlugin(Plugin):
    """Declares the chain 'demo' as a service would."""

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        node.declare_chain("demo", [f"{HERE}.AllocateFlow", f"{HERE}.CreateFlow"])


class QuotaPlugin(Plugin, FlowChainContributor):
    implements = (FlowChainContributor,)

    def flow_insertions(self) -> list[FlowInsertion]:
        return [FlowInsertion("demo", f"{HERE}.QuotaFlow", before=f"{HERE}.AllocateFlow")]


def _props(tmp_path: Path, chains: str = "") -> Any:
    config = tmp_path / "config.toml"
    config.write_text(f'[core]\ndata_dir = "{tmp_path / "data"}"\n[chains]\n{chains}\n')
    return load(config, env={})


def _node(tmp_path: Path, chains: str = "", **plugins: type) -> ManagementNode:
    return ManagementNode(
        _props(tmp_path, chains), plugin_classes={"demo": DemoPlugin, **plugins}, serve_socket=False
    )


async def test_declared_chain_runs_its_default_flows(tmp_path: Path) -> None:
    async with _node(tmp_path) as node:
        outcome = await node.chain("demo").start({})
        assert outcome.succeeded
        assert outcome.data["ran"] == ["AllocateFlow", "CreateFlow"]


async def test_config_inserts_a_flow_and_it_is_traced(tmp_path: Path) -> None:
    flows = f'demo = ["{HERE}.AllocateFlow", "{HERE}.AuditFlow", "{HERE}.CreateFlow"]'
    async with _node(tmp_path, flows) as node:
        seen: list[FlowTraceEvent] = []
        node.events.subscribe(FLOW_TRACE_PATH, lambda e: seen.append(e.data))
        outcome = await node.chain("demo").start({})
        assert outcome.data["ran"] == ["AllocateFlow", "AuditFlow", "CreateFlow"]
        done = [(e.step, e.index, e.total) for e in seen if e.kind == "step-done"]
        assert done == [("AllocateFlow", 1, 3), ("AuditFlow", 2, 3), ("CreateFlow", 3, 3)]


async def test_config_inserted_failing_flow_rolls_back_the_chain(tmp_path: Path) -> None:
    flows = f'demo = ["{HERE}.AllocateFlow", "{HERE}.CreateFlow", "{HERE}.FailFlow"]'
    async with _node(tmp_path, flows) as node:
        outcome = await node.chain("demo").start({})
        assert not outcome.succeeded
        assert outcome.data["rolled_back"] == ["FailFlow", "CreateFlow", "AllocateFlow"]


async def test_plugin_inserts_a_flow_without_config(tmp_path: Path) -> None:
    async with _node(tmp_path, quota=QuotaPlugin) as node:
        assert node.chains.flows("demo")[0] == f"{HERE}.QuotaFlow"
        outcome = await node.chain("demo").start({})
        assert outcome.data["ran"] == ["QuotaFlow", "AllocateFlow", "CreateFlow"]


async def test_unknown_chain_in_config_stops_start(tmp_path: Path) -> None:
    node = _node(tmp_path, "nosuch = []")
    with pytest.raises(NodeError, match="chain nosuch, which no plugin declares"):
        await node.start()
    # Nothing is left held: a node starts on the same data dir afterwards.
    async with _node(tmp_path) as again:
        assert again.running


async def test_bad_flow_path_in_config_stops_start(tmp_path: Path) -> None:
    node = _node(tmp_path, f'demo = ["{HERE}.AllocateFlow", "{HERE}.NoSuchFlow"]')
    with pytest.raises(NodeError, match=r"demo.*NoSuchFlow"):
        await node.start()

"""The host connect chain runs over HostConnectData and never needs the flow journal: every
flow in it, the plugins' insertions included, is a NoRollbackFlow (see core.host.connect),
so an interrupted connect is left to the reconnect of every host at the next start."""

from __future__ import annotations

from core.host.connect import CHAIN, HostConnectData
from core.kernel.flow import NoRollbackFlow
from core.kernel.node import ManagementNode


async def test_every_host_connect_flow_has_nothing_to_undo(node: ManagementNode) -> None:
    assert node.chains.traits(CHAIN).data is HostConnectData
    assert not node.chains.traits(CHAIN).resumable
    flows = node.chains.builder(CHAIN).flows
    assert len(flows) > 4  # the L2, L3 and VM plugins' insertions are there
    assert [f for f in flows if not isinstance(f, NoRollbackFlow)] == []

"""A simulator lab with the reconciler loaded, its primary storage under the data dir (the
lab's files are the ones under it), VMs, a virtual router and a host NAT network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from core.host.plugin import HostPlugin
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.reconcile.plugin import ReconcilePlugin
from tests.conftest import make_node, ok
from tests.core.virtual_router.conftest import NetLab, make_net_lab


@dataclass
class ReconcileLab:
    net: NetLab
    node: ManagementNode
    host_uuid: str

    @property
    def reconciler(self) -> ReconcilePlugin:
        return self.node.plugin(ReconcilePlugin)

    async def agent_call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        agent = await self.node.plugin(HostPlugin).agent_of(self.host_uuid)
        return await agent.call(path, body)

    async def set_grace(self, value: str) -> None:
        await ok(
            self.node, "UpdateGlobalConfig", category="reconcile", name="orphanGracePeriod",
            value=value,
        )  # fmt: skip


@pytest.fixture
async def reconcile_node(props: Properties) -> AsyncIterator[ManagementNode]:
    node = make_node(props, {"reconcile": ReconcilePlugin})
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


@pytest.fixture
async def rlab(reconcile_node: ManagementNode) -> ReconcileLab:
    node = reconcile_node
    net = await make_net_lab(node, node.data_dir)
    zone = net.public_l3["zoneUuid"]
    l2 = await ok(node, "CreateL2NoVlanNetwork", name="nat-l2", zoneUuid=zone)
    await ok(
        node, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=net.cluster_uuid
    )
    l3 = await ok(
        node, "CreateL3Network", name="nat", l2NetworkUuid=l2["uuid"], category="Public",
        systemTags=["hostNat"],
    )  # fmt: skip
    await ok(
        node, "AddIpRangeByNetworkCidr", l3NetworkUuid=l3["uuid"], name="nat",
        networkCidr="198.51.100.0/24",
    )  # fmt: skip
    return ReconcileLab(net, node, net.lab.host["uuid"])

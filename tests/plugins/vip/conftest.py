"""A simulator lab whose private network gets port forwarding and EIPs from the router."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from zsl_vip.vr_agent import SIMULATED_RULESET

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.virtual_router.conftest import NetLab, make_net_lab


@dataclass
class VipLab:
    net: NetLab

    @property
    def node(self) -> ManagementNode:
        return self.net.node

    async def vm_nic(self, name: str) -> dict[str, Any]:
        vm = await self.net.create_vm(name)
        [nic] = await ok(self.node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
        return nic

    async def vip(self, name: str = "vip", **params: Any) -> dict[str, Any]:
        return await ok(
            self.node, "CreateVip", name=name, l3NetworkUuid=self.net.public_l3["uuid"], **params
        )

    async def ruleset(self) -> str:
        """What the router would apply (its simulated agent writes it down)."""
        router = await self.net.router()
        assert router is not None
        path = self.net.router_dir(router) / SIMULATED_RULESET
        return path.read_text() if path.exists() else ""

    async def rows(self) -> tuple[Any, ...]:
        return tuple(
            [await ok(self.node, q) for q in ("QueryVip", "QueryPortForwardingRule", "QueryEip")]
        )


async def make_vip_lab(node: ManagementNode, root: Path) -> VipLab:
    net = await make_net_lab(node, root)
    [provider] = await ok(node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"])
    await ok(
        node,
        "AttachNetworkServiceToL3Network",
        l3NetworkUuid=net.private_l3["uuid"],
        networkServices={provider["uuid"]: ["PortForwarding", "Eip"]},
    )
    return VipLab(net)


@pytest.fixture
async def vip_lab(node: ManagementNode, tmp_path: Path) -> VipLab:
    return await make_vip_lab(node, tmp_path)

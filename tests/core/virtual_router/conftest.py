"""A simulator lab with networks: a public L3 network, a private L3 network served by
the virtual router (DHCP, DNS, SNAT), and a virtual router offering.

The simulator host runs each appliance's real virtual-router agent with --simulate
(no namespace, dnsmasq or nft), which writes the dnsmasq files it would serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.vm.conftest import Lab, make_lab


@dataclass
class NetLab:
    lab: Lab
    node: ManagementNode
    cluster_uuid: str
    public_l3: dict[str, Any]
    private_l3: dict[str, Any]
    offering: dict[str, Any]

    async def create_vm(self, name: str, **params: Any) -> dict[str, Any]:
        return await ok(
            self.node,
            "CreateVmInstance",
            name=name,
            instanceOfferingUuid=self.lab.offering["uuid"],
            imageUuid=self.lab.image_uuid,
            l3NetworkUuids=[self.private_l3["uuid"]],
            **params,
        )

    async def router(self) -> dict[str, Any] | None:
        routers = await ok(self.node, "QueryVirtualRouterVm")
        assert len(routers) <= 1
        return routers[0] if routers else None

    @staticmethod
    def router_dir(router: dict[str, Any]) -> Path:
        return Path(router["agentTokenFile"]).parent

    async def served(self) -> dict[str, str]:
        """mac -> ip of the router's DHCP hosts file (what dnsmasq would serve)."""
        router = await self.router()
        assert router is not None
        hosts = self.router_dir(router) / "dhcp-hosts"
        out = {}
        for line in hosts.read_text().splitlines():
            mac, ip, *_ = line.split(",")
            out[mac] = ip
        return out


async def make_net_lab(node: ManagementNode, root: Path) -> NetLab:
    lab = await make_lab(node, root)
    [cluster] = await ok(node, "QueryCluster")
    zone = cluster["zoneUuid"]
    networks = {}
    for name, category, cidr in (
        ("public", "Public", "203.0.113.0/24"),
        ("private", "Private", "10.10.0.0/24"),
    ):
        l2 = await ok(node, "CreateL2NoVlanNetwork", name=f"{name}-l2", zoneUuid=zone)
        await ok(
            node, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=cluster["uuid"]
        )
        l3 = await ok(
            node,
            "CreateL3Network",
            name=name,
            l2NetworkUuid=l2["uuid"],
            category=category,
            **({"dnsDomain": "lab.lan"} if category == "Private" else {}),
        )
        await ok(
            node, "AddIpRangeByNetworkCidr", l3NetworkUuid=l3["uuid"], name=name, networkCidr=cidr
        )
        networks[name] = l3
    [provider] = await ok(node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"])
    await ok(
        node,
        "AttachNetworkServiceToL3Network",
        l3NetworkUuid=networks["private"]["uuid"],
        networkServices={provider["uuid"]: ["DHCP", "DNS", "SNAT"]},
    )
    offering = await ok(
        node,
        "CreateVirtualRouterOffering",
        name="vr",
        zoneUuid=zone,
        publicNetworkUuid=networks["public"]["uuid"],
    )
    return NetLab(lab, node, cluster["uuid"], networks["public"], networks["private"], offering)


@pytest.fixture
async def net_lab(node: ManagementNode, tmp_path: Path) -> NetLab:
    return await make_net_lab(node, tmp_path)

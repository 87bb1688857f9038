"""A simulator lab for security groups: one host, a private L3 network (no services: the
groups need none) and three VMs a, b, c on it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from zsl_securitygroup.contract import ShowCmd, ShowRsp

from core.host.spi import agent_of
from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.vm.conftest import Lab, make_lab


class AgentCtx:
    """The parts of agent.context.HostAgentContext the agent plugin reads."""

    def __init__(self, hypervisor: str, lab: str) -> None:
        self.backend = SimpleNamespace(hypervisor_type=hypervisor, network=SimpleNamespace(lab=lab))
        self.host_network_lock = asyncio.Lock()


@dataclass
class SgLab:
    lab: Lab
    node: ManagementNode
    l3: dict[str, Any]
    vms: dict[str, dict[str, Any]]
    nics: dict[str, dict[str, Any]]
    """VM name -> its NIC."""

    async def show(self) -> ShowRsp:
        agent = await agent_of(self.node, self.lab.host["uuid"])
        return await agent.send(ShowCmd())

    async def group(self, name: str) -> dict[str, Any]:
        group: dict[str, Any] = await ok(self.node, "CreateSecurityGroup", name=name)
        await ok(
            self.node,
            "AttachSecurityGroupToL3Network",
            securityGroupUuid=group["uuid"],
            l3NetworkUuid=self.l3["uuid"],
        )
        return group


async def l3_network(node: ManagementNode, cluster_uuid: str, name: str = "private") -> Any:
    [zone] = await ok(node, "QueryZone")
    l2 = await ok(node, "CreateL2NoVlanNetwork", name=f"{name}-l2", zoneUuid=zone["uuid"])
    await ok(node, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=cluster_uuid)
    l3 = await ok(node, "CreateL3Network", name=name, l2NetworkUuid=l2["uuid"])
    await ok(
        node, "AddIpRangeByNetworkCidr", name="r", l3NetworkUuid=l3["uuid"],
        networkCidr="10.9.0.0/24",
    )  # fmt: skip
    return l3


async def make_sg_lab(node: ManagementNode, root: Path) -> SgLab:
    lab = await make_lab(node, root)
    l3 = await l3_network(node, lab.host["clusterUuid"])
    vms, nics = {}, {}
    for name in ("a", "b", "c"):
        vms[name] = await ok(
            node,
            "CreateVmInstance",
            name=name,
            instanceOfferingUuid=lab.offering["uuid"],
            imageUuid=lab.image_uuid,
            l3NetworkUuids=[l3["uuid"]],
        )
        [nics[name]] = await ok(
            node, "QueryVmNic", conditions=[f"vmInstanceUuid={vms[name]['uuid']}"]
        )
    return SgLab(lab, node, l3, vms, nics)


@pytest.fixture
async def sg(node: ManagementNode, tmp_path: Path) -> SgLab:
    return await make_sg_lab(node, tmp_path)

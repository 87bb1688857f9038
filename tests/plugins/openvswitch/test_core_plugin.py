"""The plugin's management-node side, on the simulator: where its bridges go, what a NIC
on its networks is, and where it cannot go (simulator hosts, an interface another switch
holds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from zsl_openvswitch.agent_plugin import _bridge
from zsl_openvswitch.contract import BRIDGE_PREFIX, V_SWITCH_TYPE, bridge_name
from zsl_openvswitch.core_plugin import OpenvSwitchPlugin

from agent.fields import Fields
from agentkit.errors import ArgumentError
from contracts import kvm
from core.kernel.errors import SysErrors
from core.kernel.node import ManagementNode
from tests.conftest import fails, ok
from tests.core.vm.conftest import make_lab


async def test_vlan_networks_share_a_bridge_and_an_untagged_one_has_its_own(
    node: ManagementNode,
) -> None:
    zone = (await ok(node, "CreateZone", name="z"))["uuid"]

    async def create(name: str, vlan: int | None = None, iface: str = "") -> dict:
        api = "CreateL2VlanNetwork" if vlan else "CreateL2NoVlanNetwork"
        extra = {"vlan": vlan} if vlan else {}
        return await ok(
            node, api, name=name, zoneUuid=zone, vSwitchType=V_SWITCH_TYPE,
            physicalInterface=iface, **extra,
        )  # fmt: skip

    red, blue = await create("red", 10, "eth9"), await create("blue", 20, "eth9")
    assert red["bridgeName"] == blue["bridgeName"]
    assert red["bridgeName"].startswith(BRIDGE_PREFIX) and len(red["bridgeName"]) <= 15
    lone, other = await create("lone"), await create("other")
    assert len({lone["bridgeName"], other["bridgeName"], red["bridgeName"]}) == 3
    refused = await fails(
        node, "CreateL2NoVlanNetwork", SysErrors.INVALID_ARGUMENT, name="flat", zoneUuid=zone,
        vSwitchType=V_SWITCH_TYPE, physicalInterface="eth9",
    )  # fmt: skip
    assert "interface eth9 is the uplink of L2 network" in refused
    linux = await fails(
        node, "CreateL2NoVlanNetwork", SysErrors.INVALID_ARGUMENT, name="lb", zoneUuid=zone,
        physicalInterface="eth9",
    )  # fmt: skip
    assert "interface eth9" in linux and "one bridge only" in linux
    await ok(node, "CreateL2NoVlanNetwork", name="lb", zoneUuid=zone, physicalInterface="eth8")
    held = await fails(
        node, "CreateL2VlanNetwork", SysErrors.INVALID_ARGUMENT, name="green", zoneUuid=zone,
        vSwitchType=V_SWITCH_TYPE, physicalInterface="eth8", vlan=30,
    )  # fmt: skip
    assert "interface eth8 is the uplink of L2 network lb (LinuxBridge)" in held


async def test_its_networks_are_kvm_only(node: ManagementNode, tmp_path: Path) -> None:
    lab = await make_lab(node, tmp_path)
    [zone] = await ok(node, "QueryZone")
    l2 = await ok(
        node, "CreateL2VlanNetwork", name="red", zoneUuid=zone["uuid"],
        vSwitchType=V_SWITCH_TYPE, vlan=10,
    )  # fmt: skip
    refused = await fails(
        node,
        "AttachL2NetworkToCluster",
        SysErrors.OPERATION_ERROR,
        l2NetworkUuid=l2["uuid"],
        clusterUuid=lab.host["clusterUuid"],
    )
    assert refused == (
        "no enabled plugin realises L2VlanNetwork networks with vSwitch type OpenvSwitch "
        "on Simulator hosts"
    )


def test_a_nic_is_an_open_vswitch_access_port_of_its_vlan() -> None:
    plugin = OpenvSwitchPlugin(None)  # type: ignore[arg-type]
    nic = kvm.ApplianceNicTO(bridge_name="zslo-123456789", mac="fa:00:00:00:00:01",
                             ip="10.0.0.1", prefix_length=24)  # fmt: skip
    done = plugin.complete_nic_information({"vlan": 10}, nic)
    assert (done.virtual_port_type, done.vlan_id) == ("openvswitch", 10)
    assert plugin.complete_nic_information({"vlan": None}, nic).vlan_id is None


def test_the_agent_takes_every_bridge_name_the_core_makes_and_no_other() -> None:
    """9 hex digits may all be decimal ones (1 name in 70)."""
    assert _bridge(Fields({"bridgeName": "zslo-123456789"})) == "zslo-123456789"
    assert _bridge(Fields({"bridgeName": bridge_name("zone", "eth1")})).startswith("zslo-")
    for bad in ("zslbr-12345", "zslo-", "zslo-ABC", "zslo-a b", "zslo-12345678901"):
        with pytest.raises(ArgumentError, match="not an Open vSwitch bridge of the project"):
            _bridge(Fields({"bridgeName": bad}))

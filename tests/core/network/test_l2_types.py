"""L2 network types and vSwitch types as plugins: a test vSwitch plugin, given to the node
like any installed plugin, adds a kind of switch with VLANs without a core change; its
networks are realised by (L2 type, vSwitch type, hypervisor) and their NICs completed by
it; without it they are reported, not silently broken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from contracts import kvm
from core.kernel.errors import SysErrors
from core.kernel.extensions import Plugin
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.kernel.rest import AgentClient
from core.kvm.extension_points import KVMCompleteNicInformationExtensionPoint, NicKey, NicT
from core.network.l2.extension_points import (
    L2NetworkRealizationExtensionPoint,
    RealizationKey,
    VSwitchFactory,
)
from core.network.l2.models import L2NetworkVO
from core.network.l2.plugin import UNREALIZABLE_PATH
from tests.conftest import fails, make_node, ok
from tests.core.vm.conftest import Lab, make_lab

TEST_SWITCH = "TestSwitch"
CALLS: list[tuple[Any, ...]] = []


class SwitchPlugin(Plugin):
    """One shared switch per interface; VLAN and untagged networks; Simulator hosts only."""

    implements = (
        VSwitchFactory,
        L2NetworkRealizationExtensionPoint,
        KVMCompleteNicInformationExtensionPoint,
    )
    v_switch_type = TEST_SWITCH
    realization_keys = (
        RealizationKey("L2VlanNetwork", TEST_SWITCH, "Simulator"),
        RealizationKey("L2NoVlanNetwork", TEST_SWITCH, "Simulator"),
    )
    nic_keys = (NicKey("L2VlanNetwork", TEST_SWITCH), NicKey("L2NoVlanNetwork", TEST_SWITCH))

    def switch_name(self, session: Session, l2: L2NetworkVO, vlan: int | None) -> str:
        return "zslts-" + (l2.physical_interface or "isolated")[:9]

    async def realize(self, l2: dict[str, Any], host_uuid: str, agent: AgentClient) -> None:
        CALLS.append(("realize", l2["name"], l2.get("vlan"), host_uuid, type(agent).__name__))

    async def unrealize(self, l2: dict[str, Any], host_uuid: str, agent: AgentClient) -> None:
        CALLS.append(("unrealize", l2["name"], host_uuid))

    def complete_nic_information(self, nic: dict[str, Any], to: NicT) -> NicT:
        CALLS.append(("complete", nic["vlan"], nic["bridgeName"]))
        return to.model_copy(update={"virtual_port_type": "openvswitch", "vlan_id": nic["vlan"]})


async def _networks(lab: Lab) -> tuple[dict[str, Any], ...]:
    node, cluster = lab.node, lab.host["clusterUuid"]
    [zone] = await ok(node, "QueryZone")
    nets = []
    for name, vlan in (("red", 10), ("blue", 20)):
        l2 = await ok(
            node,
            "CreateL2VlanNetwork",
            name=name,
            zoneUuid=zone["uuid"],
            vSwitchType=TEST_SWITCH,
            vlan=vlan,
        )
        await ok(node, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=cluster)
        nets.append(l2)
    return tuple(nets)


async def _l3_on(node: ManagementNode, l2: dict[str, Any]) -> dict[str, Any]:
    """An L3 network with a range on ``l2``."""
    l3 = await ok(node, "CreateL3Network", name=f"{l2['name']}-l3", l2NetworkUuid=l2["uuid"])
    await ok(
        node,
        "AddIpRangeByNetworkCidr",
        name="r",
        l3NetworkUuid=l3["uuid"],
        networkCidr="10.9.0.0/24",
    )
    return l3


async def test_a_plugins_vswitch_type_with_vlans_needs_no_core_change(
    props: Properties, tmp_path: Path
) -> None:
    CALLS.clear()
    async with make_node(props, {"testSwitch": SwitchPlugin}) as node:
        lab = await make_lab(node, tmp_path)
        types = await ok(node, "GetVSwitchTypes")
        assert {"LinuxBridge", TEST_SWITCH} <= set(types["types"])
        assert (await ok(node, "GetL2NetworkTypes"))["types"] == [
            "L2NoVlanNetwork",
            "L2VlanNetwork",
        ]
        red, blue = await _networks(lab)
        assert red["bridgeName"] == blue["bridgeName"] == "zslts-isolated"  # one shared switch
        assert (red["vlan"], red["vSwitchType"], red["realizable"]) == (10, TEST_SWITCH, True)
        host = lab.host["uuid"]
        assert ("realize", "red", 10, host, "AgentClient") in CALLS
        assert ("realize", "blue", 20, host, "AgentClient") in CALLS

        [zone] = await ok(node, "QueryZone")
        again = await fails(
            node,
            "CreateL2VlanNetwork",
            SysErrors.INVALID_ARGUMENT,
            name="red-again",
            zoneUuid=zone["uuid"],
            vSwitchType=TEST_SWITCH,
            vlan=10,
        )
        assert "VLAN 10 on no interface (TestSwitch) is L2 network red's already" in again

        l3 = await _l3_on(node, red)
        await ok(
            node,
            "CreateVmInstance",
            name="vm",
            instanceOfferingUuid=lab.offering["uuid"],
            imageUuid=lab.image_uuid,
            l3NetworkUuids=[l3["uuid"]],
        )
        assert ("complete", 10, "zslts-isolated") in CALLS


async def test_vlans_need_a_vswitch_type_that_tags_and_unknown_types_are_named(
    node: ManagementNode,
) -> None:
    zone = await ok(node, "CreateZone", name="z")
    linux = await fails(
        node,
        "CreateL2VlanNetwork",
        SysErrors.INVALID_ARGUMENT,
        name="v",
        zoneUuid=zone["uuid"],
        vlan=10,
    )
    assert (
        "no enabled plugin realises L2VlanNetwork networks with vSwitch type LinuxBridge" in linux
    )
    unknown = await fails(
        node,
        "CreateL2NoVlanNetwork",
        SysErrors.INVALID_ARGUMENT,
        name="o",
        zoneUuid=zone["uuid"],
        vSwitchType="NoSuchSwitch",
    )
    assert "vSwitch type NoSuchSwitch is not installed or its plugin is disabled" in unknown
    assert "(installed: LinuxBridge" in unknown
    assert await ok(node, "QueryL2Network") == []  # nothing made
    bad = await node.call(
        "CreateL2VlanNetwork", {"name": "v", "zoneUuid": zone["uuid"], "vlan": 4095}
    )
    assert not bad.success and "vlan" in str(bad.error)
    plain = await ok(node, "CreateL2NoVlanNetwork", name="plain", zoneUuid=zone["uuid"])
    assert (plain["vSwitchType"], plain["realizable"], "vlan" in plain) == (
        "LinuxBridge",
        True,
        False,
    )


async def test_without_its_plugin_a_network_is_reported_not_silently_broken(
    props: Properties, tmp_path: Path
) -> None:
    """The vSwitch plugin disabled: the host still connects (the network is reported as
    not realisable there), the type is hidden, and a NIC on the network is refused."""
    async with make_node(props, {"testSwitch": SwitchPlugin}) as node:
        lab = await make_lab(node, tmp_path)
        red, _blue = await _networks(lab)
        l3 = await _l3_on(node, red)
        host, offering, image = lab.host["uuid"], lab.offering["uuid"], lab.image_uuid
    async with make_node(props) as node:  # the plugin is gone
        reported: list[dict[str, Any]] = []
        node.events.subscribe(UNREALIZABLE_PATH, lambda event: reported.append(event.data))
        await ok(node, "ReconnectHost", uuid=host)
        assert {(r["l2NetworkName"], r["hostUuid"]) for r in reported} == {
            ("red", host),
            ("blue", host),
        }
        assert "vSwitch type TestSwitch" in reported[0]["reason"]
        [red] = await ok(node, "QueryL2Network", conditions=["name=red"])
        assert (red["realizable"], red["vlan"]) == (False, 10)
        assert TEST_SWITCH not in (await ok(node, "GetVSwitchTypes"))["types"]
        refused = await node.call(
            "CreateVmInstance",
            {
                "name": "vm",
                "instanceOfferingUuid": offering,
                "imageUuid": image,
                "l3NetworkUuids": [l3["uuid"]],
            },
        )
        assert not refused.success and refused.error is not None
        assert "is the plugin of TestSwitch disabled?" in str(refused.error)
        assert await ok(node, "QueryVmInstance") == []


def test_the_nic_handed_to_the_agent_says_how_it_is_plugged() -> None:
    nic = kvm.NicTO(mac="fa:00:00:00:00:01", bridge_name="zslts-x", device_name="zslt1")
    done = SwitchPlugin.complete_nic_information(
        None,  # type: ignore[arg-type]
        {"vlan": 7, "bridgeName": "zslts-x"},
        nic,
    )
    assert done.to_json()["virtualPortType"] == "openvswitch" and done.vlan_id == 7

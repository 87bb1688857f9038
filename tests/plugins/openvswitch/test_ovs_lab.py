"""Issue 14's acceptance for Open vSwitch, on the real host (qemu:///system, the userspace
datapath, namespaces, dnsmasq, nftables): two tiny VMs on a VLAN-tagged Open vSwitch
network served by the virtual router get IPAM's addresses by DHCP, resolve each other by
name and reach an "upstream" namespace through SNAT; a VM on a second VLAN network on the
same bridge cannot reach them; deleting everything leaves OVSDB and the host as before."""

from __future__ import annotations

from typing import Any

import pytest
from zsl_openvswitch.contract import V_SWITCH_TYPE
from zsl_openvswitch.ovsdb import Ovsdb, vswitchd_version

from tests.conftest import ok
from tests.system.net_lab import (
    HostState,
    Lab,
    Upstream,
    leftovers,
    running_node,
    unrelated,
)
from tests.system.test_network_libvirt import Guest

pytestmark = pytest.mark.system

if not vswitchd_version()[0]:
    pytest.skip("needs a running ovs-vswitchd (make services)", allow_module_level=True)

VLANS = {"red": (10, ("10.77.0.10", "10.77.0.99")), "blue": (20, ("10.77.0.100", "10.77.0.199"))}
"""The same subnet on both VLANs (each with its router at 10.77.0.1): a guest of one finds
a guest of the other only if frames cross the VLANs, not through a router."""


async def ovs_network(lab: Lab, name: str) -> dict[str, Any]:
    """An OVS VLAN network with an L3 network the virtual router serves; its L3."""
    node, (vlan, (start, end)) = lab.node, VLANS[name]
    l2 = await ok(
        node,
        "CreateL2VlanNetwork",
        name=f"ovs-{name}",
        zoneUuid=lab.zone_uuid,
        vSwitchType=V_SWITCH_TYPE,
        vlan=vlan,
    )
    lab.owned.l2_uuids.add(l2["uuid"])
    lab.owned.prefixes.add(l2["bridgeName"])
    await ok(
        node, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=lab.cluster_uuid
    )
    l3 = await ok(
        node,
        "CreateL3Network",
        name=f"ovs-{name}",
        l2NetworkUuid=l2["uuid"],
        category="Private",
        dnsDomain="lab.lan",
    )
    await ok(
        node,
        "AddIpRange",
        l3NetworkUuid=l3["uuid"],
        name=name,
        startIp=start,
        endIp=end,
        netmask="255.255.255.0",
        gateway="10.77.0.1",
    )
    [provider] = await ok(node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"])
    await ok(
        node,
        "AttachNetworkServiceToL3Network",
        l3NetworkUuid=l3["uuid"],
        networkServices={provider["uuid"]: ["DHCP", "DNS", "SNAT"]},
    )
    return {**l3, "l2": l2}


async def guest(lab: Lab, name: str, l3: dict[str, Any]) -> Guest:
    vm, console = await lab.boot(name, l3NetworkUuids=[l3["uuid"]])
    return Guest(vm, vm["nic"]["ip"], vm["nic"]["mac"], console)


async def test_two_vms_on_an_open_vswitch_vlan_network() -> None:
    bridges_before = set(Ovsdb().bridges())
    async with running_node("ovs") as lab:
        before = HostState.now()
        upstream = Upstream(lab.root)
        lab.owned.prefixes.add(upstream.prefix)
        try:
            upstream.create()
            upstream.start_listener()
            await lab.make_networks(upstream.host_end)  # the public side, as in the homelab
            red, blue = await ovs_network(lab, "red"), await ovs_network(lab, "blue")
            assert red["l2"]["bridgeName"] == blue["l2"]["bridgeName"]  # one shared bridge
            alpha, bravo = await guest(lab, "alpha", red), await guest(lab, "bravo", red)
            charlie = await guest(lab, "charlie", blue)

            # Every VM NIC and router guest veth is an OVS access port of its network's VLAN.
            ovsdb, bridge = Ovsdb(), red["l2"]["bridgeName"]
            ports = {port: ovsdb.tag(port) for port in ovsdb.ports(bridge)}
            assert sorted(ports.values()) == [10, 10, 10, 20, 20], ports  # 3 VMs, 2 routers

            routers = {r["name"]: r for r in await lab.routers()}
            assert len(routers) == 2
            [red_router] = [
                r for r in routers.values()
                if any(n["l3NetworkUuid"] == red["uuid"] for n in await lab.nics(r["uuid"]))
            ]  # fmt: skip
            public_ip = next(
                n["ip"] for n in await lab.nics(red_router["uuid"]) if n["metaData"] == "public"
            )
            await alpha.checks(bravo, upstream, public_ip)
            await bravo.checks(alpha, upstream, public_ip)

            # VLAN 20 does not reach VLAN 10: the same bridge, the same subnet, no ARP answer
            # (where, on VLAN 10, one guest reaches the other).
            rc, out = await alpha.console.run(f"ping -c 2 -W 2 {bravo.ip}", timeout=30)
            assert rc == 0, f"alpha cannot reach bravo on their VLAN:\n{out}"
            rc, out = await charlie.console.run("ping -c 2 -W 2 10.77.0.1", timeout=30)
            assert rc == 0, f"charlie cannot reach its own router:\n{out}"
            for other in (alpha, bravo):
                rc, out = await charlie.console.run(f"ping -c 2 -W 2 {other.ip}", timeout=30)
                assert rc != 0, f"charlie reached {other.name} across VLANs:\n{out}"
            await lab.delete_ours()
            for l3 in (red, blue):
                await ok(lab.node, "DeleteL3Network", uuid=l3["uuid"])
                await ok(lab.node, "DeleteL2Network", uuid=l3["l2"]["uuid"])
        finally:
            upstream.destroy()
        after = HostState.now()
        print(f"zsl objects of other sessions (tolerated): {unrelated(before, after, lab.owned)}")
        assert leftovers(before, after, lab.owned) == {}
        assert not lab.appliances_dir.exists() or not any(lab.appliances_dir.iterdir())
    assert set(Ovsdb().bridges()) == bridges_before

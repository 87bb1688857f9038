"""Open vSwitch networks on the real KVM host: the bridge made through OVSDB when a
network is attached, the host's connect refused (naming Open vSwitch) while ovs-vswitchd
is stopped, and connecting again once it runs; nothing left in OVSDB at the end."""

from __future__ import annotations

import subprocess

import pytest
from zsl_openvswitch.contract import V_SWITCH_TYPE
from zsl_openvswitch.ovsdb import Ovsdb, vswitchd_version

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.system.test_kvm_host import add_local_host, kvm_props  # noqa: F401 (fixture)

pytestmark = pytest.mark.system
OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"

if not vswitchd_version()[0]:
    pytest.skip("needs a running ovs-vswitchd (make services)", allow_module_level=True)


def vswitchd(action: str) -> None:
    args = [OVS_CTL, action, "--no-ovsdb-server"]
    subprocess.run(
        [*args, "--system-id=random"] if action == "start" else args,
        check=True,
        capture_output=True,
    )


async def test_host_connect_needs_ovs_vswitchd_for_the_clusters_ovs_networks(
    kvm_props: Properties,  # noqa: F811
) -> None:
    bridges_before = set(Ovsdb().bridges())
    try:
        await _scenario(kvm_props)
    finally:  # a failure half-way must not leave its bridge in OVSDB
        vswitchd("start")
        for bridge in set(Ovsdb().bridges()) - bridges_before:
            Ovsdb().delete_bridge(bridge)
    assert set(Ovsdb().bridges()) == bridges_before


async def _scenario(props: Properties) -> None:
    """The scenario; it deletes what it made through the API (the test checks OVSDB)."""
    async with ManagementNode(props, serve_socket=False) as node:
        host = await add_local_host(node, props)
        [zone] = await ok(node, "QueryZone")
        l2 = await ok(
            node,
            "CreateL2VlanNetwork",
            name="ovs-red",
            zoneUuid=zone["uuid"],
            vSwitchType=V_SWITCH_TYPE,
            vlan=10,
        )
        await ok(
            node,
            "AttachL2NetworkToCluster",
            l2NetworkUuid=l2["uuid"],
            clusterUuid=host["clusterUuid"],
        )
        assert l2["bridgeName"] in Ovsdb().bridges()
        try:
            vswitchd("stop")
            reply = await node.call("ReconnectHost", {"uuid": host["uuid"]})
        finally:
            vswitchd("start")
        assert not reply.success and reply.error is not None
        refused = str(reply.error)
        assert "the Open vSwitch L2 network(s) ovs-red of its cluster" in refused, refused
        assert "ovs-vswitchd does not run" in refused, refused
        [now] = await ok(node, "QueryHost")
        assert now["status"] == "Disconnected"
        await ok(node, "ReconnectHost", uuid=host["uuid"])  # it runs again
        await ok(
            node,
            "DetachL2NetworkFromCluster",
            l2NetworkUuid=l2["uuid"],
            clusterUuid=host["clusterUuid"],
        )
        await ok(node, "DeleteL2Network", uuid=l2["uuid"])
        await ok(node, "DeleteHost", uuid=host["uuid"])

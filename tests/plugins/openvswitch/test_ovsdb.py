"""The plugin's OVSDB side on the real host (Open vSwitch started by ``make services``,
userspace datapath): bridges, VLAN access ports, a device OVS cannot open, and a veth
plugged as a router's is.  Every object is ``zsl``-named and removed, even on failure."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from zsl_openvswitch.agent_plugin import OvsPortPlugger
from zsl_openvswitch.ovsdb import Ovsdb, vswitchd_version

from agentkit.errors import AgentError

running, why = vswitchd_version()
if os.geteuid() != 0 or not running:
    pytest.skip(f"needs root and a running ovs-vswitchd ({why})", allow_module_level=True)


def sh(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    """A bridge and two veth names of this test; all removed at the end."""
    tag = secrets.token_hex(4)
    made = {"bridge": f"zslo-t{tag}", "veth": f"zslxv{tag}", "peer": f"zslxp{tag}"}
    ovsdb = Ovsdb()
    try:
        yield made
    finally:
        ovsdb.delete_bridge(made["bridge"])
        subprocess.run(["ip", "link", "del", made["veth"]], capture_output=True)


def test_a_bridge_with_vlan_access_ports_is_made_and_removed(names: dict[str, str]) -> None:
    ovsdb, bridge = Ovsdb(), names["bridge"]
    ovsdb.add_bridge(bridge, "")
    ovsdb.add_bridge(bridge, "")  # idempotent
    assert bridge in ovsdb.bridges()
    assert "netdev" in sh("ovs-vsctl", "get", "Bridge", bridge, "datapath_type")
    sh("ip", "link", "add", names["veth"], "type", "veth", "peer", "name", names["peer"])
    plugger = OvsPortPlugger(ovsdb)
    plugger.plug(bridge, names["veth"], 10)
    assert plugger.plugged(bridge, names["veth"], 10)
    assert not plugger.plugged(bridge, names["veth"], 20)
    plugger.plug(bridge, names["veth"], 20)  # a repeat repairs the tag
    assert ovsdb.tag(names["veth"]) == 20
    plugger.plug(bridge, names["veth"], None)
    assert ovsdb.tag(names["veth"]) is None and plugger.plugged(bridge, names["veth"], None)
    plugger.unplug(names["veth"])
    plugger.unplug(names["veth"])  # missing is fine
    assert names["veth"] not in ovsdb.ports(bridge)
    ovsdb.delete_bridge(bridge)
    ovsdb.delete_bridge(bridge)
    assert bridge not in ovsdb.bridges()


def test_a_device_open_vswitch_cannot_open_is_refused_and_left_out(
    names: dict[str, str],
) -> None:
    ovsdb, bridge = Ovsdb(), names["bridge"]
    ovsdb.add_bridge(bridge, "")
    with pytest.raises(AgentError, match=f"Open vSwitch cannot use {names['veth']}"):
        ovsdb.plug(bridge, names["veth"], 10)  # no such device
    assert ovsdb.ports(bridge) == []

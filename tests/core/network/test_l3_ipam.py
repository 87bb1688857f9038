"""L3 networks, IP ranges and IPAM through the API (no host needed: nothing is realised)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.kernel.errors import OperationError, SysErrors
from core.kernel.node import ManagementNode
from core.network.l3.ipam import IP_EXHAUSTED, IP_TAKEN, allocate_ip, parse_range, range_by_cidr
from core.network.l3.models import UsedIpVO
from tests.conftest import fails, ok


async def lab(node: ManagementNode) -> dict[str, Any]:
    zone = await ok(node, "CreateZone", name="z")
    l2 = await ok(node, "CreateL2NoVlanNetwork", name="l2", zoneUuid=zone["uuid"])
    l3 = await ok(
        node, "CreateL3Network", name="priv", l2NetworkUuid=l2["uuid"], dnsDomain="lab.lan"
    )
    return {"zone": zone, "l2": l2, "l3": l3}


def test_range_checks_name_what_is_wrong() -> None:
    spec = parse_range("10.0.0.10", "10.0.0.20", "255.255.255.0", "10.0.0.1")
    assert str(spec.network) == "10.0.0.0/24"
    cases = {
        ("10.0.0.20", "10.0.0.10", "255.255.255.0", "10.0.0.1"): "after endIp",
        ("10.0.1.10", "10.0.1.20", "255.255.255.0", "10.0.0.1"): "outside the network",
        ("10.0.0.1", "10.0.0.20", "255.255.255.0", "10.0.0.5"): "gateway 10.0.0.5 must be outside",
        ("10.0.0.0", "10.0.0.20", "255.255.255.0", "10.0.0.254"): "network address",
        ("10.0.0.10", "10.0.0.255", "255.255.255.0", "10.0.0.1"): "broadcast address",
        ("10.0.0.x", "10.0.0.20", "255.255.255.0", "10.0.0.1"): "startIp '10.0.0.x'",
        ("10.0.0.10", "10.0.0.20", "255.0.255.0", "10.0.0.1"): "netmask",
    }
    for args, message in cases.items():
        with pytest.raises(OperationError, match=message):
            parse_range(*args)
    assert range_by_cidr("10.0.0.0/24") == ("10.0.0.2", "10.0.0.254", "255.255.255.0", "10.0.0.1")
    assert range_by_cidr("10.0.0.0/24", "10.0.0.254")[:2] == ("10.0.0.1", "10.0.0.253")
    with pytest.raises(OperationError, match="not an IPv4 network"):
        range_by_cidr("10.0.0.1/24")
    with pytest.raises(OperationError, match="too large"):
        range_by_cidr("10.0.0.0/8")
    with pytest.raises(OperationError, match="too small"):
        range_by_cidr("10.0.0.0/31")


async def test_l3_ranges_dns_and_refusals(node: ManagementNode) -> None:
    net = await lab(node)
    l3 = net["l3"]["uuid"]
    assert net["l3"]["category"] == "Private" and net["l3"]["dnsDomain"] == "lab.lan"
    first = await ok(
        node, "AddIpRangeByNetworkCidr", l3NetworkUuid=l3, name="r1", networkCidr="10.9.0.0/24"
    )
    assert (first["startIp"], first["endIp"], first["gateway"]) == (
        "10.9.0.2",
        "10.9.0.254",
        "10.9.0.1",
    )
    # Another range of the same L3 must share its network; none may overlap on the same L2.
    text = await fails(
        node,
        "AddIpRangeByNetworkCidr",
        SysErrors.INVALID_ARGUMENT,
        l3NetworkUuid=l3,
        name="r2",
        networkCidr="10.8.0.0/24",
    )
    assert "10.9.0.0/24" in text
    other = await ok(node, "CreateL3Network", name="other", l2NetworkUuid=net["l2"]["uuid"])
    text = await fails(
        node,
        "AddIpRange",
        SysErrors.INVALID_ARGUMENT,
        l3NetworkUuid=other["uuid"],
        name="r3",
        startIp="10.9.0.100",
        endIp="10.9.0.120",
        netmask="255.255.255.0",
        gateway="10.9.0.1",
    )
    assert "overlaps the range r1" in text and "priv" in text
    assert len(await ok(node, "QueryIpRange")) == 1

    await ok(node, "AddDnsToL3Network", l3NetworkUuid=l3, dns="10.9.0.1")
    await fails(
        node, "AddDnsToL3Network", SysErrors.INVALID_ARGUMENT, l3NetworkUuid=l3, dns="10.9.0.1"
    )
    await fails(
        node, "AddDnsToL3Network", SysErrors.INVALID_ARGUMENT, l3NetworkUuid=l3, dns="dns.example"
    )

    # An address in use keeps its range and its L3 network.
    assert node.db is not None
    used = await node.db.run(lambda s: allocate_ip(s, l3, "test"))
    assert used["ip"] == "10.9.0.2"
    await fails(node, "DeleteIpRange", SysErrors.OPERATION_ERROR, uuid=first["uuid"])
    await fails(node, "DeleteL3Network", SysErrors.OPERATION_ERROR, uuid=l3)
    await fails(node, "DeleteL2Network", SysErrors.OPERATION_ERROR, uuid=net["l2"]["uuid"])
    await node.db.run(lambda s: s.delete(s.get(UsedIpVO, used["uuid"])))
    await ok(node, "DeleteL3Network", uuid=l3)
    await ok(node, "DeleteL3Network", uuid=other["uuid"])
    assert await ok(node, "QueryIpRange") == [] and await ok(node, "QueryL3Network") == []
    await ok(node, "DeleteL2Network", uuid=net["l2"]["uuid"])


async def test_concurrent_allocations_never_share_an_address(node: ManagementNode) -> None:
    net = await lab(node)
    l3 = net["l3"]["uuid"]
    await ok(
        node,
        "AddIpRange",
        l3NetworkUuid=l3,
        name="r",
        startIp="192.168.7.10",
        endIp="192.168.7.39",
        netmask="255.255.255.0",
        gateway="192.168.7.1",
    )
    assert node.db is not None
    db = node.db
    static = await db.run(lambda s: allocate_ip(s, l3, "test", requested="192.168.7.20"))
    assert static["ip"] == "192.168.7.20"
    with pytest.raises(OperationError) as taken:
        await db.run(lambda s: allocate_ip(s, l3, "test", requested="192.168.7.20"))
    assert taken.value.error.code == IP_TAKEN
    with pytest.raises(OperationError, match="in no IP range"):
        await db.run(lambda s: allocate_ip(s, l3, "test", requested="192.168.7.50"))

    results = await asyncio.gather(
        *(db.run(lambda s: allocate_ip(s, l3, "test")) for _ in range(35)), return_exceptions=True
    )
    ips = [r["ip"] for r in results if isinstance(r, dict)]
    errors = [r for r in results if isinstance(r, OperationError)]
    assert len(ips) == 29 and len(set(ips)) == 29 and "192.168.7.20" not in ips
    assert len(errors) == 6 and all(e.error.code == IP_EXHAUSTED for e in errors)


async def test_l2_interfaces_and_bridge_names(node: ManagementNode) -> None:
    zone = await ok(node, "CreateZone", name="z")
    a = await ok(
        node,
        "CreateL2NoVlanNetwork",
        name="lan",
        zoneUuid=zone["uuid"],
        physicalInterface="zsltest0",
    )
    assert a["bridgeName"] == "zslbr-" + a["uuid"][:9] and a["type"] == "L2NoVlanNetwork"
    text = await fails(
        node,
        "CreateL2NoVlanNetwork",
        SysErrors.INVALID_ARGUMENT,
        name="lan2",
        zoneUuid=zone["uuid"],
        physicalInterface="zsltest0",
    )
    assert "zsltest0 already belongs to the bridge of L2 network lan" in text
    await fails(
        node,
        "CreateL2NoVlanNetwork",
        SysErrors.INVALID_ARGUMENT,
        name="bad",
        zoneUuid=zone["uuid"],
        physicalInterface="eth0; reboot",
    )
    assert len(await ok(node, "QueryL2Network")) == 1

"""VIPs, port forwarding and EIPs through the API on a simulator host: ZStack's rules,
what the router is told (its simulated agent writes the ruleset it would apply), and
refusals that change nothing."""

from __future__ import annotations

from core.kernel.errors import SysErrors
from tests.conftest import fails, ok
from tests.plugins.vip.conftest import VipLab

ARG, OP = SysErrors.INVALID_ARGUMENT, SysErrors.OPERATION_ERROR


async def test_a_vip_is_an_address_of_a_public_network(vip_lab: VipLab) -> None:
    node, net = vip_lab.node, vip_lab.net
    vip = await vip_lab.vip(requiredIp="203.0.113.77")
    assert (vip["ip"], vip["useFor"], vip["peerL3NetworkUuid"]) == ("203.0.113.77", "", None)
    [used] = [u for u in await ok(node, "QueryVmNic") if u["ip"] == "203.0.113.77"] or [None]
    assert used is None  # a VIP is no NIC
    before = await vip_lab.rows()
    for params, code, words in (
        ({"requiredIp": "203.0.113.77"}, "L3.1001", "already used"),
        ({"requiredIp": "198.51.100.1"}, ARG, "in no IP range"),
        ({"l3NetworkUuid": net.private_l3["uuid"]}, ARG, "public network"),
    ):
        args = {"name": "x", "l3NetworkUuid": net.public_l3["uuid"], **params}
        assert words in await fails(node, "CreateVip", code, **args)
    assert await vip_lab.rows() == before
    await ok(node, "DeleteVip", uuid=vip["uuid"])
    again = await vip_lab.vip(requiredIp="203.0.113.77")  # the address was given back
    assert again["ip"] == "203.0.113.77"


async def test_port_forwarding_reaches_the_router_and_goes_away(vip_lab: VipLab) -> None:
    node = vip_lab.node
    nic = await vip_lab.vm_nic("web")
    vip = await vip_lab.vip(requiredIp="203.0.113.10")
    rule = await ok(
        node,
        "CreatePortForwardingRule",
        name="ssh",
        vipUuid=vip["uuid"],
        vipPortStart=2222,
        privatePortStart=22,
        protocolType="TCP",
        vmNicUuid=nic["uuid"],
    )
    assert (rule["vmNicUuid"], rule["guestIp"], rule["privatePortEnd"]) == (
        nic["uuid"],
        nic["ip"],
        22,
    )
    [held] = await ok(node, "QueryVip")
    assert (held["useFor"], held["peerL3NetworkUuid"]) == (
        "PortForwarding",
        vip_lab.net.private_l3["uuid"],
    )
    ruleset = await vip_lab.ruleset()
    assert (
        f'ip daddr 203.0.113.10 tcp dport 2222 dnat to {nic["ip"]}:22 comment "pf={rule["uuid"]}"'
        in ruleset
    )
    assert "ip daddr { 203.0.113.10 }" in ruleset  # what no rule forwards is refused

    web = await ok(
        node,
        "CreatePortForwardingRule",
        name="web",
        vipUuid=vip["uuid"],
        vipPortStart=8000,
        vipPortEnd=8009,
        protocolType="UDP",
        allowedCidr="192.168.1.7/24",
    )
    assert (web["allowedCidr"], web["vmNicUuid"]) == ("192.168.1.0/24", None)
    await ok(node, "AttachPortForwardingRule", ruleUuid=web["uuid"], vmNicUuid=nic["uuid"])
    assert (
        f"ip daddr 203.0.113.10 ip saddr 192.168.1.0/24 udp dport 8000-8009 dnat to {nic['ip']} "
        f'comment "pf={web["uuid"]}"' in await vip_lab.ruleset()
    )

    await ok(node, "DetachPortForwardingRule", uuid=rule["uuid"])
    ruleset = await vip_lab.ruleset()
    assert rule["uuid"] not in ruleset and web["uuid"] in ruleset
    await ok(node, "DeletePortForwardingRule", uuid=web["uuid"])
    assert await vip_lab.ruleset() == "table ip zsl_vr_vip\ndelete table ip zsl_vr_vip\n"
    [released] = await ok(node, "QueryVip")
    assert (released["useFor"], released["peerL3NetworkUuid"]) == ("PortForwarding", None)
    await fails(node, "DeleteVip", OP, uuid=vip["uuid"])  # the detached rule still uses it
    await ok(node, "DeletePortForwardingRule", uuid=rule["uuid"])
    await ok(node, "DeleteVip", uuid=vip["uuid"])
    assert await ok(node, "QueryVip") == []


async def test_zstacks_port_forwarding_rules_refuse_and_change_nothing(vip_lab: VipLab) -> None:
    node = vip_lab.node
    nic = await vip_lab.vm_nic("web")
    vip = await vip_lab.vip()
    other_vip = await vip_lab.vip("other")
    await ok(
        node,
        "CreatePortForwardingRule",
        name="base",
        vipUuid=vip["uuid"],
        vipPortStart=100,
        vipPortEnd=200,
        protocolType="TCP",
        vmNicUuid=nic["uuid"],
    )
    eip_vip = await vip_lab.vip("for-eip")
    await ok(node, "CreateEip", name="e", vipUuid=eip_vip["uuid"])
    before, ruleset = await vip_lab.rows(), await vip_lab.ruleset()
    base = {"name": "x", "vipUuid": vip["uuid"], "protocolType": "TCP"}
    for params, code, words in (
        (
            {"vipPortStart": 10, "vipPortEnd": 20, "privatePortStart": 30, "privatePortEnd": 31},
            ARG,
            "same size",
        ),
        ({"vipPortStart": 20, "vipPortEnd": 10}, ARG, "below vipPortStart"),
        ({"vipPortStart": 150, "vipPortEnd": 250}, OP, "overlap rule base"),
        ({"vipPortStart": 0}, ARG, "vipPortStart"),
        ({"vipPortStart": 5, "allowedCidr": "fe80::/64"}, ARG, "only IPv4"),
        ({"vipPortStart": 5, "allowedCidr": "nonsense"}, ARG, "not a CIDR"),
        ({"vipPortStart": 5, "vipPortEnd": 2000, "privatePortStart": 10000}, ARG, "at most 1024"),
        ({"vipPortStart": 5, "privatePortStart": 65535, "vipPortEnd": 6}, ARG, "above 65535"),
        ({"vipPortStart": 5, "vipUuid": eip_vip["uuid"]}, OP, "an EIP's"),
        (
            {"vipPortStart": 5, "vipUuid": other_vip["uuid"], "vmNicUuid": nic["uuid"]},
            OP,
            "all rules of one NIC use one VIP",
        ),
        ({"vipPortStart": 5, "protocolType": "SCTP"}, ARG, "protocolType"),
    ):
        assert words in await fails(node, "CreatePortForwardingRule", code, **{**base, **params})
    assert await vip_lab.rows() == before
    assert await vip_lab.ruleset() == ruleset


async def test_a_nic_needs_port_forwarding_from_the_router(vip_lab: VipLab) -> None:
    node, net = vip_lab.node, vip_lab.net
    nic = await vip_lab.vm_nic("web")
    [provider] = await ok(node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"])
    # A second private network with the router's DHCP only.
    zone = net.private_l3["zoneUuid"]
    l2 = await ok(node, "CreateL2NoVlanNetwork", name="l2b", zoneUuid=zone)
    await ok(
        node, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=net.cluster_uuid
    )
    plain = await ok(node, "CreateL3Network", name="plain", l2NetworkUuid=l2["uuid"])
    await ok(
        node,
        "AddIpRangeByNetworkCidr",
        l3NetworkUuid=plain["uuid"],
        name="r",
        networkCidr="10.20.0.0/24",
    )
    await ok(
        node,
        "AttachNetworkServiceToL3Network",
        l3NetworkUuid=plain["uuid"],
        networkServices={provider["uuid"]: ["DHCP"]},
    )
    vm = await ok(
        node,
        "CreateVmInstance",
        name="plain-vm",
        instanceOfferingUuid=net.lab.offering["uuid"],
        imageUuid=net.lab.image_uuid,
        l3NetworkUuids=[plain["uuid"]],
    )
    [plain_nic] = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    vip = await vip_lab.vip()
    rule = await ok(
        node,
        "CreatePortForwardingRule",
        name="r",
        vipUuid=vip["uuid"],
        vipPortStart=22,
        protocolType="TCP",
    )
    words = await fails(
        node, "AttachPortForwardingRule", OP, ruleUuid=rule["uuid"], vmNicUuid=plain_nic["uuid"]
    )
    assert "does not get PortForwarding from the virtual router" in words
    await ok(node, "AttachPortForwardingRule", ruleUuid=rule["uuid"], vmNicUuid=nic["uuid"])
    assert "is attached already" in await fails(
        node, "AttachPortForwardingRule", OP, ruleUuid=rule["uuid"], vmNicUuid=nic["uuid"]
    )


async def test_an_eip_is_a_nics_address_both_ways(vip_lab: VipLab) -> None:
    node = vip_lab.node
    nic = await vip_lab.vm_nic("db")
    vip = await vip_lab.vip(requiredIp="203.0.113.20")
    eip = await ok(node, "CreateEip", name="db-eip", vipUuid=vip["uuid"], vmNicUuid=nic["uuid"])
    assert (eip["vmNicUuid"], eip["guestIp"], eip["vipIp"]) == (nic["uuid"], nic["ip"], vip["ip"])
    ruleset = await vip_lab.ruleset()
    assert f'ip daddr 203.0.113.20 dnat to {nic["ip"]} comment "eip={eip["uuid"]}"' in ruleset
    assert f'ip saddr {nic["ip"]} snat to 203.0.113.20 comment "eip={eip["uuid"]}"' in ruleset
    # An EIP's VIP is its alone, one EIP per NIC, a NIC with an EIP takes no restricted rule.
    assert "an EIP's" in await fails(
        node,
        "CreatePortForwardingRule",
        OP,
        name="x",
        vipUuid=vip["uuid"],
        vipPortStart=1,
        protocolType="TCP",
    )
    second = await vip_lab.vip("second")
    assert "one EIP per NIC" in await fails(
        node, "CreateEip", OP, name="e2", vipUuid=second["uuid"], vmNicUuid=nic["uuid"]
    )
    assert await ok(node, "QueryEip", conditions=["name=e2"]) == []
    restricted = await ok(
        node,
        "CreatePortForwardingRule",
        name="r",
        vipUuid=second["uuid"],
        vipPortStart=1,
        protocolType="TCP",
        allowedCidr="10.0.0.0/8",
    )
    assert "cannot be attached" in await fails(
        node, "AttachPortForwardingRule", OP, ruleUuid=restricted["uuid"], vmNicUuid=nic["uuid"]
    )
    await ok(node, "DetachEip", uuid=eip["uuid"])
    assert eip["uuid"] not in await vip_lab.ruleset()
    await ok(node, "AttachEip", eipUuid=eip["uuid"], vmNicUuid=nic["uuid"])
    assert eip["uuid"] in await vip_lab.ruleset()
    await ok(node, "DeleteEip", uuid=eip["uuid"])
    [row] = await ok(node, "QueryVip", conditions=[f"uuid={vip['uuid']}"])
    assert (row["useFor"], row["peerL3NetworkUuid"]) == ("", None)


async def test_a_reconnect_replays_everything_and_expunge_detaches(vip_lab: VipLab) -> None:
    node = vip_lab.node
    nic = await vip_lab.vm_nic("web")
    vip = await vip_lab.vip()
    rule = await ok(
        node,
        "CreatePortForwardingRule",
        name="r",
        vipUuid=vip["uuid"],
        vipPortStart=80,
        protocolType="TCP",
        vmNicUuid=nic["uuid"],
    )
    eip_vip = await vip_lab.vip("e")
    eip = await ok(node, "CreateEip", name="e", vipUuid=eip_vip["uuid"], vmNicUuid=nic["uuid"])
    applied = await vip_lab.ruleset()
    router = await vip_lab.net.router()
    assert router is not None
    (vip_lab.net.router_dir(router) / "vip-nat.nft").unlink()
    await ok(node, "ReconnectVirtualRouter", uuid=router["uuid"])
    assert await vip_lab.ruleset() == applied

    other = await vip_lab.vm_nic("keeps-the-router")
    assert other["uuid"] != nic["uuid"]
    await ok(node, "DestroyVmInstance", uuid=nic["vmInstanceUuid"])
    await ok(node, "ExpungeVmInstance", uuid=nic["vmInstanceUuid"])
    [r] = await ok(node, "QueryPortForwardingRule")
    [e] = await ok(node, "QueryEip")
    assert (r["uuid"], r["vmNicUuid"], e["uuid"], e["vmNicUuid"]) == (
        rule["uuid"],
        None,
        eip["uuid"],
        None,
    )
    ruleset = await vip_lab.ruleset()
    assert rule["uuid"] not in ruleset and eip["uuid"] not in ruleset

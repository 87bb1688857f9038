"""The plugin's management-node side, on the simulator: what each host is sent (the
simulator agent keeps the rendered ruleset), when, and what is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from zsl_securitygroup.contract import ApplyCmd, ShowCmd
from zsl_securitygroup.core_plugin import SecurityGroupPlugin
from zsl_securitygroup.models import SecurityGroupL3NetworkRefVO, VmNicSecurityGroupRefVO
from zsl_securitygroup.render import set_name

from core.host.models import HostVO
from core.host.spi import agent_of
from core.kernel.errors import SysErrors
from tests.conftest import fails, load_props, make_node, ok, write_config
from tests.core.vm.conftest import make_lab
from tests.plugins.securitygroup.conftest import SgLab, l3_network


async def _web_and_clients(sg: SgLab) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Group web (a) admits TCP 80 from group clients (b); c is in no group."""
    node = sg.node
    web, clients = await sg.group("web"), await sg.group("clients")
    rule = await ok(
        node, "AddSecurityGroupRule", securityGroupUuid=web["uuid"], type="Ingress",
        protocol="TCP", startPort=80, endPort=80, remoteSecurityGroupUuid=clients["uuid"],
    )  # fmt: skip
    await ok(node, "AddVmNicToSecurityGroup", securityGroupUuid=web["uuid"],
             vmNicUuids=[sg.nics["a"]["uuid"]])  # fmt: skip
    await ok(node, "AddVmNicToSecurityGroup", securityGroupUuid=clients["uuid"],
             vmNicUuids=[sg.nics["b"]["uuid"]])  # fmt: skip
    return web, clients, rule


async def test_a_remote_group_rule_admits_its_members_addresses(sg: SgLab) -> None:
    web, clients, rule = await _web_and_clients(sg)
    a, b, c = (sg.nics[n] for n in "abc")
    shown = await sg.show()
    assert shown.taps == sorted([a["internalName"], b["internalName"]])  # c: in no group
    text = shown.ruleset
    assert f"set {set_name(clients['uuid'])} {{ type ipv4_addr; flags interval; " in text
    assert f"elements = {{ {b['ip']} }}" in text
    assert (
        f'ip saddr @{set_name(clients["uuid"])} tcp dport 80 accept comment "rule={rule["uuid"]}"'
        in text
    )
    assert f"ether saddr != {a['mac']} drop" in text and f"{{ {a['ip']}, 0.0.0.0 }}" in text
    assert 'drop comment "ingress policy"' in text and 'return comment "egress policy"' in text
    assert c["internalName"] not in text
    refs = await ok(sg.node, "QueryVmNicInSecurityGroup")
    assert {(r["vmNicUuid"], r["securityGroupUuid"]) for r in refs} == {
        (a["uuid"], web["uuid"]),
        (b["uuid"], clients["uuid"]),
    }
    [found] = await ok(sg.node, "QuerySecurityGroupRule", conditions=[f"uuid={rule['uuid']}"])
    assert (found["type"], found["protocol"], found["startPort"]) == ("Ingress", "TCP", 80)

    # A rule change reaches the host before the API replies.
    await ok(sg.node, "DeleteSecurityGroupRule", ruleUuids=[rule["uuid"]])
    assert f"rule={rule['uuid']}" not in (await sg.show()).ruleset

    # c joins clients: its address joins the set once a rule names the group again.
    await ok(sg.node, "AddVmNicToSecurityGroup", securityGroupUuid=clients["uuid"],
             vmNicUuids=[c["uuid"]])  # fmt: skip
    await ok(
        sg.node, "AddSecurityGroupRule", securityGroupUuid=web["uuid"], type="Ingress",
        protocol="TCP", startPort=80, endPort=80, remoteSecurityGroupUuid=clients["uuid"],
    )  # fmt: skip
    ips = sorted([b["ip"], c["ip"]], key=lambda ip: tuple(int(x) for x in ip.split(".")))
    assert f"elements = {{ {', '.join(ips)} }}" in (await sg.show()).ruleset
    await ok(sg.node, "DeleteVmNicFromSecurityGroup", securityGroupUuid=clients["uuid"],
             vmNicUuids=[c["uuid"]])  # fmt: skip
    assert c["internalName"] not in (await sg.show()).taps


async def test_a_vms_chains_follow_it_stop_start_and_expunge(sg: SgLab) -> None:
    _web, clients, _rule = await _web_and_clients(sg)
    a, b = sg.nics["a"], sg.nics["b"]
    await ok(sg.node, "StopVmInstance", uuid=sg.vms["a"]["uuid"])
    shown = await sg.show()
    assert shown.taps == [b["internalName"]]
    await ok(sg.node, "StartVmInstance", uuid=sg.vms["a"]["uuid"])
    assert a["internalName"] in (await sg.show()).taps

    # b stops: its address leaves the remote set (an address of a stopped VM may be reused).
    await ok(sg.node, "StopVmInstance", uuid=sg.vms["b"]["uuid"])
    text = (await sg.show()).ruleset
    assert f"set {set_name(clients['uuid'])} {{ type ipv4_addr; flags interval; }}" in text

    await ok(sg.node, "DestroyVmInstance", uuid=sg.vms["a"]["uuid"])
    assert (await sg.show()).taps == []
    assert (await sg.show()).ruleset.count("delete table") == 2  # nothing but the removal
    await ok(sg.node, "ExpungeVmInstance", uuid=sg.vms["a"]["uuid"])
    refs = await ok(sg.node, "QueryVmNicInSecurityGroup")
    assert [r["vmNicUuid"] for r in refs] == [b["uuid"]]  # a's went with its NIC


async def test_deleting_a_group_or_an_l3_network_cleans_its_references(sg: SgLab) -> None:
    web, clients, _rule = await _web_and_clients(sg)
    await ok(sg.node, "DeleteSecurityGroup", uuid=clients["uuid"])
    assert await ok(sg.node, "QuerySecurityGroupRule") == []  # web's rule named clients
    assert [g["name"] for g in await ok(sg.node, "QuerySecurityGroup")] == ["web"]
    assert (await sg.show()).taps == [sg.nics["a"]["internalName"]]

    other = await l3_network(sg.node, sg.lab.host["clusterUuid"], "other")
    await ok(sg.node, "AttachSecurityGroupToL3Network", securityGroupUuid=web["uuid"],
             l3NetworkUuid=other["uuid"])  # fmt: skip
    await ok(sg.node, "DeleteL3Network", uuid=other["uuid"])

    def refs(session: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(SecurityGroupL3NetworkRefVO)))

    assert await sg.node.db.run(refs) == 1  # web on the private network only
    await ok(sg.node, "DetachSecurityGroupFromL3Network", securityGroupUuid=web["uuid"],
             l3NetworkUuid=sg.l3["uuid"])  # fmt: skip
    assert (await sg.show()).taps == []  # a's NIC left web with the network

    def nic_refs(session: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(VmNicSecurityGroupRefVO)))

    assert await sg.node.db.run(nic_refs) == 0


async def test_the_default_policies_are_global_configs(sg: SgLab) -> None:
    await _web_and_clients(sg)
    options = await ok(sg.node, "QueryGlobalConfig", conditions=["category=securityGroup"])
    assert {(o["name"], o["value"]) for o in options} == {
        ("ingress.defaultPolicy", "drop"),
        ("egress.defaultPolicy", "accept"),
    }
    await ok(sg.node, "UpdateGlobalConfig", category="securityGroup",
             name="egress.defaultPolicy", value="drop")  # fmt: skip
    assert 'drop comment "egress policy"' in (await sg.show()).ruleset
    refused = await fails(
        sg.node, "UpdateGlobalConfig", SysErrors.INVALID_ARGUMENT, category="securityGroup",
        name="ingress.defaultPolicy", value="reject",
    )  # fmt: skip
    assert "valid values are [accept, drop]" in refused


async def test_a_reconnect_sends_the_host_its_state_again(sg: SgLab) -> None:
    await _web_and_clients(sg)
    before = (await sg.show()).ruleset
    agent = await agent_of(sg.node, sg.lab.host["uuid"])
    await agent.send(ApplyCmd())  # the host lost its tables (a reboot, a hand's nft flush)
    assert (await sg.show()).taps == []
    await ok(sg.node, "ReconnectHost", uuid=sg.lab.host["uuid"])
    assert (await sg.show()).ruleset == before


async def test_bad_requests_are_refused_naming_the_value_and_change_nothing(sg: SgLab) -> None:
    node = sg.node
    web = await ok(node, "CreateSecurityGroup", name="web")
    a = sg.nics["a"]

    async def refused(api: str, **params: Any) -> str:
        return await fails(node, api, SysErrors.INVALID_ARGUMENT, **params)

    unattached = await refused("AddVmNicToSecurityGroup", securityGroupUuid=web["uuid"],
                               vmNicUuids=[a["uuid"]])  # fmt: skip
    assert "is not attached to L3 network private" in unattached
    rule = {"securityGroupUuid": web["uuid"], "type": "Ingress"}
    assert "protocol ICMP has no ports" in await refused(
        "AddSecurityGroupRule", **rule, protocol="ICMP", startPort=1, endPort=1
    )
    assert "port range 90-80" in await refused(
        "AddSecurityGroupRule", **rule, protocol="TCP", startPort=90, endPort=80
    )
    assert "allowedCidr '10.0.0.5/24' is not an IPv4 CIDR" in await refused(
        "AddSecurityGroupRule", **rule, protocol="TCP", allowedCidr="10.0.0.5/24"
    )
    assert "not both" in await refused(
        "AddSecurityGroupRule", **rule, protocol="ALL", allowedCidr="10.0.0.0/24",
        remoteSecurityGroupUuid=web["uuid"],
    )  # fmt: skip
    assert "must be one of [Ingress, Egress]" in await refused(
        "AddSecurityGroupRule", securityGroupUuid=web["uuid"], type="In", protocol="TCP"
    )
    await ok(node, "AddSecurityGroupRule", **rule, protocol="UDP", startPort=53, endPort=53)
    assert "has this rule already" in await refused(
        "AddSecurityGroupRule", **rule, protocol="UDP", startPort=53, endPort=53
    )
    assert "no security group rule has the uuid(s) nosuch" in await refused(
        "DeleteSecurityGroupRule", ruleUuids=["nosuch"]
    )
    assert "are not in security group web" in await refused(
        "DeleteVmNicFromSecurityGroup", securityGroupUuid=web["uuid"], vmNicUuids=[a["uuid"]]
    )
    await ok(node, "AttachSecurityGroupToL3Network", securityGroupUuid=web["uuid"],
             l3NetworkUuid=sg.l3["uuid"])  # fmt: skip
    assert "attached to private already" in await refused(
        "AttachSecurityGroupToL3Network", securityGroupUuid=web["uuid"],
        l3NetworkUuid=sg.l3["uuid"],
    )  # fmt: skip
    # Nothing of the refused calls was kept; no NIC is in a group, so the host got nothing.
    assert len(await ok(node, "QuerySecurityGroupRule")) == 1
    assert await ok(node, "QueryVmNicInSecurityGroup") == []
    assert (await sg.show()).taps == []


async def test_a_host_not_connected_is_skipped_and_gets_its_state_when_it_connects(
    sg: SgLab,
) -> None:
    """A second host whose VM is in a group goes Disconnected: changes and other VMs'
    starts go on without it; its reconnect brings it up to date."""
    node, lab = sg.node, sg.lab
    other = await ok(node, "AddSimulatorHost", name="sim2", clusterUuid=lab.host["clusterUuid"],
                     cpuNum=4, memorySize=8 * 1024**3)  # fmt: skip
    d = await ok(
        node, "CreateVmInstance", name="d", instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid, l3NetworkUuids=[sg.l3["uuid"]], hostUuid=other["uuid"],
    )  # fmt: skip
    [d_nic] = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={d['uuid']}"])
    _web, clients, _rule = await _web_and_clients(sg)
    await ok(node, "AddVmNicToSecurityGroup", securityGroupUuid=clients["uuid"],
             vmNicUuids=[d_nic["uuid"]])  # fmt: skip
    other_agent = await agent_of(node, other["uuid"])
    assert (await other_agent.send(ShowCmd())).taps == [d_nic["internalName"]]

    def disconnect(session: Any) -> None:
        host = session.get(HostVO, other["uuid"])
        assert host is not None
        host.status = "Disconnected"

    await node.db.run(disconnect)
    await other_agent.send(ApplyCmd())  # what it holds is gone meanwhile
    await ok(node, "StopVmInstance", uuid=sg.vms["a"]["uuid"])
    await ok(node, "StartVmInstance", uuid=sg.vms["a"]["uuid"])
    added = await ok(
        node, "AddSecurityGroupRule", securityGroupUuid=clients["uuid"], type="Ingress",
        protocol="ICMP",
    )  # fmt: skip
    assert sg.nics["a"]["internalName"] in (await sg.show()).taps
    assert (await other_agent.send(ShowCmd())).taps == []  # skipped while not Connected
    await ok(node, "ReconnectHost", uuid=other["uuid"])
    shown = await other_agent.send(ShowCmd())
    assert shown.taps == [d_nic["internalName"]] and f"rule={added['uuid']}" in shown.ruleset


async def test_a_host_that_cannot_enforce_its_groups_is_not_connected(
    sg: SgLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _web_and_clients(sg)
    plugin = sg.node.plugin(SecurityGroupPlugin)

    async def refused(*_args: Any, **_kw: Any) -> dict[str, tuple[str, str]]:
        return {sg.lab.host["uuid"]: ("sim", "no handler for /securitygroup/apply")}

    monkeypatch.setattr(plugin, "send_states", refused)
    reply = await sg.node.call("ReconnectHost", {"uuid": sg.lab.host["uuid"]})
    assert not reply.success and reply.error is not None
    assert "host sim cannot enforce its security groups" in str(reply.error)
    assert "no handler for /securitygroup/apply" in str(reply.error)


async def test_disabled_it_offers_nothing_and_its_configs_go(tmp_path: Path) -> None:
    """Installed but disabled: its tables stay migrated (a database it migrated still names
    its revisions), its APIs and global configs are not offered, VMs start as before."""
    config = '[plugins]\nenabled = ["*"]\ndisabled = ["securityGroup"]\n'
    props = load_props(write_config(tmp_path, config))
    async with make_node(props) as node:
        lab = await make_lab(node, tmp_path)
        l3 = await l3_network(node, lab.host["clusterUuid"])
        await ok(node, "CreateVmInstance", name="v", instanceOfferingUuid=lab.offering["uuid"],
                 imageUuid=lab.image_uuid, l3NetworkUuids=[l3["uuid"]])  # fmt: skip
        reply = await node.call("CreateSecurityGroup", {"name": "web"})
        assert not reply.success and "CreateSecurityGroup" in str(reply.error)
        configs = await ok(node, "QueryGlobalConfig", conditions=["category=securityGroup"])
        assert configs == []

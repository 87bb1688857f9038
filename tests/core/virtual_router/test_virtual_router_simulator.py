"""VMs on a private network served by the virtual router, on a simulator host."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from agent.simulator_backend import SIM_SET_VM_STATE
from contracts import kvm
from core.host.plugin import HostPlugin
from core.kernel.errors import SysErrors
from core.virtual_router.plugin import STATUS_EVENT, VirtualRouterPlugin
from tests.conftest import fails, ok
from tests.core.virtual_router.conftest import NetLab


async def test_vms_get_ips_and_the_router_serves_them(net_lab: NetLab) -> None:
    node = net_lab.node
    a = await net_lab.create_vm("web-1")
    b = await net_lab.create_vm("web-2")
    nics = {n["vmInstanceUuid"]: n for n in await ok(node, "QueryVmNic")}
    assert nics[a["uuid"]]["ip"] == "10.10.0.2"
    assert nics[b["uuid"]]["ip"] == "10.10.0.3"
    router = await net_lab.router()
    assert router is not None
    assert (router["state"], router["status"]) == ("Running", "Connected")
    assert await net_lab.served() == {
        nics[a["uuid"]]["mac"]: "10.10.0.2",
        nics[b["uuid"]]["mac"]: "10.10.0.3",
    }
    hosts = (net_lab.router_dir(router) / "addn-hosts").read_text()
    assert "10.10.0.2 web-1.lab.lan web-1" in hosts

    await ok(node, "StopVmInstance", uuid=a["uuid"])
    assert await net_lab.served() == {nics[b["uuid"]]["mac"]: "10.10.0.3"}
    await ok(node, "StartVmInstance", uuid=a["uuid"])
    assert set(await net_lab.served()) == {nics[a["uuid"]]["mac"], nics[b["uuid"]]["mac"]}


async def test_a_vm_stopped_or_started_outside_the_project_loses_or_gets_its_dhcp_entry(
    net_lab: NetLab,
) -> None:
    node = net_lab.node
    a = await net_lab.create_vm("web-1")
    b = await net_lab.create_vm("web-2")
    macs = {n["vmInstanceUuid"]: n["mac"] for n in await ok(node, "QueryVmNic")}
    [host] = await ok(node, "QueryHost")
    agent = node.plugin(HostPlugin)._agents[host["uuid"]]

    async def state_of(vm: dict[str, Any]) -> tuple[str, str | None]:
        [row] = await ok(node, "QueryVmInstance", conditions=[f"uuid={vm['uuid']}"])
        return row["state"], row["hostUuid"]

    async def served_when(state: str, vm: dict[str, Any]) -> set[str]:
        await wait_for(lambda: _is(state_of(vm), state))
        return set(await net_lab.served())

    # The guest powers off (or `virsh destroy`): the agent reports Stopped.
    await agent.call(SIM_SET_VM_STATE, {"vmUuid": a["uuid"], "state": "Stopped"})
    assert await served_when("Stopped", a) == {macs[b["uuid"]]}
    [after_stop] = await ok(node, "QueryHost")
    # Started again outside (`virsh start`): its entry, host and capacity come back.
    await agent.call(SIM_SET_VM_STATE, {"vmUuid": a["uuid"], "state": "Running"})
    assert await served_when("Running", a) == {macs[a["uuid"]], macs[b["uuid"]]}
    assert await state_of(a) == ("Running", host["uuid"])
    [after_start] = await ok(node, "QueryHost")
    assert after_start["availableMemoryCapacity"] == (
        after_stop["availableMemoryCapacity"] - a["memorySize"]
    )
    # Through the API, as before.
    await ok(node, "StopVmInstance", uuid=a["uuid"])
    assert await net_lab.served() == {macs[b["uuid"]]: "10.10.0.3"}


async def _is(state: Any, wanted: str) -> bool:
    return (await state)[0] == wanted


async def wait_for(check: Any, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_static_ip_tag_and_refusals_change_nothing(net_lab: NetLab) -> None:
    node, l3 = net_lab.node, net_lab.private_l3["uuid"]
    vm = await net_lab.create_vm("fixed", systemTags=[f"staticIp::{l3}::10.10.0.77"])
    [nic] = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    assert nic["ip"] == "10.10.0.77"
    before = (await ok(node, "QueryVmInstance"), await ok(node, "QueryVmNic"))
    for tags, words in (
        ([f"staticIp::{l3}::10.10.0.77"], "already used"),
        ([f"staticIp::{l3}::10.99.0.5"], "in no IP range"),
        ([f"staticIp::{net_lab.public_l3['uuid']}::203.0.113.50"], "not one of"),
        ([f"staticIp::{l3}::not-an-ip"], "not an IPv4 address"),
    ):
        reply = await node.call(
            "CreateVmInstance",
            {
                "name": "doomed",
                "instanceOfferingUuid": net_lab.lab.offering["uuid"],
                "imageUuid": net_lab.lab.image_uuid,
                "l3NetworkUuids": [l3],
                "systemTags": tags,
            },
        )
        assert not reply.success and words in str(reply.error), (tags, reply.error)
        assert (await ok(node, "QueryVmInstance"), await ok(node, "QueryVmNic")) == before


async def test_expunge_returns_ips_and_deleting_the_l3_takes_its_router(net_lab: NetLab) -> None:
    node = net_lab.node
    vm = await net_lab.create_vm("short-lived")
    router = await net_lab.router()
    assert router is not None
    router_dir = net_lab.router_dir(router)
    await fails(node, "DeleteL3Network", SysErrors.OPERATION_ERROR, uuid=net_lab.private_l3["uuid"])
    await fails(
        node, "DeleteL3Network", SysErrors.OPERATION_ERROR, uuid=net_lab.public_l3["uuid"]
    )  # the public network of a router and of the offering
    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    assert await net_lab.served() == {}
    await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])
    nics = await ok(node, "QueryVmNic")
    assert {n["type"] for n in nics} == {"ApplianceVmNic"}
    await ok(node, "DeleteL3Network", uuid=net_lab.private_l3["uuid"])  # takes its router
    assert await ok(node, "QueryVirtualRouterVm") == [] and await ok(node, "QueryVmNic") == []
    assert not router_dir.exists()
    await ok(node, "DeleteVirtualRouterOffering", uuid=net_lab.offering["uuid"])
    await ok(node, "DeleteL3Network", uuid=net_lab.public_l3["uuid"])


async def test_ping_tracker_reconnects_a_restarted_agent(net_lab: NetLab) -> None:
    node = net_lab.node
    a = await net_lab.create_vm("a")
    router = await net_lab.router()
    assert router is not None
    served = await net_lab.served()
    events: list[Any] = []
    node.events.subscribe(STATUS_EVENT, lambda e: events.append(e.data["newStatus"]))
    os.kill(router["agentPid"], signal.SIGKILL)
    await node.plugin(VirtualRouterPlugin).ping_all()
    after = await net_lab.router()
    assert after is not None and after["status"] == "Connected"
    assert after["agentPid"] != router["agentPid"]
    assert events == ["Connecting", "Connected"]
    assert await net_lab.served() == served  # the DHCP entries were replayed
    # The explicit API does the same, and is idempotent.
    assert (await ok(node, "ReconnectVirtualRouter", uuid=after["uuid"]))["status"] == "Connected"
    await ok(node, "StopVmInstance", uuid=a["uuid"])


async def test_refusals_name_the_problem(net_lab: NetLab) -> None:
    node = net_lab.node
    [provider] = await ok(node, "QueryNetworkServiceProvider")
    # The router's own types first; installed plugins may add theirs after.
    assert provider["networkServiceTypes"].split(",")[:3] == ["DHCP", "DNS", "SNAT"]
    for l3, services, words in (
        (net_lab.private_l3, {provider["uuid"]: ["LoadBalancer"]}, "does not offer LoadBalancer"),
        (net_lab.public_l3, {provider["uuid"]: ["DHCP"]}, "serves private networks"),
        (net_lab.private_l3, {"0" * 32: ["DHCP"]}, "0" * 32),
    ):
        reply = await node.call(
            "AttachNetworkServiceToL3Network",
            {"l3NetworkUuid": l3["uuid"], "networkServices": services},
        )
        assert not reply.success and words in str(reply.error), reply.error
    await fails(
        node,
        "CreateVirtualRouterOffering",
        SysErrors.INVALID_ARGUMENT,
        name="bad",
        zoneUuid=net_lab.offering["zoneUuid"],
        publicNetworkUuid=net_lab.private_l3["uuid"],
    )
    # Without an offering, a VM on a served network is refused before anything is made.
    await ok(node, "DeleteVirtualRouterOffering", uuid=net_lab.offering["uuid"])
    reply = await node.call(
        "CreateVmInstance",
        {
            "name": "no-router",
            "instanceOfferingUuid": net_lab.lab.offering["uuid"],
            "imageUuid": net_lab.lab.image_uuid,
            "l3NetworkUuids": [net_lab.private_l3["uuid"]],
        },
    )
    assert not reply.success and "CreateVirtualRouterOffering" in str(reply.error)
    assert await ok(node, "QueryVmNic") == [] and await ok(node, "QueryVmInstance") == []


async def test_host_nat_network_and_host_route_overlap(net_lab: NetLab) -> None:
    node = net_lab.node
    zone = net_lab.offering["zoneUuid"]
    l2 = await ok(node, "CreateL2NoVlanNetwork", name="nat-l2", zoneUuid=zone)
    await ok(
        node, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=net_lab.cluster_uuid
    )
    await fails(  # the host is the gateway only of a Public network
        node,
        "CreateL3Network",
        SysErrors.INVALID_ARGUMENT,
        name="x",
        l2NetworkUuid=l2["uuid"],
        systemTags=["hostNat"],
    )
    nat = await ok(
        node,
        "CreateL3Network",
        name="nat",
        l2NetworkUuid=l2["uuid"],
        category="Public",
        systemTags=["hostNat"],
    )
    await ok(
        node,
        "AddIpRangeByNetworkCidr",
        l3NetworkUuid=nat["uuid"],
        name="n",
        networkCidr="10.98.0.0/24",
    )
    # The simulated host now routes 10.98.0.0/24 to the bridge: another L2's range there is refused.
    other_l2 = await ok(node, "CreateL2NoVlanNetwork", name="other-l2", zoneUuid=zone)
    other = await ok(node, "CreateL3Network", name="other", l2NetworkUuid=other_l2["uuid"])
    reply = await node.call(
        "AddIpRangeByNetworkCidr",
        {"l3NetworkUuid": other["uuid"], "name": "o", "networkCidr": "10.98.0.0/25"},
    )
    assert not reply.success
    assert "overlaps the route 10.98.0.0/24" in str(reply.error)
    assert await ok(node, "QueryIpRange", conditions=[f"l3NetworkUuid={other['uuid']}"]) == []
    await ok(node, "DeleteL3Network", uuid=nat["uuid"])  # the host route goes with it
    await ok(
        node,
        "AddIpRangeByNetworkCidr",
        l3NetworkUuid=other["uuid"],
        name="o",
        networkCidr="10.98.0.0/25",
    )


async def test_host_nat_is_set_again_at_host_reconnect(net_lab: NetLab) -> None:
    """An entry gone from the host (here removed through the agent, as ``ip addr del`` and a
    flushed table would) is back once ReconnectHost says Connected."""
    node = net_lab.node
    zone = net_lab.offering["zoneUuid"]
    l2 = await ok(node, "CreateL2NoVlanNetwork", name="nat-l2", zoneUuid=zone)
    await ok(
        node, "AttachL2NetworkToCluster", l2NetworkUuid=l2["uuid"], clusterUuid=net_lab.cluster_uuid
    )
    nat = await ok(
        node,
        "CreateL3Network",
        name="nat",
        l2NetworkUuid=l2["uuid"],
        category="Public",
        systemTags=["hostNat"],
    )
    await ok(
        node,
        "AddIpRangeByNetworkCidr",
        l3NetworkUuid=nat["uuid"],
        name="n",
        networkCidr="10.97.0.0/24",
    )
    [host] = await ok(node, "QueryHost")
    agent = await node.plugin(HostPlugin).agent_of(host["uuid"])
    route = {"destination": "10.97.0.0/24", "interface": l2["bridgeName"], "gateway": ""}
    assert route in (await agent.call(kvm.HOST_ROUTES, {}))["routes"]
    entry = {"bridgeName": l2["bridgeName"], "gatewayCidr": "10.97.0.1/24"}
    await agent.call(kvm.HOSTNAT_REMOVE, entry)
    assert route not in (await agent.call(kvm.HOST_ROUTES, {}))["routes"]

    assert (await ok(node, "ReconnectHost", uuid=host["uuid"]))["status"] == "Connected"
    assert route in (await agent.call(kvm.HOST_ROUTES, {}))["routes"]

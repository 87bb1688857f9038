"""Hosts on simulator agents: the real agent process and HTTP protocol, no libvirt."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from core.host.extension_points import HostConnectContext, KVMHostConnectExtensionPoint
from core.host.local_agent import LocalAgent, free_port
from core.host.plugin import HostPlugin
from core.host.port_holder import port_holder
from core.kernel.errors import SysErrors, operr
from core.kernel.extensions import Plugin
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import fails, make_node, ok

GiB = 1024**3


async def sim_cluster(node: ManagementNode, hypervisor: str = "Simulator") -> str:
    zone = await ok(node, "CreateZone", name="z")
    cluster = await ok(
        node, "CreateCluster", name="c", zoneUuid=zone["uuid"], hypervisorType=hypervisor
    )
    return cluster["uuid"]


def simulator_pid(node: ManagementNode, host_uuid: str) -> int:
    sim = node.plugin(HostPlugin)._local[host_uuid]
    holder = port_holder(sim.port)
    assert holder is not None and holder.pid is not None and sim.is_ours(holder)
    return holder.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def wait_for(check: Any, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_add_simulator_host_connects_with_capacity(node: ManagementNode) -> None:
    cluster = await sim_cluster(node)
    host = await ok(
        node, "AddSimulatorHost", name="sim1", clusterUuid=cluster, cpuNum=4, memorySize=8 * GiB
    )
    assert host["status"] == "Connected" and host["hypervisorType"] == "Simulator"
    assert host["acceleration"] == "tcg"
    assert "agentToken" not in host  # secrets stay out of inventories
    ratio = 10  # host.cpu.overProvisioning.ratio
    assert (host["cpuNum"], host["totalCpuCapacity"], host["availableCpuCapacity"]) == (
        4,
        4 * ratio,
        4 * ratio,
    )
    # kvm.reservedMemory is for KVM hosts only.
    assert host["totalMemoryCapacity"] == host["availableMemoryCapacity"] == 8 * GiB
    assert [h["uuid"] for h in await ok(node, "QueryHost", conditions=["status=Connected"])] == [
        host["uuid"]
    ]


async def test_delete_host_stops_its_simulator_and_leaves_nothing(node: ManagementNode) -> None:
    cluster = await sim_cluster(node)
    host = await ok(node, "AddSimulatorHost", name="sim1", clusterUuid=cluster, userTags=["rack-1"])
    pid = simulator_pid(node, host["uuid"])
    await ok(node, "DeleteHost", uuid=host["uuid"])
    assert not alive(pid)
    assert await ok(node, "QueryHost") == []
    assert await ok(node, "QueryUserTag") == []


async def test_simulator_host_in_a_kvm_cluster_is_refused(node: ManagementNode) -> None:
    cluster = await sim_cluster(node, "KVM")
    text = await fails(
        node, "AddSimulatorHost", SysErrors.INVALID_ARGUMENT, name="s", clusterUuid=cluster
    )
    assert "KVM cluster" in text
    assert await ok(node, "QueryHost") == []


async def test_remote_kvm_host_needs_a_token(node: ManagementNode) -> None:
    cluster = await sim_cluster(node, "KVM")
    text = await fails(
        node,
        "AddKVMHost",
        SysErrors.INVALID_ARGUMENT,
        name="far",
        clusterUuid=cluster,
        managementIp="192.0.2.10",
    )
    assert "agentToken" in text


async def test_kvm_host_with_a_wrong_token_fails_and_leaves_no_row(
    node: ManagementNode, tmp_path: Any
) -> None:
    agent = LocalAgent(tmp_path / "agent", free_port(), "simulator", tmp_path)
    await agent.ensure_running()
    try:
        cluster = await sim_cluster(node, "KVM")
        # An agent answers on that port, but not to this token: refused, nothing kept.
        reply = await node.call(
            "AddKVMHost",
            {
                "name": "k",
                "clusterUuid": cluster,
                "managementIp": "127.0.0.1",
                "agentPort": agent.port,
                "agentToken": "not-the-token",
            },
        )
        assert not reply.success and reply.error is not None
        assert reply.error.description == "cannot connect host k"
        assert "401" in str(reply.error) or "token" in str(reply.error)
        assert await ok(node, "QueryHost") == []
        assert await ok(node, "QuerySystemTag", conditions=["resourceType=HostVO"]) == []
    finally:
        agent.stop()


class Veto(Plugin, KVMHostConnectExtensionPoint):
    """A KVMHostConnectExtensionPoint that refuses every host (e.g. OVS missing)."""

    implements = (KVMHostConnectExtensionPoint,)
    seen: list[HostConnectContext] = []

    async def kvm_host_connected(self, context: HostConnectContext) -> None:
        Veto.seen.append(context)
        raise operr("openvswitch is not running on this host")


async def test_connect_extension_point_is_skipped_for_simulators(props: Properties) -> None:
    Veto.seen = []
    async with make_node(props, {"veto": Veto}) as node:
        cluster = await sim_cluster(node)
        await ok(node, "AddSimulatorHost", name="sim1", clusterUuid=cluster)
        assert Veto.seen == []  # only KVM hosts call KVMHostConnectExtensionPoint


async def test_agent_restart_is_noticed_by_ping_and_reconnected(node: ManagementNode) -> None:
    cluster = await sim_cluster(node)
    host = await ok(node, "AddSimulatorHost", name="sim1", clusterUuid=cluster)
    hosts = node.plugin(HostPlugin)
    sim = hosts._local[host["uuid"]]
    await asyncio.to_thread(sim.stop)
    await sim.ensure_running()  # a fresh agent: it no longer knows its host uuid
    events: list[Any] = []
    node.events.subscribe("/host/status/change", lambda e: events.append(e.data))
    await hosts.ping(host["uuid"])
    assert [(e["oldStatus"], e["newStatus"]) for e in events] == [
        ("Connected", "Connecting"),
        ("Connecting", "Connected"),
    ]

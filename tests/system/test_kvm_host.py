"""The local KVM host on the real agent over qemu:///system."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.host.local_agent import free_port
from core.kernel.errors import SysErrors
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import fails, load_props, make_node, ok, write_config
from tests.core.host.test_hosts import Veto

pytestmark = pytest.mark.system
MiB = 1024**2


def agent_pids(data_dir: Path) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", f"agent.main --data-dir {data_dir}/agent"], capture_output=True, text=True
    ).stdout.split()
    return [int(p) for p in found]


@pytest.fixture
async def kvm_props(tmp_path: Path) -> AsyncIterator[Properties]:
    props = load_props(write_config(tmp_path, f"[agent]\nport = {free_port()}\n"))
    try:
        yield props
    finally:  # nodes stop their agent; this is in case a test failed half-way
        for pid in agent_pids(props.data_dir):
            os.kill(pid, signal.SIGTERM)


async def wait_for(check: Any, what: str, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def add_local_host(node: ManagementNode, props: Properties) -> dict:
    zone = await ok(node, "CreateZone", name="z")
    cluster = await ok(node, "CreateCluster", name="kvm", zoneUuid=zone["uuid"])
    return await ok(
        node, "AddKVMHost", name="local", clusterUuid=cluster["uuid"], agentPort=props["agent.port"]
    )


async def test_local_kvm_host_facts_tags_and_reserved_memory(kvm_props: Properties) -> None:
    async with ManagementNode(kvm_props, serve_socket=False) as node:
        host = await add_local_host(node, kvm_props)
        assert host["status"] == "Connected" and host["hypervisorType"] == "KVM"
        assert host["acceleration"] in ("kvm", "tcg")
        assert host["totalMemoryCapacity"] == host["totalPhysicalMemory"] - 512 * MiB
        assert host["totalCpuCapacity"] == host["cpuNum"] * 10

        tags = {
            t["tag"]: t
            for t in await ok(node, "QuerySystemTag", conditions=[f"resourceUuid={host['uuid']}"])
        }
        libvirt_tag = next(t for t in tags if t.startswith("libvirt::version::"))
        assert any(t.startswith("qemu-img::version::") for t in tags)
        assert tags[libvirt_tag]["inherent"] is True
        await fails(node, "DeleteTag", SysErrors.OPERATION_ERROR, uuid=tags[libvirt_tag]["uuid"])

        await ok(node, "UpdateGlobalConfig", category="kvm", name="reservedMemory", value="1G")
        [now] = await ok(node, "QueryHost")  # applied at once, not at the next reconnect
        assert now["totalMemoryCapacity"] == host["totalPhysicalMemory"] - 1024 * MiB
        assert now["availableMemoryCapacity"] == host["availableMemoryCapacity"] - 512 * MiB
        again = await ok(node, "ReconnectHost", uuid=host["uuid"])
        assert again["totalMemoryCapacity"] == host["totalPhysicalMemory"] - 1024 * MiB


async def test_the_node_owns_its_kvm_agent(kvm_props: Properties) -> None:
    async with ManagementNode(kvm_props, serve_socket=False) as node:
        host = await add_local_host(node, kvm_props)
        [first] = agent_pids(kvm_props.data_dir)
    assert agent_pids(kvm_props.data_dir) == []  # stopped with the node that owned it
    async with ManagementNode(kvm_props, serve_socket=False) as node:
        [again] = await ok(node, "QueryHost")  # started again, and reconnected, at start
        assert again["status"] == "Connected"
        [pid] = agent_pids(kvm_props.data_dir)
        assert pid != first
        # A dead agent is started again by the ping tracker, with no call from anyone.
        await ok(node, "UpdateGlobalConfig", category="host", name="ping.interval", value="1")
        os.kill(pid, signal.SIGKILL)

        async def revived() -> bool:
            pids = agent_pids(kvm_props.data_dir)
            [now] = await ok(node, "QueryHost")
            return len(pids) == 1 and pids[0] != pid and now["status"] == "Connected"

        await wait_for(revived, "the agent to be started again", 90)
        assert host["uuid"] == again["uuid"]


async def test_a_refused_add_kvm_host_leaves_no_agent(kvm_props: Properties) -> None:
    async with make_node(kvm_props, {"veto": Veto}, serve_socket=False) as node:
        zone = await ok(node, "CreateZone", name="z")
        cluster = await ok(node, "CreateCluster", name="kvm", zoneUuid=zone["uuid"])
        reply = await node.call(
            "AddKVMHost",
            {"name": "local", "clusterUuid": cluster["uuid"], "agentPort": free_port()},
        )
        assert not reply.success and "openvswitch is not running" in str(reply.error)
        assert agent_pids(kvm_props.data_dir) == []  # the agent it started is gone
        assert await ok(node, "QueryHost") == []

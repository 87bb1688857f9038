"""The local KVM host on the real agent over qemu:///system."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.host.local_agent import free_port
from core.kernel.errors import SysErrors
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import fails, load_props, ok, write_config

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
    finally:  # the local KVM agent outlives nodes by design: the test stops it
        for pid in agent_pids(props.data_dir):
            os.kill(pid, signal.SIGTERM)


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
        again = await ok(node, "ReconnectHost", uuid=host["uuid"])
        assert again["totalMemoryCapacity"] == host["totalPhysicalMemory"] - 1024 * MiB


async def test_node_restart_reconnects_to_the_running_agent(kvm_props: Properties) -> None:
    async with ManagementNode(kvm_props, serve_socket=False) as node:
        host = await add_local_host(node, kvm_props)
    [pid] = agent_pids(kvm_props.data_dir)  # the agent outlives the node
    async with ManagementNode(kvm_props, serve_socket=False) as node:
        again = await ok(node, "ReconnectHost", uuid=host["uuid"])
        assert again["status"] == "Connected"
        assert agent_pids(kvm_props.data_dir) == [pid]
        # A dead agent is started again by a reconnect.
        os.kill(pid, signal.SIGKILL)
        revived = await ok(node, "ReconnectHost", uuid=host["uuid"])
        assert revived["status"] == "Connected"
        [new_pid] = agent_pids(kvm_props.data_dir)
        assert new_pid != pid

"""The agents of this machine belong to the node: restarted when they die, reported when
their port is held by another program, stopped with the node, never left by a refusal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.host.local_agent import LocalAgent
from core.host.plugin import HostPlugin
from core.host.port_holder import cmdline_of, port_holder
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.core.host.test_hosts import alive, sim_cluster, simulator_pid, wait_for
from tests.core.vm.conftest import make_lab
from tests.service_lab import processes_naming

HOLDER = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print('ready', flush=True)\n"
    "time.sleep(600)\n"
)


def agents_of(data_dir: Path) -> list[int]:
    """Pids of agent processes whose command line names this data dir."""
    return [p for p in processes_naming(data_dir) if "agent.main" in cmdline_of(p)]


@pytest.fixture
def port_squatter() -> Iterator[list[subprocess.Popen[str]]]:
    """Start ``hold(port)`` processes that listen on a port; all killed at the end."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def hold(procs: list[subprocess.Popen[str]], port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    procs.append(proc)
    return proc


async def fast_pings(node: ManagementNode) -> None:
    await ok(node, "UpdateGlobalConfig", category="host", name="ping.interval", value="1")


async def host_status(node: ManagementNode, uuid: str) -> str:
    [found] = await ok(node, "QueryHost", conditions=[f"uuid={uuid}"])
    return str(found["status"])


async def test_a_dead_agent_is_started_again_by_the_ping_tracker(node: ManagementNode) -> None:
    await fast_pings(node)
    host = await ok(node, "AddSimulatorHost", name="sim1", clusterUuid=await sim_cluster(node))
    first = simulator_pid(node, host["uuid"])
    os.kill(first, signal.SIGKILL)

    async def restarted() -> bool:
        holder = port_holder(host["agentPort"])
        return (
            holder is not None
            and holder.pid not in (None, first)
            and await host_status(node, host["uuid"]) == "Connected"
        )

    await wait_for(restarted)
    assert node.plugin(HostPlugin).problems() == {}


@pytest.mark.parametrize("holder", ["stale agent of another lab", "any program"])
async def test_a_port_held_by_another_program_is_named_and_retried(
    node: ManagementNode,
    port_squatter: list[subprocess.Popen[str]],
    tmp_path: Path,
    holder: str,
) -> None:
    host = await ok(node, "AddSimulatorHost", name="sim1", clusterUuid=await sim_cluster(node))
    os.kill(simulator_pid(node, host["uuid"]), signal.SIGKILL)
    port = host["agentPort"]
    if holder == "any program":
        squatter_pid = hold(port_squatter, port).pid
        words = "time.sleep(600)"
    else:
        stale = LocalAgent(tmp_path / "other" / "agent", port, "simulator", tmp_path / "other")
        await stale.ensure_running()
        holder_now = port_holder(port)
        assert holder_now is not None and holder_now.pid is not None
        squatter_pid = holder_now.pid
        words = f"agent.main --data-dir {tmp_path / 'other' / 'agent'}"
    await fast_pings(node)  # only now: the tracker must not restart ours first
    try:

        async def disconnected() -> bool:
            return await host_status(node, host["uuid"]) == "Disconnected"

        await wait_for(disconnected, 60)
        status = await ok(node, "GetManagementNodeStatus")
        [problem] = status["problems"]
        assert f"port {port} is held by pid {squatter_pid}" in problem
        assert words in problem  # its command line
        assert f"kill {squatter_pid}" in problem  # and what to do
        [listed] = status["hosts"]
        assert listed["status"] == "Disconnected" and listed["problem"] in problem
    finally:
        os.kill(squatter_pid, signal.SIGKILL)

    async def connected() -> bool:
        return await host_status(node, host["uuid"]) == "Connected"

    await wait_for(connected, 60)  # no restart of the node needed
    assert (await ok(node, "GetManagementNodeStatus"))["problems"] == []


async def test_stopping_the_node_stops_the_agents_it_owns(props: Properties) -> None:
    node = ManagementNode(props)
    await node.start()
    try:
        host = await ok(node, "AddSimulatorHost", name="s", clusterUuid=await sim_cluster(node))
        pid = simulator_pid(node, host["uuid"])
    finally:
        await node.stop()
    assert not alive(pid)
    assert agents_of(props.data_dir) == []


async def test_a_restarted_node_adopts_the_agents_of_its_lab(props: Properties) -> None:
    node = ManagementNode(props)
    await node.start()
    host = await ok(node, "AddSimulatorHost", name="s", clusterUuid=await sim_cluster(node))
    pid = simulator_pid(node, host["uuid"])
    node.plugin(HostPlugin)._local.clear()  # as if the node had died: nothing stops it
    await node.stop()
    assert alive(pid)
    node = ManagementNode(props)
    await node.start()
    try:
        assert await host_status(node, host["uuid"]) == "Connected"
        assert simulator_pid(node, host["uuid"]) == pid  # the same agent, adopted
    finally:
        await node.stop()
    assert not alive(pid)


async def test_a_refused_add_kvm_host_starts_no_agent(node: ManagementNode) -> None:
    cluster = await sim_cluster(node)  # a Simulator cluster: no KVM host may join
    reply = await node.call("AddKVMHost", {"name": "k", "clusterUuid": cluster})
    assert not reply.success and reply.error is not None
    assert "a KVM host cannot join it" in reply.error.description
    assert agents_of(node.data_dir) == []
    assert await ok(node, "QueryHost") == []


async def test_a_call_during_a_host_reconnect_waits_for_it(
    node: ManagementNode, tmp_path: Path
) -> None:
    lab = await make_lab(node, tmp_path)
    reconnect = asyncio.create_task(node.call("ReconnectHost", {"uuid": lab.host["uuid"]}))
    while await host_status(node, lab.host["uuid"]) != "Connecting":
        await asyncio.sleep(0.005)
    vm = await ok(
        node,
        "CreateVmInstance",
        name="vm1",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )  # not "no host is Enabled and Connected": it waited for the reconnect
    assert vm["state"] == "Running"
    assert (await reconnect).success

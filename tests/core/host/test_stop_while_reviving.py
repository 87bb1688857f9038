"""A node whose start is given up while it is still starting a simulator host's agent must
stop that agent.

Found by the session check (tests/host_leaks.py): ztui snapshot tests quit their app (and
its node) before the node's start-up reconnect of the lab's simulator host was done, and
the agent kept running.  The agent process is paused here so that the start is certainly
given up while the node waits for the agent to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.core.host.test_owned_agents import agents_of

GiB = 1024**3


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_a_node_stopped_while_reviving_a_simulator_leaves_no_agent(
    props: Properties,
) -> None:
    async with ManagementNode(props) as node:
        zone = await ok(node, "CreateZone", name="z")
        cluster = await ok(
            node, "CreateCluster", name="c", zoneUuid=zone["uuid"], hypervisorType="Simulator"
        )
        await ok(
            node, "AddSimulatorHost", name="s", clusterUuid=cluster["uuid"], cpuNum=2,
            memorySize=GiB,
        )  # fmt: skip
    assert agents_of(props.data_dir) == []
    node = ManagementNode(props)
    starting = asyncio.create_task(node.start())  # ready only once the host reconnected
    pids: list[int] = []
    try:
        while not pids:  # the revive has started the agent; keep it from answering
            pids = agents_of(props.data_dir)
            await asyncio.sleep(0.01)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        starting.cancel()  # e.g. ztui quits, or the service is stopped, while it starts
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        assert not node.running
        assert [pid for pid in pids if running(pid)] == []
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

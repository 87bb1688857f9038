"""A node killed (SIGKILL) at any step of a virtual-router chain leaves a clean lab: after
the restart no router is Creating, Connecting or Destroying, no NIC or IP is left without
its owner, no appliance directory or agent process without its router, and a new VM on
the network gets a router that serves it.

The node runs in a child process on a simulator lab (crash_lab.py), killed by a flow
inserted through config.toml [chains] at every position of the declared chains, so a new
flow is covered without editing this; virtualRouterPostCreate is cut both in a create and
in a reconnect.  createVirtualRouter is rolled back at the restart, with the VM it was made
for; reconnectVirtualRouter and destroyVirtualRouter are run on.  One lab serves every
case: each action first makes what it needs (a router to reconnect or destroy, none to
create).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.appliance.models import ApplianceVmVO
from core.kernel.flow import FlowChainStatus
from core.kernel.flow_journal import FlowRunVO
from core.kernel.node import ManagementNode
from core.network.l3.models import UsedIpVO, VmNicVO
from core.virtual_router.flows import (
    CHAINS,
    CREATE_CHAIN,
    DESTROY_CHAIN,
    POST_CREATE_CHAIN,
    RECONNECT_CHAIN,
)
from tests import faults
from tests.conftest import ok, write_config
from tests.core.virtual_router import crash_lab

ACTIONS = {
    CREATE_CHAIN: ["create"],
    POST_CREATE_CHAIN: ["create", "reconnect"],  # nested in both
    RECONNECT_CHAIN: ["reconnect"],
    DESTROY_CHAIN: ["destroy"],
}
RUN_ON = {"reconnect": RECONNECT_CHAIN, "destroy": DESTROY_CHAIN}
"""Actions whose chain is resumable: run on to its end at the restart."""
CASES = [
    (chain, action, cut)
    for chain, actions in ACTIONS.items()
    for action in actions
    for cut in range(len(CHAINS[chain]) + 1)
]


def _run_node(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return faults.run_lab("tests.core.virtual_router.crash_lab", config, *args)


@pytest.fixture(scope="module")
def lab_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One lab for every case: made by a node that then stops."""
    config = write_config(tmp_path_factory.mktemp("router-crash"))
    made = _run_node(config, "setup")
    assert made.returncode == 0, made.stderr[-3000:]
    return config


async def _rows(node: ManagementNode) -> dict[str, Any]:
    def read(session: Any) -> dict[str, Any]:
        return {
            "runs": session.scalars(select(FlowRunVO.name)).all(),
            "appliances": [
                (a.uuid, a.state, a.status) for a in session.scalars(select(ApplianceVmVO))
            ],
            "nics": [
                (n.vm_instance_uuid, n.used_ip_uuid) for n in session.scalars(select(VmNicVO))
            ],
            "used_ips": set(session.scalars(select(UsedIpVO.uuid))),
        }

    return await node.db.run(read)  # type: ignore[union-attr]


def _agents(data_dir: Path) -> set[int]:
    found = subprocess.run(
        ["pgrep", "-f", f"virtual_router.main --socket .*{data_dir}/"],
        capture_output=True,
        text=True,
    ).stdout.split()
    return {int(pid) for pid in found}


async def _assert_clean(node: ManagementNode) -> None:
    rows = await _rows(node)
    assert rows["runs"] == []
    routers = {uuid: (state, status) for uuid, state, status in rows["appliances"]}
    assert all(s == ("Running", "Connected") for s in routers.values()), routers
    vms = {vm["uuid"]: vm["state"] for vm in await ok(node, "QueryVmInstance")}
    assert all(state in ("Running", "Stopped", "Destroyed") for state in vms.values()), vms
    owners = [owner for owner, _ in rows["nics"]]
    assert set(owners) <= set(vms) | set(routers), "a NIC outlived its owner"
    assert all(owners.count(uuid) == 2 for uuid in routers), "a router lacks a NIC"
    assert {ip for _, ip in rows["nics"] if ip} == rows["used_ips"], "an IP without its NIC"
    # on the host: one appliance directory and one agent per router, nothing else
    dirs = {p.name for p in node.data_dir.glob("simulators/*/appliances/*")}
    assert dirs == set(routers)
    inventories = await ok(node, "QueryVirtualRouterVm")
    assert _agents(node.data_dir) == {r["agentPid"] for r in inventories}


async def _assert_a_new_vm_gets_a_router(node: ManagementNode, config: Path) -> None:
    net_lab = await crash_lab.net_lab_of(node, config.parent / "lab")
    vm = await net_lab.create_vm("after")
    router = await net_lab.router()
    assert router is not None
    assert (router["state"], router["status"]) == ("Running", "Connected")
    [nic] = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    assert (await net_lab.served())[nic["mac"]] == nic["ip"]
    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    if await ok(node, "QueryVmInstance", conditions=[f"uuid={vm['uuid']}"]):
        await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])


@pytest.mark.parametrize(
    "chain,action,cut", CASES, ids=[f"{chain}-{cut}-in-{action}" for chain, action, cut in CASES]
)
async def test_a_node_killed_in_a_router_chain_leaves_a_clean_lab(
    lab_config: Path, chain: str, action: str, cut: int
) -> None:
    flows = CHAINS[chain]
    faulty = [*flows[:cut], crash_lab.KILL, *flows[cut:]]
    write_config(lab_config.parent, f"[chains]\n{chain} = {json.dumps(faulty)}\n")
    (lab_config.parent / "data" / crash_lab.MARKER).unlink(missing_ok=True)
    killed = _run_node(lab_config, action)
    assert killed.returncode == -9, killed.stderr[-3000:]

    write_config(lab_config.parent)  # the declared chains again
    node = crash_lab.lab_node(lab_config)
    await node.start()
    try:
        statuses = {r.chain_name: r.status for r in node.recovered}
        assert FlowChainStatus.ROLLBACK_FAILED not in statuses.values(), node.recovered
        if action in RUN_ON:  # resumable: run on to its end
            assert statuses == {RUN_ON[action]: FlowChainStatus.SUCCEEDED}
        else:  # rolled back, with the VM create it was made for
            assert statuses.get("createVm") == FlowChainStatus.ROLLED_BACK
            assert set(statuses) <= {CREATE_CHAIN, "createVm"}
        await _assert_clean(node)
        await _assert_a_new_vm_gets_a_router(node, lab_config)
        await _assert_clean(node)
    finally:
        await node.stop()

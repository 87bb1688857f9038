"""Fault injection at each flow of the appliance chain, of the post-create chain and
around the NIC flows of VM creation: a failed create leaves no IP, NIC, appliance,
appliance directory or agent process (simulator host; the real host's version is in
tests/system/test_network_faults.py)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from core.network.l3.models import UsedIpVO
from core.virtual_router.flows import CHAINS, CREATE_CHAIN, POST_CREATE_CHAIN
from core.vm.create_flows import DEFAULT_FLOWS as CREATE_FLOWS
from tests.conftest import ok
from tests.core.virtual_router.conftest import NetLab
from tests.core.vm.test_vm_faults import FAIL

NIC_FLOWS = [
    f for f in CREATE_FLOWS if f.endswith(("VmAllocateNicFlow", "VmInstantiateResourcePreFlow"))
]


def positions(chain: str) -> list[tuple[str, list[str]]]:
    if chain == "createVm":
        cases = []
        for flow in NIC_FLOWS:
            i = CREATE_FLOWS.index(flow)
            cases += [
                (chain, [*CREATE_FLOWS[:i], FAIL, *CREATE_FLOWS[i:]]),
                (chain, [*CREATE_FLOWS[: i + 1], FAIL, *CREATE_FLOWS[i + 1 :]]),
            ]
        return cases
    flows = CHAINS[chain]
    return [(chain, [*flows[:i], FAIL, *flows[i:]]) for i in range(len(flows) + 1)]


CASES = [
    case for chain in (CREATE_CHAIN, POST_CREATE_CHAIN, "createVm") for case in positions(chain)
]


async def snapshot(net_lab: NetLab) -> dict[str, Any]:
    node = net_lab.node
    used = await node.db.run(lambda s: sorted(ip for (ip,) in s.query(UsedIpVO.ip)))  # type: ignore[union-attr]
    agents = subprocess.run(
        ["pgrep", "-f", f"virtual_router.main --socket .*{node.data_dir}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    appliance_dirs = sorted(p.name for p in node.data_dir.glob("simulators/*/appliances/*"))
    return {
        "vms": await ok(node, "QueryVmInstance"),
        "nics": await ok(node, "QueryVmNic"),
        "routers": await ok(node, "QueryVirtualRouterVm"),
        "used": used,
        "agents": agents,
        "dirs": appliance_dirs,
    }


@pytest.mark.parametrize("chain,faulty", CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
async def test_a_fault_leaves_no_leak(net_lab: NetLab, chain: str, faulty: list[str]) -> None:
    node = net_lab.node
    before = await snapshot(net_lab)
    node.chains.build_all({chain: faulty}, [])
    try:
        reply = await node.call(
            "CreateVmInstance",
            {
                "name": "doomed",
                "instanceOfferingUuid": net_lab.lab.offering["uuid"],
                "imageUuid": net_lab.lab.image_uuid,
                "l3NetworkUuids": [net_lab.private_l3["uuid"]],
            },
        )
    finally:
        node.chains.build_all({}, [])
    assert not reply.success and "injected fault" in str(reply.error)
    assert await snapshot(net_lab) == before
    await net_lab.create_vm("fine")  # and nothing is in the way afterwards

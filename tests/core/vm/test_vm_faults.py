"""Fault injection: a failure at any point of the create chain or of the host allocator
chain leaves nothing behind; and creates racing for capacity never overbook a host.

Faults are injected the way a plugin inserts a flow: the declared chain is rebuilt with
a failing flow at each position (core.kernel.chains), so the product code has no
test-only switch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from contracts import kvm
from core.allocator.flows import DEFAULT_FLOWS as ALLOCATOR_FLOWS
from core.host.plugin import HostPlugin
from core.kernel.flow import Flow
from core.kernel.node import ManagementNode
from core.vm.create_flows import DEFAULT_FLOWS as CREATE_FLOWS
from core.volume.models import VolumeVO
from tests.conftest import ok
from tests.core.vm.conftest import GiB, Lab, make_lab

FAIL = f"{__name__}.InjectedFault"


class InjectedFault(Flow):
    async def run(self, data: dict[str, Any]) -> None:
        raise RuntimeError("injected fault")

    async def rollback(self, data: dict[str, Any]) -> None:
        return None


async def snapshot(lab: Lab) -> dict[str, Any]:
    """Everything a failed create could leak."""
    node = lab.node
    [host] = await ok(node, "QueryHost")
    [ps] = await ok(node, "QueryPrimaryStorage")
    agent = node.plugin(HostPlugin)._agents[lab.host["uuid"]]
    domains = (await agent.call(kvm.VM_SYNC, {}))["states"]
    volumes = await node.db.run(lambda s: s.query(VolumeVO).count())  # type: ignore[union-attr]
    return {
        "vms": await ok(node, "QueryVmInstance"),
        "volumes": volumes,
        "hostCpu": host["availableCpuCapacity"],
        "hostMemory": host["availableMemoryCapacity"],
        "psCapacity": ps["availableCapacity"],
        "domains": domains,
        # Files and directories: volumes, VMs' volume directories, console logs.
        "storageEntries": sorted(
            str(p.relative_to(lab.primary_url))
            for top in ("rootvolumes", "consoles")
            for p in (lab.primary_url / top).rglob("*")
        ),
        "tags": await ok(node, "QueryUserTag"),
    }


@pytest.mark.parametrize(
    "chain,flows", [("createVm", CREATE_FLOWS), ("hostAllocator", ALLOCATOR_FLOWS)]
)
async def test_a_fault_anywhere_leaves_no_leak(lab: Lab, chain: str, flows: list[str]) -> None:
    node = lab.node
    # Warm the image cache: it is shared by later VMs and kept on purpose.
    vm = await ok(
        node,
        "CreateVmInstance",
        name="warm",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )
    before = await snapshot(lab)
    for position in range(len(flows) + 1):
        faulty = [*flows[:position], FAIL, *flows[position:]]
        node.chains.build_all({chain: faulty}, [])
        reply = await node.call(
            "CreateVmInstance",
            {
                "name": f"doomed-{position}",
                "instanceOfferingUuid": lab.offering["uuid"],
                "imageUuid": lab.image_uuid,
                "userTags": ["doomed"],
            },
        )
        assert not reply.success, f"fault at {position} did not fail the create"
        assert "injected fault" in str(reply.error)
        assert await snapshot(lab) == before, f"leak with a fault at position {position}"
    node.chains.build_all({}, [])
    assert (await ok(node, "StopVmInstance", uuid=vm["uuid"]))["state"] == "Stopped"


async def test_concurrent_creates_never_overbook(node: ManagementNode, tmp_path: Path) -> None:
    # Room for exactly 20 VMs of 512 MiB.
    lab = await make_lab(node, tmp_path, cpu=8, memory=10 * GiB)
    replies = await asyncio.gather(
        *(
            node.call(
                "CreateVmInstance",
                {
                    "name": f"vm-{i}",
                    "instanceOfferingUuid": lab.offering["uuid"],
                    "imageUuid": lab.image_uuid,
                },
            )
            for i in range(50)
        )
    )
    done = [r for r in replies if r.success]
    refused = [r for r in replies if not r.success]
    assert len(done) == 20 and len(refused) == 30
    for reply in refused:
        assert reply.error is not None and reply.error.root_cause().code == "HOST_ALLOCATION.1000"
    [host] = await ok(node, "QueryHost")
    assert host["availableMemoryCapacity"] == 0
    assert len(await ok(node, "QueryVmInstance", conditions=["state=Running"])) == 20
    assert await node.db.run(lambda s: s.query(VolumeVO).count()) == 20  # type: ignore[union-attr]

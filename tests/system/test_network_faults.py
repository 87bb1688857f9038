"""Fault injection on the real host: a failure at every position of the chains that make
a virtual router, and around the NIC flows of the create-VM chain, leaves nothing behind:
no used IP, no NIC, no appliance row, namespace, veth, nft table, process or directory,
and no domain.  Then, the chains restored, one create succeeds.

Faults are injected the way a plugin inserts a flow: the node's chains are rebuilt
(with their usual configuration and plugin insertions) with a failing flow at one
position, so the product has no test-only switch.  The failing flow records the uuids
of the VM and the appliance being made, so the host checks look for those by name.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from contracts import kvm
from core.appliance.models import ApplianceVmVO
from core.host.plugin import HostPlugin
from core.kernel.flow import Flow
from core.network.l3.models import UsedIpVO
from core.virtual_router.flows import CREATE_CHAIN, POST_CREATE_CHAIN
from core.vm.create_flows import CHAIN as CREATE_VM_CHAIN
from core.vm.create_flows import VmAllocateNicFlow, VmInstantiateResourcePreFlow
from tests.conftest import ok
from tests.system.net_lab import (
    UP_RE,
    HostState,
    Lab,
    leftovers,
    rebuild_chains,
    running_node,
    unrelated,
    virsh,
    wait_for,
)

pytestmark = pytest.mark.system

FAIL = f"{__name__}.InjectedFault"
SEEN: dict[str, set[str]] = {"vms": set(), "appliances": set()}
"""The uuids of what the failed operations were making (filled by InjectedFault)."""


class InjectedFault(Flow):
    async def run(self, data: Any) -> None:  # a chain's FlowData
        spec = getattr(data, "spec", None)
        if spec is not None:
            SEEN["vms"].add(spec.vm_uuid)
        appliance = getattr(data, "appliance", None)
        if appliance is not None:
            SEEN["appliances"].add(appliance["uuid"])
        # A fault after the pre-instantiate flow: the router it made exists by now.
        SEEN["appliances"].update(
            await data.node.db.run(lambda s: list(s.scalars(select(ApplianceVmVO.uuid))))
        )
        raise RuntimeError("injected fault")

    async def rollback(self, data: Any) -> None:
        return None


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def positions(flows: list[str], chain: str) -> list[tuple[str, int]]:
    """Every position of a chain, or the four around the NIC flows of createVm."""
    if chain != CREATE_VM_CHAIN:
        return [(chain, i) for i in range(len(flows) + 1)]
    nic, pre = (
        flows.index(_path(VmAllocateNicFlow)),
        flows.index(_path(VmInstantiateResourcePreFlow)),
    )
    return [(chain, i) for i in sorted({nic, nic + 1, pre, pre + 1})]


async def db_state(lab: Lab) -> dict[str, Any]:
    """What a failed create could leak in the database."""
    node = lab.node

    def read(session: Any) -> dict[str, Any]:
        used = session.execute(
            select(UsedIpVO.l3_network_uuid, func.count()).group_by(UsedIpVO.l3_network_uuid)
        )
        return {
            "usedIps": dict(used.all()),
            "appliances": session.scalar(select(func.count()).select_from(ApplianceVmVO)),
        }

    return {
        **await node.db.run(read),
        "vms": await ok(node, "QueryVmInstance"),
        "nics": await ok(node, "QueryVmNic"),
        "routers": await ok(node, "QueryVirtualRouterVm"),
    }


async def domains(lab: Lab) -> dict[str, str]:
    agent = await lab.node.plugin(HostPlugin).agent_of(lab.host_uuid)
    return dict((await agent.call(kvm.VM_SYNC, {}))["states"])


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with running_node("netfault") as lab:
        yield lab


async def test_a_fault_anywhere_in_the_router_chains_leaves_no_leak(lab: Lab) -> None:
    node = lab.node
    host_before = HostState.now()
    original = {c: node.chains.flows(c) for c in node.chains.declared()}
    for seen in SEEN.values():
        seen.clear()
    await lab.make_networks()
    created = node.events.subscribe(
        "/vm/state/change", lambda event: SEEN["vms"].add(event.data["vmUuid"])
    )
    try:
        before = await db_state(lab)
        host_networks = HostState.now()  # the bridges of our networks
        assert before["routers"] == [] and before["nics"] == []
        cases = [
            case
            for chain in (CREATE_CHAIN, POST_CREATE_CHAIN, CREATE_VM_CHAIN)
            for case in positions(node.chains.flows(chain), chain)
        ]
        for chain, position in cases:
            flows = node.chains.flows(chain)
            rebuild_chains(node, {chain: [*flows[:position], FAIL, *flows[position:]]})
            try:
                reply = await node.call(
                    "CreateVmInstance",
                    {
                        "name": f"doomed-{position}",
                        "instanceOfferingUuid": lab.instance_offering_uuid,
                        "imageUuid": lab.image_uuid,
                        "l3NetworkUuids": [lab.networks["private"]["uuid"]],
                    },
                )
            finally:
                rebuild_chains(node, {})
            where = f"a fault at {chain}[{position}]"
            assert not reply.success, f"{where} did not fail the create"
            assert "injected fault" in str(reply.error), f"{where}: {reply.error}"
            assert "rollback(s) failed" not in str(reply.error), f"{where}: {reply.error}"
            if chain != CREATE_VM_CHAIN:  # the fault ran while the router was being made
                assert "cannot create the virtual router" in str(reply.error), reply.error
            assert await db_state(lab) == before, f"{where} leaked in the database"
            lab.owned.vm_uuids |= SEEN["vms"]
            lab.owned.appliance_uuids |= SEEN["appliances"]
            found = leftovers(host_networks, HostState.now(), lab.owned)
            assert found == {}, f"{where} leaked on the host: {found}"
            assert not lab.appliances_dir.exists() or not any(lab.appliances_dir.iterdir()), (
                f"{where} left an appliance directory: {list(lab.appliances_dir.iterdir())}"
            )
            assert not set(await domains(lab)) & SEEN["vms"], f"{where} left a domain"
            for vm_uuid in SEEN["vms"]:
                assert f"zsl-{vm_uuid}" not in virsh("list", "--all", "--name"), where
        # The faults did reach the router chains (an appliance was being made).
        assert SEEN["appliances"], "no fault ran while a router was being made"
    finally:
        created.cancel()

    # The chains restored exactly: a create succeeds and the guest gets its address.
    assert {c: node.chains.flows(c) for c in node.chains.declared()} == original
    vm = await lab.create_vm("survivor")
    assert vm["state"] == "Running"
    [nic] = await lab.nics(vm["uuid"])
    [router] = await lab.routers()
    assert (router["state"], router["status"]) == ("Running", "Connected")
    address = await ok(node, "GetVmConsoleAddress", uuid=vm["uuid"])
    log = Path(address["consoleLogPath"])

    def up() -> re.Match[str] | None:
        return UP_RE.search(log.read_text(errors="replace")) if log.exists() else None

    match = await wait_for(up, "the survivor's TINY-GUEST line", timeout=180)
    assert match.group(1) == nic["ip"], match.group(0)

    await lab.delete_ours()
    host_after = HostState.now()
    others = unrelated(host_before, host_after, lab.owned)
    print(f"zsl objects of other sessions (tolerated): {others}")
    assert leftovers(host_before, host_after, lab.owned) == {}
    assert not lab.appliances_dir.exists() or not any(lab.appliances_dir.iterdir())

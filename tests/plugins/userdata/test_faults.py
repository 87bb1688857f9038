"""A failure at every position of createVm from the resources' pre flow on leaves no
entry in the router's metadata server (the VM's release takes it out), and the chains
restored, the next VM is served."""

from __future__ import annotations

import base64

from core.kernel.chains import FlowChainContributor
from core.kernel.node import ManagementNode
from core.vm.create_flows import CHAIN as CREATE_VM_CHAIN
from core.vm.create_flows import VmInstantiateResourcePreFlow
from tests.conftest import ok
from tests.faults import FailHere, path_of
from tests.plugins.userdata.conftest import UserdataLab


def rebuild(node: ManagementNode, overrides: dict[str, list[str]]) -> None:
    """Every chain as the node's start built it, with ``overrides`` ({}: restores)."""
    insertions = [
        ins
        for contributor in node.registry.extensions(FlowChainContributor)
        for ins in contributor.flow_insertions()
    ]
    node.chains.build_all({**dict(node.props["chains"]), **overrides}, insertions)


async def test_a_failed_create_leaves_no_entry(ud_lab: UserdataLab) -> None:
    node, net = ud_lab.node, ud_lab.net
    keeper = await net.create_vm("keeper", userData=base64.b64encode(b"#!/bin/sh\n").decode())
    served = await ud_lab.served()
    assert [e["vmUuid"] for e in served["entries"].values()] == [keeper["uuid"]]
    flows = node.chains.flows(CREATE_VM_CHAIN)
    start = flows.index(path_of(VmInstantiateResourcePreFlow))
    for position in range(start, len(flows) + 1):
        rebuild(node, {CREATE_VM_CHAIN: [*flows[:position], path_of(FailHere), *flows[position:]]})
        try:
            reply = await node.call(
                "CreateVmInstance",
                {
                    "name": f"doomed-{position}",
                    "instanceOfferingUuid": net.lab.offering["uuid"],
                    "imageUuid": net.lab.image_uuid,
                    "l3NetworkUuids": [net.private_l3["uuid"]],
                    "userData": base64.b64encode(b"doomed").decode(),
                },
            )
        finally:
            rebuild(node, {})
        where = f"a fault at {CREATE_VM_CHAIN}[{position}]"
        assert not reply.success and "injected fault" in str(reply.error), where
        assert await ud_lab.served() == served, f"{where} left an entry"
    assert node.chains.flows(CREATE_VM_CHAIN) == flows
    after = await net.create_vm("after")
    assert {e["vmUuid"] for e in (await ud_lab.served())["entries"].values()} == {
        keeper["uuid"],
        after["uuid"],
    }
    assert await ok(node, "QueryVmInstance", conditions=["name~=doomed-%"]) == []

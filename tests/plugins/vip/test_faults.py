"""A fault at every flow of the plugin's chains (attach and detach of port forwarding and
EIPs, and its flows in the router's post-create chain) leaves no row change, no rule and
no VIP in the router behind (simulator host: its router agent writes the ruleset it would
apply, VIPs included), and the same operation works afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from zsl_vip import flows

from core.kernel.chains import FlowChainContributor
from core.kernel.node import ManagementNode
from core.virtual_router.extension_points import POST_CREATE_CHAIN
from tests.conftest import ok
from tests.core.vm.test_vm_faults import FAIL
from tests.plugins.vip.conftest import VipLab


def rebuild(node: ManagementNode, overrides: dict[str, list[str]]) -> None:
    """The chains as the node built them (with every plugin's insertions), but ``overrides``."""
    insertions = [
        i for c in node.registry.extensions(FlowChainContributor) for i in c.flow_insertions()
    ]
    node.chains.build_all(overrides, insertions)


def with_fault(flow_list: list[str]) -> list[list[str]]:
    return [[*flow_list[:i], FAIL, *flow_list[i:]] for i in range(len(flow_list) + 1)]


ATTACH_CASES = [
    *(
        (chain, faulty)
        for chain in (flows.CREATE_PF, flows.CREATE_EIP)
        for faulty in with_fault(flows.CREATE)
    ),
    *(
        (chain, faulty)
        for chain in (flows.ATTACH_PF, flows.ATTACH_EIP)
        for faulty in with_fault(flows.ATTACH)
    ),
]


def strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "lastOpDate"} for row in rows]


async def state(lab: VipLab) -> tuple[Any, ...]:
    """The rows (but when they were last written) and the router's ruleset."""
    return (*(strip(rows) for rows in await lab.rows()), await lab.ruleset())


async def create(lab: VipLab, chain: str, vip: dict[str, Any], nic: dict[str, Any] | None) -> Any:
    """Create a rule (or an EIP, for an EIP chain), attached to ``nic`` if given."""
    attached = {"vmNicUuid": nic["uuid"]} if nic else {}
    if chain in (flows.CREATE_EIP, flows.ATTACH_EIP, flows.DETACH_EIP):
        return await lab.node.call("CreateEip", {"name": "e", "vipUuid": vip["uuid"], **attached})
    return await lab.node.call(
        "CreatePortForwardingRule",
        {
            "name": "r",
            "vipUuid": vip["uuid"],
            "vipPortStart": 80,
            "protocolType": "TCP",
            **attached,
        },
    )


async def attach(lab: VipLab, chain: str, uuid: str, nic: dict[str, Any]) -> Any:
    if chain == flows.ATTACH_EIP:
        return await lab.node.call("AttachEip", {"eipUuid": uuid, "vmNicUuid": nic["uuid"]})
    return await lab.node.call(
        "AttachPortForwardingRule", {"ruleUuid": uuid, "vmNicUuid": nic["uuid"]}
    )


@pytest.mark.parametrize(
    "chain,faulty", ATTACH_CASES, ids=[f"{c}-{f.index(FAIL)}" for c, f in ATTACH_CASES]
)
async def test_a_failed_attach_leaves_nothing(
    vip_lab: VipLab, chain: str, faulty: list[str]
) -> None:
    node = vip_lab.node
    nic = await vip_lab.vm_nic("web")
    vip = await vip_lab.vip()
    other, other_nic = await vip_lab.vip("other"), await vip_lab.vm_nic("other")
    # Something on the router already, which must stay as it is.
    await ok(
        node,
        "CreatePortForwardingRule",
        name="keep",
        vipUuid=other["uuid"],
        vipPortStart=22,
        protocolType="TCP",
        vmNicUuid=other_nic["uuid"],
    )
    creating = chain in (flows.CREATE_PF, flows.CREATE_EIP)
    uuid = None if creating else (await create(vip_lab, chain, vip, None)).inventory["uuid"]

    async def act() -> Any:
        if uuid is None:
            return await create(vip_lab, chain, vip, nic)
        return await attach(vip_lab, chain, uuid, nic)

    before = await state(vip_lab)
    rebuild(node, {chain: faulty})
    reply = await act()
    assert not reply.success and "injected fault" in str(reply.error)
    rebuild(node, {})
    assert await state(vip_lab) == before
    reply = await act()
    assert reply.success, reply.error


DETACH_CASES = [
    (chain, faulty)
    for chain in (flows.DETACH_PF, flows.DETACH_EIP)
    for faulty in with_fault(flows.DETACH)
]


@pytest.mark.parametrize(
    "chain,faulty", DETACH_CASES, ids=[f"{c}-{f.index(FAIL)}" for c, f in DETACH_CASES]
)
async def test_a_failed_detach_can_be_done_again(
    vip_lab: VipLab, chain: str, faulty: list[str]
) -> None:
    """Detach has no way back (it is resumable): a failure leaves at most less in the router
    than the database says, and doing it again finishes it."""
    node = vip_lab.node
    nic = await vip_lab.vm_nic("web")
    vip = await vip_lab.vip()
    empty = await state(vip_lab)
    made = await create(vip_lab, chain, vip, nic)
    assert made.success, made.error
    detach = "DetachEip" if chain == flows.DETACH_EIP else "DetachPortForwardingRule"
    rebuild(node, {chain: faulty})
    reply = await node.call(detach, {"uuid": made.inventory["uuid"]})
    assert not reply.success and "injected fault" in str(reply.error)
    assert made.inventory["uuid"] not in (await vip_lab.ruleset()) or faulty.index(FAIL) == 0
    rebuild(node, {})
    if faulty.index(FAIL) < len(faulty) - 1:  # the row was not detached yet
        await ok(node, detach, uuid=made.inventory["uuid"])
    delete = "DeleteEip" if chain == flows.DETACH_EIP else "DeletePortForwardingRule"
    await ok(node, delete, uuid=made.inventory["uuid"])
    after = await state(vip_lab)
    assert after[:3] == (empty[0], [], [])
    assert after[3] in ("", empty[3], "table ip zsl_vr_vip\ndelete table ip zsl_vr_vip\n")


async def test_a_fault_in_the_post_create_flows_leaves_no_router(vip_lab: VipLab) -> None:
    """The router is made by a VM's create: a fault after each of the plugin's flows fails
    the create, and the router, its NICs and its agent go with it."""
    node = vip_lab.node
    post_create = node.chains.flows(POST_CREATE_CHAIN)
    ours = [f for f in post_create if f.startswith("zsl_vip.")]
    assert ours == flows.POST_CREATE
    for flow in ours:
        i = post_create.index(flow)
        rebuild(node, {POST_CREATE_CHAIN: [*post_create[: i + 1], FAIL, *post_create[i + 1 :]]})
        reply = await node.call(
            "CreateVmInstance",
            {
                "name": "doomed",
                "instanceOfferingUuid": vip_lab.net.lab.offering["uuid"],
                "imageUuid": vip_lab.net.lab.image_uuid,
                "l3NetworkUuids": [vip_lab.net.private_l3["uuid"]],
            },
        )
        assert not reply.success and "injected fault" in str(reply.error)
        assert await ok(node, "QueryVirtualRouterVm") == []
        assert await ok(node, "QueryVmNic") == []
    rebuild(node, {})
    await vip_lab.vm_nic("fine")

"""Teardown for system tests whose node made networks on the real host (the default
public and private networks of the first-start bootstrap included): every router,
offering, L3 (private first) and L2 network goes through the API, which takes their
bridges, host NAT entries, namespaces and processes off the host.  The bootstrap's
image and instance offering hold nothing on the host beyond the data dir."""

from __future__ import annotations

from core.kernel.node import ManagementNode
from tests.conftest import ok


async def delete_networks(node: ManagementNode) -> None:
    for router in await ok(node, "QueryVirtualRouterVm"):
        await ok(node, "DestroyVirtualRouter", uuid=router["uuid"])
    for offering in await ok(node, "QueryVirtualRouterOffering"):
        await ok(node, "DeleteVirtualRouterOffering", uuid=offering["uuid"])
    for l3 in sorted(await ok(node, "QueryL3Network"), key=lambda n: n["category"] != "Private"):
        await ok(node, "DeleteL3Network", uuid=l3["uuid"])
    for l2 in await ok(node, "QueryL2Network"):
        await ok(node, "DeleteL2Network", uuid=l2["uuid"])

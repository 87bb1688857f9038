"""Teardown for system tests whose node made networks on the real host (the default
public and private networks of the first-start bootstrap included): every router,
offering, L3 (private first) and L2 network goes through the API, which takes their
bridges, host NAT entries, namespaces and processes off the host.  The bootstrap's
image and instance offering hold nothing on the host beyond the data dir.

``by_hand`` is for after the node: whatever still names the test's directory (a domain
whose disks are there, the local KVM agent, which outlives nodes by design, and any
process the API could not stop) is removed, whether the API teardown worked or not."""

from __future__ import annotations

import logging
from pathlib import Path

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.system.net_lab import HostState, kill_all, virsh

log = logging.getLogger(__name__)


async def delete_networks(node: ManagementNode) -> None:
    for router in await ok(node, "QueryVirtualRouterVm"):
        await ok(node, "DestroyVirtualRouter", uuid=router["uuid"])
    for offering in await ok(node, "QueryVirtualRouterOffering"):
        await ok(node, "DeleteVirtualRouterOffering", uuid=offering["uuid"])
    for l3 in sorted(await ok(node, "QueryL3Network"), key=lambda n: n["category"] != "Private"):
        await ok(node, "DeleteL3Network", uuid=l3["uuid"])
    for l2 in await ok(node, "QueryL2Network"):
        await ok(node, "DeleteL2Network", uuid=l2["uuid"])


async def api_teardown(node: ManagementNode) -> None:
    """Every VM destroyed and expunged, then the networks; a failure is logged (the test's
    own failure matters more) and the node is stopped all the same."""
    try:
        for vm in await ok(node, "QueryVmInstance"):
            await node.call("DestroyVmInstance", {"uuid": vm["uuid"]})
            await node.call("ExpungeVmInstance", {"uuid": vm["uuid"]})
        await delete_networks(node)
    except Exception as exc:
        log.warning("cleanup through the API failed: %s", exc)
    finally:
        if node.running:
            await node.stop()


def by_hand(root: Path) -> None:
    """Domains whose definition names ``root``, then every process naming it."""
    for name in virsh("list", "--all", "--name").split():
        if name.startswith("zsl-") and str(root) in virsh("dumpxml", name):
            log.warning("removing the domain %s by hand", name)
            virsh("destroy", name)
            virsh("undefine", name)
    kill_all(HostState.now().processes_under(root))

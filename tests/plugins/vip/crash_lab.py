"""A simulator lab with port forwarding whose node is killed (SIGKILL) in one of the VIP
plugin's chains, for test_vip_crash.py: :func:`main` runs in a child process, makes the
lab if the data dir has none, and does one action, which a fault (tests/faults.py's
KillNode, set through config.toml [chains]) kills."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.virtual_router.crash_lab import lab_node, net_lab_of
from tests.plugins.vip.conftest import VipLab


async def lab_of(node: ManagementNode, root: Path) -> tuple[VipLab, dict[str, Any]]:
    """The lab (made if missing: PortForwarding and Eip on the private network, a VM that
    keeps its router) with its router connected, and the NIC the actions use."""
    new = not await ok(node, "QueryZone")
    lab = VipLab(await net_lab_of(node, root))
    if new:
        [provider] = await ok(
            node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"]
        )
        await ok(
            node,
            "AttachNetworkServiceToL3Network",
            l3NetworkUuid=lab.net.private_l3["uuid"],
            networkServices={provider["uuid"]: ["PortForwarding", "Eip"]},
        )
        return lab, await lab.vm_nic("keeper")
    [nic] = await ok(node, "QueryVmNic", conditions=["type=VNIC"])
    # A node started again finds the router's agent gone with its simulator host's agent:
    # reconnect it (the ping tracker would, a little later).
    router = await lab.net.router()
    if router is not None:
        await ok(node, "ReconnectVirtualRouter", uuid=router["uuid"])
    return lab, nic


async def act(lab: VipLab, nic: dict[str, Any], action: str) -> None:
    node = lab.node
    vip = await lab.vip(f"vip-{action}")
    if action == "create-pf":
        await ok(node, "CreatePortForwardingRule", name="r", vipUuid=vip["uuid"],
                 vipPortStart=80, protocolType="TCP", vmNicUuid=nic["uuid"])  # fmt: skip
    elif action == "create-eip":
        await ok(node, "CreateEip", name="e", vipUuid=vip["uuid"], vmNicUuid=nic["uuid"])
    elif action in ("attach-pf", "detach-pf"):
        rule = await ok(node, "CreatePortForwardingRule", name="r", vipUuid=vip["uuid"],
                        vipPortStart=81, protocolType="TCP")  # fmt: skip
        await ok(node, "AttachPortForwardingRule", ruleUuid=rule["uuid"], vmNicUuid=nic["uuid"])
        if action == "detach-pf":
            await ok(node, "DetachPortForwardingRule", uuid=rule["uuid"])
    elif action != "setup":
        raise ValueError(f"unknown action {action}")


def main(config: str, action: str) -> None:
    sys.exit(asyncio.run(_main(Path(config), action)))


async def _main(config: Path, action: str) -> int:
    node = lab_node(config)
    await node.start()
    try:
        await act(*await lab_of(node, config.parent / "lab"), action)
    finally:
        await node.stop()
    return 0

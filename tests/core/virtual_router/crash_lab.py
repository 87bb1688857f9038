"""A simulator lab with a virtual router whose node is killed (SIGKILL) in a router chain,
for test_router_crash.py.

The fault is tests/faults.py's KillNode, inserted through config.toml [chains]: it
SIGKILLs the node the first time it runs in a data dir (it leaves a marker), so a chain
resumed after the crash, which runs the recorded flows again, goes on past it.
:func:`main` runs in a child process: it starts a node on the config, makes the lab if
the data dir has none, and does one action, which a fault kills.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from core.kernel import properties
from core.kernel.node import ManagementNode
from tests import faults
from tests.conftest import ok
from tests.core.virtual_router.conftest import NetLab, make_net_lab
from tests.core.vm.conftest import Lab

MARKER = faults.MARKER
KILL = faults.KILL


def lab_node(config: Path) -> ManagementNode:
    return ManagementNode(properties.load(config, env={}), serve_socket=False)


async def net_lab_of(node: ManagementNode, root: Path) -> NetLab:
    """The lab in the node's data dir, made if there is none yet."""
    if not await ok(node, "QueryZone"):
        return await make_net_lab(node, root)
    [cluster] = await ok(node, "QueryCluster")
    [host] = await ok(node, "QueryHost")
    [offering] = await ok(node, "QueryInstanceOffering")
    [image] = await ok(node, "QueryImage")
    [public] = await ok(node, "QueryL3Network", conditions=["name=public"])
    [private] = await ok(node, "QueryL3Network", conditions=["name=private"])
    [vr_offering] = await ok(node, "QueryVirtualRouterOffering")
    lab = Lab(node, host, offering, image["uuid"], root / "ps")
    return NetLab(lab, node, cluster["uuid"], public, private, vr_offering)


async def a_router(net_lab: NetLab) -> dict[str, Any]:
    """The private network's router, made (by a VM there) if it has none."""
    router = await net_lab.router()
    if router is None:
        await net_lab.create_vm("router-maker")
        router = await net_lab.router()
    assert router is not None
    return router


async def act(net_lab: NetLab, action: str) -> None:
    node = net_lab.node
    if action == "create":  # a VM on the network makes its router
        router = await net_lab.router()
        if router is not None:
            await ok(node, "DestroyVirtualRouter", uuid=router["uuid"])
        await net_lab.create_vm("doomed")
    elif action == "reconnect":
        await ok(node, "ReconnectVirtualRouter", uuid=(await a_router(net_lab))["uuid"])
    elif action == "destroy":
        await ok(node, "DestroyVirtualRouter", uuid=(await a_router(net_lab))["uuid"])
    elif action == "setup":  # a VM that stays on the network, as in any lab in use
        await net_lab.create_vm("keeper")
    else:
        raise ValueError(f"unknown action {action}")


def main(config: str, action: str) -> None:
    sys.exit(asyncio.run(_main(Path(config), action)))


async def _main(config: Path, action: str) -> int:
    node = lab_node(config)
    await node.start()
    try:
        await act(await net_lab_of(node, config.parent / "lab"), action)
    finally:
        await node.stop()
    return 0

"""A simulator lab whose node is killed (SIGKILL) in the chains of images from volumes
and of volume resizes, for test_from_volume_crash.py: :func:`main` runs in a child
process, makes the lab (a stopped VM) if the data dir has none, and does one action,
which a fault (tests/faults.py, set through config.toml [chains]) kills."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from core.kernel.node import ManagementNode
from core.volume.models import VolumeVO
from tests.conftest import ok
from tests.core.virtual_router.crash_lab import lab_node
from tests.core.vm.conftest import MiB, make_lab

GROWTH = 32 * MiB
"""How much the ``resize`` action grows the VM's root volume by."""


async def stopped_vm(node: ManagementNode, root: Path) -> dict[str, Any]:
    """The lab's VM (made, then stopped, if the lab is new)."""
    if not await ok(node, "QueryZone"):
        lab = await make_lab(node, root)
        vm = await ok(
            node,
            "CreateVmInstance",
            name="source",
            instanceOfferingUuid=lab.offering["uuid"],
            imageUuid=lab.image_uuid,
        )
        return await ok(node, "StopVmInstance", uuid=vm["uuid"])  # type: ignore[no-any-return]
    [vm] = await ok(node, "QueryVmInstance")
    return vm  # type: ignore[no-any-return]


async def act(node: ManagementNode, vm: dict[str, Any], action: str) -> None:
    if action == "export":
        await ok(
            node,
            "CreateRootVolumeTemplateFromRootVolume",
            rootVolumeUuid=vm["rootVolumeUuid"],
            name="doomed",
        )
    elif action == "resize":
        uuid = vm["rootVolumeUuid"]
        size = await node.db.run(lambda s: s.get(VolumeVO, uuid).size)  # type: ignore[union-attr]
        await ok(node, "ResizeRootVolume", uuid=uuid, size=size + GROWTH)
    elif action != "setup":
        raise ValueError(f"unknown action {action}")


def main(config: str, action: str) -> None:
    sys.exit(asyncio.run(_main(Path(config), action)))


async def _main(config: Path, action: str) -> int:
    node = lab_node(config)
    await node.start()
    try:
        await act(node, await stopped_vm(node, config.parent / "lab"), action)
    finally:
        await node.stop()
    return 0

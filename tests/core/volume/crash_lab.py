"""A simulator lab with a stopped VM (``keeper``) whose node is killed (SIGKILL) in a
chain of data volumes, of images from volumes or of volume resizes, for
test_volume_crash.py and tests/core/image/test_from_volume_crash.py: :func:`main` runs in
a child process, makes the lab if the data dir has none, and does one action, which a
fault (tests/faults.py's KillNode, set through config.toml [chains]) kills."""

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


async def lab_vm(node: ManagementNode, root: Path) -> dict[str, Any]:
    """The lab's stopped VM (the lab is made first if missing)."""
    if not await ok(node, "QueryZone"):
        lab = await make_lab(node, root)
        return await ok(  # type: ignore[no-any-return]
            node,
            "CreateVmInstance",
            name="keeper",
            instanceOfferingUuid=lab.offering["uuid"],
            imageUuid=lab.image_uuid,
            strategy="CreateStopped",
        )
    [vm] = await ok(node, "QueryVmInstance", conditions=["name=keeper"])
    return vm  # type: ignore[no-any-return]


async def act(node: ManagementNode, vm: dict[str, Any], action: str) -> None:
    if action == "setup":
        return
    if action == "create":
        await ok(node, "CreateDataVolume", name="doomed", diskSize=MiB)
    elif action == "create-vm":
        offering = await ok(node, "CreateDiskOffering", name="disk", diskSize=MiB)
        await ok(node, "CreateVmInstance", name="doomed-vm",
                 instanceOfferingUuid=vm["instanceOfferingUuid"], imageUuid=vm["imageUuid"],
                 dataDiskOfferingUuids=[offering["uuid"]] * 2)  # fmt: skip
    elif action == "export":
        await ok(node, "CreateRootVolumeTemplateFromRootVolume",
                 rootVolumeUuid=vm["rootVolumeUuid"], name="doomed")  # fmt: skip
    elif action == "resize":
        uuid = vm["rootVolumeUuid"]
        size = await node.db.run(lambda s: s.get(VolumeVO, uuid).size)  # type: ignore[union-attr]
        await ok(node, "ResizeRootVolume", uuid=uuid, size=size + GROWTH)
    elif action in ("attach", "detach", "expunge"):
        volume = await ok(node, "CreateDataVolume", name=f"v-{action}", diskSize=MiB)
        if action == "expunge":
            await ok(node, "DeleteDataVolume", uuid=volume["uuid"])
            await ok(node, "ExpungeDataVolume", uuid=volume["uuid"])
            return
        await ok(node, "AttachDataVolumeToVm", volumeUuid=volume["uuid"], vmInstanceUuid=vm["uuid"])
        if action == "detach":
            await ok(node, "DetachDataVolumeFromVm", uuid=volume["uuid"])
    else:
        raise ValueError(f"unknown action {action}")


def main(config: str, action: str) -> None:
    sys.exit(asyncio.run(_main(Path(config), action)))


async def _main(config: Path, action: str) -> int:
    node = lab_node(config)
    await node.start()
    try:
        await act(node, await lab_vm(node, config.parent / "lab"), action)
    finally:
        await node.stop()
    return 0

"""A node killed (SIGKILL) in a snapshot chain, for test_snapshot_crash.py: :func:`main`
runs in a child process on the lab the test made, and does one action on the root volume
of its VM ``keeper``, which a fault (tests/faults.py's KillNode, set through config.toml
[chains]) kills."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.conftest import ok
from tests.core.snapshot.conftest import lab_node


async def act(config: Path, action: str, target: str) -> None:
    node = lab_node(config)
    await node.start()
    try:
        [vm] = await ok(node, "QueryVmInstance", conditions=["name=keeper"])
        if action == "create":
            await ok(node, "CreateVolumeSnapshot", volumeUuid=vm["rootVolumeUuid"], name="crashed")
        elif action == "revert":
            await ok(node, "RevertVolumeFromSnapshot", uuid=target)
        elif action == "delete":
            await ok(node, "DeleteVolumeSnapshot", uuid=target)
        else:
            raise ValueError(f"unknown action {action}")
    finally:
        await node.stop()


def main(config: str, action: str, target: str = "") -> None:
    asyncio.run(act(Path(config), action, target))
    sys.exit(0)

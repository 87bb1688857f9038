"""The data dir: reachable by QEMU (for VM disks), with every secret private."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from core.kernel.logs import configure_logging
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_dir_is_traversable_and_secrets_are_private(props: Properties) -> None:
    props.data_dir.mkdir(mode=0o700)  # as an older version left it
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging(props)
    finally:  # keep pytest's own handlers for the other tests
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    async with ManagementNode(props) as node:
        await node.call("CreateZone", {"name": "z"})
        assert mode(props.data_dir) == 0o711
        for name in ("zstack.db", "zstack.db-wal", "node.lock", "node.sock", "management-node.log"):
            path = props.data_dir / name
            if path.exists():
                assert mode(path) & 0o077 == 0, f"{name} is readable by others"
        assert (props.data_dir / "zstack.db").exists()

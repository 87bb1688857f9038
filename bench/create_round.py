"""One CreateVmInstance round in a process of its own, on the code the process imports:
the working tree, or a past revision (``bench.baseline_tree``).  A fresh node and lab,
one VM made first and not counted, then closed-loop callers create the VMs.  Prints one
JSON line: ``{"vms", "wall", "cpu"}`` (seconds; cpu is the node's).

Run by ``bench/vm_simulator.py``; by hand, with the callers and the VMs:
``.venv/bin/python bench/create_round.py 100 600``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import vm_simulator as vs  # this directory is the script's own: sys.path[0]

from core.kernel import properties
from core.kernel.node import ManagementNode


async def one_round(callers: int, vms: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="zsl-bench-round-"))
    try:
        config = root / "config.toml"
        config.write_text(f'[core]\ndata_dir = "{root / "data"}"\n')
        node = ManagementNode(properties.load(config, env={}), serve_socket=False)
        await node.start()
        try:
            offering, image = await vs.make_lab(node, root)
            first = {"instanceOfferingUuid": offering, "imageUuid": image}
            await vs.ok(node, "CreateVmInstance", name="vm-0", **first)
            cpu = vs.node_cpu()
            wall, _ = await vs.create_round(node, offering, image, callers, vms, 1)
            return {"vms": vms, "wall": wall, "cpu": vs.node_cpu() - cpu}
        finally:
            await node.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    callers, vms = int(sys.argv[1]), int(sys.argv[2])
    print(json.dumps(asyncio.run(one_round(callers, vms))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A node killed (SIGKILL) at any step of an image's export from a volume, running or
unwinding, leaves nothing after the restart: no image row, no file on backup storage
(finished or half-written), no run in the journal; the VM is as it was.  A node killed
in a resize runs it on at the restart (a grown file cannot be shrunk back): the volume's
row, its file and its storage's capacity agree."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.image import from_volume
from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.kernel.flow import FlowChainStatus
from core.kernel.flow_journal import FlowRunVO
from core.kernel.node import ManagementNode
from core.volume import resize
from core.volume.models import VolumeVO
from tests import faults
from tests.conftest import ok, write_config
from tests.core.virtual_router.crash_lab import lab_node
from tests.core.volume.crash_lab import GROWTH

EXPORT = from_volume.DEFAULT_FLOWS
EXPORT_CASES = [("run", cut) for cut in range(len(EXPORT) + 1)] + [
    ("unwind", cut) for cut in range(len(EXPORT) + 1)
]


def _run_node(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return faults.run_lab("tests.core.volume.crash_lab", config, *args)


@pytest.fixture(scope="module")
def lab_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = write_config(tmp_path_factory.mktemp("template-crash"))
    made = _run_node(config, "setup")
    assert made.returncode == 0, made.stderr[-3000:]
    return config


def _kill(config: Path, chain: str, flows: list[str], action: str) -> None:
    write_config(config.parent, f"[chains]\n{chain} = {json.dumps(flows)}\n")
    (config.parent / "data" / faults.MARKER).unlink(missing_ok=True)
    killed = _run_node(config, action)
    assert killed.returncode == -9, killed.stderr[-3000:]
    write_config(config.parent)


async def _rows(node: ManagementNode) -> dict[str, Any]:
    def read(session: Any) -> dict[str, Any]:
        return {
            "images": [i.name for i in session.query(ImageVO)],
            "refs": session.query(ImageBackupStorageRefVO).count(),
            "runs": [r.name for r in session.query(FlowRunVO)],
        }

    return await node.db.run(read)  # type: ignore[union-attr,no-any-return]


@pytest.mark.parametrize("way,cut", EXPORT_CASES, ids=[f"{w}-{c}" for w, c in EXPORT_CASES])
async def test_a_node_killed_in_an_export_leaves_nothing(
    lab_config: Path, way: str, cut: int
) -> None:
    if way == "run":
        flows = faults.killed_at(EXPORT, cut)
    else:
        flows = faults.killed_unwinding_at(EXPORT, cut)
    _kill(lab_config, from_volume.CHAIN, flows, "export")

    node = lab_node(lab_config)
    await node.start()
    try:
        statuses = {r.chain_name: r.status for r in node.recovered}
        if way == "run" and cut == 0:  # killed before anything was written down
            assert statuses in ({}, {from_volume.CHAIN: FlowChainStatus.ROLLED_BACK})
        else:
            assert statuses == {from_volume.CHAIN: FlowChainStatus.ROLLED_BACK}, node.recovered
        [image] = await ok(node, "QueryImage")  # the lab's base image, no other
        assert image["name"] == "base"
        assert await _rows(node) == {"images": ["base"], "refs": 1, "runs": []}
        bs = lab_config.parent / "lab" / "bs"
        assert sorted(os.listdir(bs)) == ["base.qcow2"], "a file of the export was left"
        [vm] = await ok(node, "QueryVmInstance")
        assert vm["state"] == "Stopped"
    finally:
        await node.stop()


@pytest.mark.parametrize("cut", range(len(resize.DEFAULT_FLOWS) + 1))
async def test_a_node_killed_in_a_resize_runs_it_on(lab_config: Path, cut: int) -> None:
    node = lab_node(lab_config)
    await node.start()
    try:
        [vm] = await ok(node, "QueryVmInstance")
        [ps] = await ok(node, "QueryPrimaryStorage")
        volume_uuid = vm["rootVolumeUuid"]
        size = await node.db.run(lambda s: s.get(VolumeVO, volume_uuid).size)  # type: ignore[union-attr]
    finally:
        await node.stop()
    free = ps["availableCapacity"]

    _kill(lab_config, resize.CHAIN, faults.killed_at(resize.DEFAULT_FLOWS, cut), "resize")
    node = lab_node(lab_config)
    await node.start()
    try:
        statuses = {r.chain_name: r.status for r in node.recovered}
        assert statuses == {resize.CHAIN: FlowChainStatus.SUCCEEDED}, node.recovered
        volume = await node.db.run(lambda s: s.get(VolumeVO, volume_uuid).to_inventory())  # type: ignore[union-attr]
        [ps] = await ok(node, "QueryPrimaryStorage")
        assert volume["size"] == size + GROWTH
        assert ps["availableCapacity"] == free - GROWTH
        info = subprocess.run(
            ["qemu-img", "info", "--output=json", volume["installPath"]],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        assert json.loads(info)["virtual-size"] == size + GROWTH
        assert (await _rows(node))["runs"] == []
    finally:
        await node.stop()

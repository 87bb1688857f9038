"""A node killed (SIGKILL) at any step of a data volume chain leaves the database and the
files agreeing: after the restart an interrupted create or attach is rolled back (no row,
no file, the room given back, nothing attached), an interrupted detach or expunge is run
on to its end."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from core.kernel.flow import FlowChainStatus
from core.vm.create_flows import DEFAULT_FLOWS as VM_FLOWS
from core.volume import flows
from core.volume.vm_flows import VmAllocateDataVolumesFlow
from tests import faults
from tests.conftest import ok, write_config
from tests.core.virtual_router.crash_lab import lab_node
from tests.faults import path_of

CREATE_VM = "createVm"
DATA_DISKS_AT = VM_FLOWS.index(path_of(VmAllocateDataVolumesFlow))
ACTIONS = {
    CREATE_VM: "create-vm",
    flows.CREATE: "create",
    flows.ATTACH: "attach",
    flows.DETACH: "detach",
    flows.EXPUNGE: "expunge",
}
CASES = [
    *((CREATE_VM, cut) for cut in (DATA_DISKS_AT, DATA_DISKS_AT + 1, len(VM_FLOWS) - 1)),
    *(
        (chain, cut)
        for chain in ACTIONS
        if chain != CREATE_VM
        for cut in range(len(flows.CHAINS[chain][0]) + 1)
    ),
]
"""Every step of the volume chains; a VM made with data disks killed before, and after,
they are made, and before it runs."""


def _run_node(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return faults.run_lab("tests.core.volume.crash_lab", config, *args)


@pytest.fixture(scope="module")
def lab_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = write_config(tmp_path_factory.mktemp("volume-crash"))
    made = _run_node(config, "setup")
    assert made.returncode == 0, made.stderr[-3000:]
    return config


def room(config: Path) -> int:
    """The primary storage's available capacity, as the database has it."""
    db = sqlite3.connect(f"file:{config.parent / 'data' / 'zstack.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT available_capacity FROM primary_storage").fetchone()[0])
    finally:
        db.close()


def data_files(config: Path) -> list[str]:
    root = config.parent / "lab" / "ps" / "datavolumes"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("chain,cut", CASES, ids=[f"{c}-{cut}" for c, cut in CASES])
async def test_a_node_killed_in_a_volume_chain_leaves_db_and_files_agreeing(
    lab_config: Path, chain: str, cut: int
) -> None:
    flow_list = VM_FLOWS if chain == CREATE_VM else flows.CHAINS[chain][0]
    faulty = [*flow_list[:cut], faults.KILL, *flow_list[cut:]]
    before = room(lab_config)
    write_config(lab_config.parent, f"[chains]\n{chain} = {json.dumps(faulty)}\n")
    (lab_config.parent / "data" / faults.MARKER).unlink(missing_ok=True)
    killed = _run_node(lab_config, ACTIONS[chain])
    assert killed.returncode == -9, killed.stderr[-3000:]

    write_config(lab_config.parent)
    node = lab_node(lab_config)
    await node.start()
    try:
        statuses = {r.chain_name: r.status for r in node.recovered}
        if chain in (flows.DETACH, flows.EXPUNGE):  # resumable: run on to its end
            assert statuses == {chain: FlowChainStatus.SUCCEEDED}, node.recovered
        elif cut == 0:
            assert statuses in ({}, {chain: FlowChainStatus.ROLLED_BACK}), node.recovered
        else:
            assert statuses == {chain: FlowChainStatus.ROLLED_BACK}, node.recovered
        volumes = await ok(node, "QueryVolume", conditions=["type=Data"])
        assert all(v["vmInstanceUuid"] is None for v in volumes), volumes
        assert all(v["status"] == "Ready" for v in volumes), volumes
        vms = await ok(node, "QueryVmInstance")
        assert [vm["name"] for vm in vms] == ["keeper"], vms
        if chain in (flows.CREATE, flows.EXPUNGE):
            assert not [v for v in volumes if v["name"] in ("doomed", "v-expunge")], volumes
        # Every file is a volume's, every volume has its file.
        expected = sorted(
            str(
                Path(v["installPath"]).relative_to(lab_config.parent / "lab" / "ps" / "datavolumes")
            )
            for v in volumes
        )
        files = [f for f in data_files(lab_config) if f.endswith(".qcow2")]
        assert files == expected
        [ps] = await ok(node, "QueryPrimaryStorage")
        assert ps["availableCapacity"] == before - sum(v["size"] for v in volumes)
        for volume in volumes:  # clean up for the next case
            await ok(node, "DeleteDataVolume", uuid=volume["uuid"])
            await ok(node, "ExpungeDataVolume", uuid=volume["uuid"])
        assert data_files(lab_config) == []
    finally:
        await node.stop()

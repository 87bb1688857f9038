"""A node killed (SIGKILL) before any step of the snapshot chains leaves the database and
the files agreeing after the restart, every file reading what it held: an interrupted
create or revert is rolled back (or, past its point of no return, kept done), an
interrupted delete is run on to its end."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core.kernel.flow import FlowChainStatus
from core.snapshot import flows
from tests import faults
from tests.conftest import ok, write_config
from tests.core.snapshot.conftest import SnapLab, lab_node
from tests.core.vm.conftest import Lab, make_lab

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHAINS = {
    flows.CREATE: flows.CREATE_FLOWS,
    flows.REVERT: flows.REVERT_FLOWS,
    flows.DELETE: flows.DELETE_FLOWS,
}
CASES = [(chain, cut) for chain, fl in CHAINS.items() for cut in range(len(fl) + 1)]


def _run_node(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return faults.run_lab("tests.core.snapshot.crash_lab", config, *args)


class CrashLab:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.model = SnapLab(lab=None)  # type: ignore[arg-type]  # the lab of each node
        self.volume = ""
        self.running: SnapLab | None = None
        """The node the last case checked with (the next case prepares on it)."""

    async def node_lab(self) -> SnapLab:
        """A node on the lab (started), with the content model carried over."""
        if self.running is not None:
            return self.running
        node = lab_node(self.config)
        await node.start()
        [host] = await ok(node, "QueryHost")
        [offering] = await ok(node, "QueryInstanceOffering")
        [image] = await ok(node, "QueryImage")
        lab = SnapLab(Lab(node, host, offering, image["uuid"], self.config.parent / "ps"))
        lab.expected = self.model.expected
        return lab


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def crash_lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[CrashLab]:
    root = tmp_path_factory.mktemp("snapshot-crash")
    config = write_config(root)
    node = lab_node(config)
    await node.start()
    try:
        made = SnapLab(await make_lab(node, root))
        _vm, volume = await made.stopped_vm("keeper")
    finally:
        await node.stop()
    lab = CrashLab(config)
    lab.model.expected, lab.volume = made.expected, volume
    try:
        yield lab
    finally:
        if lab.running is not None:
            await lab.running.node.stop()


async def prepare(lab: SnapLab, volume: str) -> list[str]:
    """The volume with S1 <- S2 <- S3 <- active (what an earlier case left deleted)."""
    for row in await lab.rows(volume):
        await lab.delete(row["uuid"])
    snaps = []
    for i in range(3):
        await lab.write(volume, i, 0x41 + i)
        snaps.append((await lab.snapshot(volume, f"s{i + 1}"))["uuid"])
    await lab.write(volume, 3, 0x51)
    await lab.verify(volume)
    return snaps


@dataclass
class Killed:
    """A case after the restart: the node that recovered, and what was there before."""

    lab: SnapLab
    statuses: dict[str, FlowChainStatus]
    rows: dict[str, Any]
    target: str
    active: str
    capacity: int


@asynccontextmanager
async def killed_in(crash_lab: CrashLab, chain: str, faulty: list[str]) -> AsyncIterator[Killed]:
    """Prepare the volume, run the chain (as ``faulty``) in a node that a fault kills,
    start the node again and yield what recovery left; the database and the files must
    agree afterwards (the next case goes on with the node)."""
    volume = crash_lab.volume
    lab = await crash_lab.node_lab()
    try:
        snaps = await prepare(lab, volume)
        before = await lab.capacity()
        active = (await lab.volume(volume))["installPath"]
    finally:
        crash_lab.running = None
        await lab.node.stop()

    action, target = {
        flows.CREATE: ("create", ""),
        flows.REVERT: ("revert", snaps[1]),
        flows.DELETE: ("delete", snaps[1]),
    }[chain]
    write_config(crash_lab.config.parent, f"[chains]\n{chain} = {json.dumps(faulty)}\n")
    (crash_lab.config.parent / "data" / faults.MARKER).unlink(missing_ok=True)
    killed = _run_node(crash_lab.config, action, target)
    assert killed.returncode == -9, killed.stderr[-3000:]
    write_config(crash_lab.config.parent)

    lab = await crash_lab.node_lab()
    lab.expected = crash_lab.model.expected
    try:
        statuses = {r.chain_name: r.status for r in lab.node.recovered}
        rows: dict[str, Any] = {r["uuid"]: r for r in await lab.rows(volume)}
        yield Killed(lab, statuses, rows, target, active, before)
        await lab.verify(volume)
        assert await lab.capacity() == before
        crash_lab.running = lab  # the next case goes on with it
    finally:
        if crash_lab.running is None:
            await lab.node.stop()


@pytest.mark.parametrize("chain,cut", CASES, ids=[f"{c}-{cut}" for c, cut in CASES])
async def test_a_node_killed_in_a_snapshot_chain(crash_lab: CrashLab, chain: str, cut: int) -> None:
    volume = crash_lab.volume
    async with killed_in(crash_lab, chain, faults.killed_at(CHAINS[chain], cut)) as k:
        lab, statuses, rows, target = k.lab, k.statuses, k.rows, k.target
        if chain == flows.DELETE:  # resumable: run on to its end
            assert statuses == {chain: FlowChainStatus.SUCCEEDED}, lab.node.recovered
            assert target not in rows
            lab.expected.pop(target)
            return
        expected = {chain: FlowChainStatus.ROLLED_BACK}
        if cut == 0:  # killed before anything was done: maybe nothing to recover
            assert statuses in ({}, expected), lab.node.recovered
        else:
            assert statuses == expected, lab.node.recovered
        done = cut == len(CHAINS[chain])  # killed after the point of no return
        if chain == flows.CREATE:
            made = [r for r in rows.values() if r["name"] == "crashed"]
            assert len(made) == (1 if done else 0), rows
            if done:
                lab.expected[made[0]["uuid"]] = dict(lab.expected[volume])
        else:
            reverted = (await lab.volume(volume))["installPath"] != k.active
            assert reverted == done and rows[target]["latest"] == done
            if done:
                lab.expected[volume] = dict(lab.expected[target])


KILL_ON_ROLLBACK, FAIL = faults.KILL_ON_ROLLBACK, faults.FAIL
UNWINDING = {
    # Failing before the old file is deleted: the commit is undone, then the node dies
    # before the new file goes; recovery finishes the rollback.
    flows.REVERT: [flows.REVERT_FLOWS[0], KILL_ON_ROLLBACK, *flows.REVERT_FLOWS[1:2], FAIL,
                   *flows.REVERT_FLOWS[2:]],
    # Failing after the children were rebased: the node dies while the snapshot is made
    # Ready again; recovery finishes that rollback (a resumable run rolling back).
    flows.DELETE: [flows.DELETE_FLOWS[0], KILL_ON_ROLLBACK, *flows.DELETE_FLOWS[1:3], FAIL,
                   *flows.DELETE_FLOWS[3:]],
}  # fmt: skip


@pytest.mark.parametrize("chain", list(UNWINDING))
async def test_a_node_killed_while_a_snapshot_chain_unwinds(
    crash_lab: CrashLab, chain: str
) -> None:
    volume = crash_lab.volume
    async with killed_in(crash_lab, chain, UNWINDING[chain]) as k:
        assert k.statuses == {chain: FlowChainStatus.ROLLED_BACK}, k.lab.node.recovered
        assert k.rows[k.target]["status"] == "Ready"
        if chain == flows.REVERT:
            assert (await k.lab.volume(volume))["installPath"] == k.active

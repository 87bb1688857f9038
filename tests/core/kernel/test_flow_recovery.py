"""A node killed (SIGKILL) at any step of a durable chain, or at any rollback step, leaves
nothing behind: the next start rolls back exactly what was done, before serving calls.

The kill points come from the declared chains themselves (a fault flow inserted through
config.toml [chains] at every position), so a new flow is covered without editing this.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.kernel.flow_journal import FlowRunVO
from tests.conftest import write_config
from tests.core.kernel import durable_lab as lab

REPO = Path(__file__).resolve().parents[3]


def _config(tmp_path: Path, chains: dict[str, list[str]]) -> Path:
    body = "[chains]\n" + "".join(
        f"{name} = {json.dumps(flows)}\n" for name, flows in chains.items()
    )
    return write_config(tmp_path, body)


def _run_lab_until_killed(config: Path, tag: str = "t") -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tests.core.kernel.durable_lab import main; main(*sys.argv[1:])",
            str(config),
            tag,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode


def _made(config: Path) -> list[str]:
    made = config.parent / "data" / "made"
    return sorted(p.name for p in made.iterdir()) if made.exists() else []


def _undone(config: Path) -> list[str]:
    log = config.parent / "data" / "undo.log"
    return log.read_text().split("\n")[:-1] if log.exists() else []


async def _recover(config: Path) -> tuple[list[Any], list[dict[str, Any]], int]:
    """Start a plain lab node on the data dir (no faults); what it recovered, the
    operations log, and the journal rows left."""
    write_config(config.parent)  # the default chains again
    node = lab.lab_node(config)
    await node.start()
    try:
        recovered = list(node.recovered)
        reply = await node.call("QueryOperationLog", {})
        assert reply.success, reply.error
        rows = await node.db.run(lambda s: len(s.scalars(select(FlowRunVO)).all()))
    finally:
        await node.stop()
    return recovered, reply.inventories, rows


def _with(flows: list[str], index: int, *inserted: str) -> list[str]:
    return [*flows[:index], *inserted, *flows[index:]]


OUTER_CUTS = range(len(lab.OUTER_FLOWS) + 1)
INNER_CUTS = range(len(lab.INNER_FLOWS) + 1)


@pytest.mark.parametrize("cut", OUTER_CUTS)
async def test_killed_between_steps_of_the_outer_chain(tmp_path: Path, cut: int) -> None:
    config = _config(tmp_path, {lab.OUTER: _with(lab.OUTER_FLOWS, cut, lab.KILL)})
    assert _run_lab_until_killed(config) == -9
    if cut:
        assert _made(config), "the run made something before it was killed"
    recovered, log, rows = await _recover(config)
    assert _made(config) == []
    assert rows == 0
    if cut == 0:  # killed before any step that has something to undo: nothing recorded
        assert recovered == []
        return
    assert [r.status.value for r in recovered] == ["ROLLED_BACK"]
    (op,) = [r for r in log if r["apiName"] == "RunLab"]
    assert op["status"] == "RolledBack"
    assert op["error"]["code"] == "SYS.1012"
    # the last step written down before the kill (a step with nothing to undo is not)
    assert lab.OUTER_FLOWS[cut - 1].rsplit(".", 1)[-1] in op["error"]["details"]
    # every step the run reached is rolled back once, last first
    reached = [p.rsplit(".", 1)[-1][-1] for p in lab.OUTER_FLOWS[:cut]]
    expected = [f"undo {item}" for item in reversed(reached)]
    assert _undone(config) == expected


@pytest.mark.parametrize("cut", INNER_CUTS)
async def test_killed_inside_the_nested_chain(tmp_path: Path, cut: int) -> None:
    config = _config(tmp_path, {lab.INNER: _with(lab.INNER_FLOWS, cut, lab.KILL)})
    assert _run_lab_until_killed(config) == -9
    _recovered, log, rows = await _recover(config)
    assert _made(config) == []
    assert rows == 0
    inner = [f"undo {p[-1]}" for p in reversed(lab.INNER_FLOWS[:cut])]
    # the nested chain first, then its parent's step and the steps before it
    assert _undone(config) == [*inner, "undo B", "undo A"]
    (op,) = [r for r in log if r["apiName"] == "RunLab"]
    assert op["status"] == "RolledBack"
    names = [chain["name"] for chain in op["chains"]]
    # the nested chain is in the record once it wrote (before its first step to undo)
    assert names == [*([lab.INNER] if cut else []), lab.OUTER]


@pytest.mark.parametrize("cut", range(1, len(lab.OUTER_FLOWS) + 1))
async def test_killed_while_rolling_back(tmp_path: Path, cut: int) -> None:
    flows = [*_with(lab.OUTER_FLOWS, cut, lab.KILL_ON_ROLLBACK), lab.FAIL]
    config = _config(tmp_path, {lab.OUTER: flows})
    assert _run_lab_until_killed(config) == -9
    before = _undone(config)
    recovered, _log, rows = await _recover(config)
    assert _made(config) == []
    assert rows == 0
    after = _undone(config)[len(before) :]
    # the rollback goes on from where it was: the steps after the cut were undone already;
    # the step the kill caught is rolled back again (recovery runs the recorded flows),
    # then the ones before it
    assert before == [f"undo {p[-1]}" for p in reversed(lab.OUTER_FLOWS[cut:])]
    assert after == ["undo kill", *(f"undo {p[-1]}" for p in reversed(lab.OUTER_FLOWS[:cut]))]
    assert [r.status.value for r in recovered] == ["ROLLED_BACK"]


async def test_a_checkpointed_choice_is_found_by_the_rollback(tmp_path: Path) -> None:
    """ReserveE chooses its name in-step; the checkpoint written with it lets the
    recovery remove what it made even though the kill came before the next step."""
    index = lab.OUTER_FLOWS.index(f"{lab.__name__}.ReserveE") + 1
    config = _config(tmp_path, {lab.OUTER: _with(lab.OUTER_FLOWS, index, lab.KILL)})
    assert _run_lab_until_killed(config) == -9
    assert any(name.startswith("t-E") for name in _made(config))
    await _recover(config)
    assert _made(config) == []


async def test_a_run_that_ends_leaves_no_journal_row(tmp_path: Path) -> None:
    config = _config(tmp_path, {})
    assert _run_lab_until_killed(config) == 0
    recovered, _, rows = await _recover(config)
    assert recovered == [] and rows == 0
    assert len(_made(config)) == 6  # A, B, C, D, E<pid>, F

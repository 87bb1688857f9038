"""Faults a test inserts into a declared chain through config.toml [chains], the way a
plugin inserts a flow (the product has no test switch): they must be importable by the
node process, so they live in this module of plain classes.

:class:`KillNode` SIGKILLs the node process when it runs (a crash between two steps);
:class:`KillNodeOnRollback` when it is rolled back (a crash while unwinding).  Each kills
once per marker file, so that the recovery, which runs the recorded flows again (a
resumed chain runs the killing step again), gets through;
:class:`FailHere` fails the chain so that it unwinds; :class:`KillAgentThenFail` kills the
lab's KVM agent first, so that the rollbacks that need it fail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow

MARKER = "killed-by-fault"
"""In the node's data dir: present once a fault has killed (remove it to arm it again)."""


def path_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _kill_once(data: Any) -> None:
    marker = Path(data.node.data_dir) / MARKER
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)


class KillNode(NoRollbackFlow):
    async def run(self, data: Any) -> None:
        _kill_once(data)


class KillNodeOnRollback(Flow):
    async def run(self, data: Any) -> None:
        return None

    async def rollback(self, data: Any) -> None:
        _kill_once(data)


class FailHere(NoRollbackFlow):
    async def run(self, data: Any) -> None:
        raise operr("injected fault")


class KillAgentThenFail(NoRollbackFlow):
    async def run(self, data: Any) -> None:
        agent_dir = f"--data-dir {data.node.data_dir / 'agent'} "
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            line = " ".join(a.decode(errors="replace") for a in argv)
            if "agent.main" in line and agent_dir in line:
                os.kill(int(proc.name), signal.SIGKILL)
        raise operr("injected fault after the KVM agent was killed")


KILL = path_of(KillNode)
KILL_ON_ROLLBACK = path_of(KillNodeOnRollback)
FAIL = path_of(FailHere)
KILL_AGENT_THEN_FAIL = path_of(KillAgentThenFail)


def killed_at(flows: list[str], position: int) -> list[str]:
    """``flows`` with the node killed before the flow at ``position`` runs."""
    return [*flows[:position], KILL, *flows[position:]]


def killed_unwinding_at(flows: list[str], position: int) -> list[str]:
    """``flows`` failing at the end, the node killed when the unwinding reaches
    ``position`` (after the flows from there on were rolled back)."""
    return [*flows[:position], KILL_ON_ROLLBACK, *flows[position:], FAIL]


REPO = Path(__file__).resolve().parents[1]


def run_lab(lab_module: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``<lab_module>.main(config, *args)`` in a node process of its own, from this
    repository (its faults are importable there): what a crash test kills."""
    return subprocess.run(
        [sys.executable, "-c",
         f"import sys; from {lab_module} import main; main(*sys.argv[1:])",
         str(config), *args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip

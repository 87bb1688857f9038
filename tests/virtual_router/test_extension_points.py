"""What router-agent plugins get: a context the agent satisfies, repairers the watchdog
runs under the agent's lock (a failing one does not stop the others), and forwarding."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentkit.errors import AgentError
from virtual_router.app import make_router
from virtual_router.extension_points import Repairer, RouterContext
from virtual_router.router import VirtualRouter


class Recorder:
    def __init__(self, ctx: RouterContext, answer: list[str] | Exception) -> None:
        self.ctx, self.answer, self.locked = ctx, answer, [False]

    async def repair(self) -> list[str]:
        self.locked.append(self.ctx.lock.locked())
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def context(router: VirtualRouter) -> RouterContext:
    return router  # what mypy checks: the agent is the plugins' context


async def test_repairers_run_under_the_lock_and_failures_are_collected(tmp_path: Path) -> None:
    router = make_router(tmp_path, simulate=True)
    ctx = context(router)
    broken = Recorder(ctx, AgentError("table gone"))
    fine = Recorder(ctx, ["vip addresses restored"])
    ctx.repairers += [broken, fine]
    assert all(isinstance(r, Repairer) for r in ctx.repairers)
    with pytest.raises(AgentError, match="Recorder could not repair: table gone"):
        await router.repair()
    assert broken.locked[-1] and fine.locked[-1]  # the second ran although the first failed
    ctx.repairers.remove(broken)
    assert await router.repair() == ["vip addresses restored"]


async def test_forwarding_is_written_once_and_never_when_simulated(tmp_path: Path) -> None:
    flag = tmp_path / "ip_forward"
    flag.write_text("0\n")
    real = VirtualRouter(
        make_router(tmp_path, True).interfaces,
        None,
        None,
        ip_forward=flag,  # type: ignore[arg-type]
    )
    real.ensure_forwarding()
    assert flag.read_text() == "1\n"
    flag.write_text("0\n")
    simulated = make_router(tmp_path, simulate=True)
    simulated.ip_forward = flag
    simulated.ensure_forwarding()
    assert flag.read_text() == "0\n"
    assert simulated.plugin_state == {}

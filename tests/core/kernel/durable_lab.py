"""A test plugin with durable chains whose steps make files, and faults that kill the
node process, for the crash tests of the flow journal (test_flow_recovery.py).

``labOuter``: MakeA, MakeB (which runs the nested ``labInner``: InnerC, InnerD over the
same data), ReserveE (a value chosen in-step and checkpointed), MakeF.  Each "make" creates
a file under ``<data dir>/made``; each rollback removes it if it is there (checking the
real state, idempotent) and logs ``undo <name>`` to ``<data dir>/undo.log``.

Faults are inserted through config.toml [chains], as the product allows any flow to be:
:class:`KillHere` SIGKILLs the node when it runs, :class:`KillOnRollback` when it is
rolled back, :class:`Fail` fails the chain, and :class:`Blocked`'s rollback fails while
``<data dir>/blocked`` exists (as a rollback fails while its agent is down).
:func:`main` calls RunLab in a node of its own (the tests run it in a child process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from core.config.plugin import GlobalConfigPlugin
from core.gc.plugin import GarbageCollectorPlugin
from core.kernel import properties
from core.kernel.api import ApiMessage, param
from core.kernel.errors import operr
from core.kernel.extensions import Plugin
from core.kernel.flow import Flow, NoRollbackFlow, checkpointer
from core.kernel.flow_data import FlowData
from core.kernel.node import ManagementNode
from core.kernel.service import Service, handles
from core.operation_log.plugin import OperationLogPlugin

OUTER = "labOuter"
INNER = "labInner"


class LabData(FlowData):
    tag: str
    reservation: str | None = None

    def hosts(self) -> list[str]:
        return [f"host-of-{self.tag}"]


class RunLab(ApiMessage):
    """Run labOuter for ``tag``."""

    tag: str = param()


def _made(data: LabData) -> Path:
    path = data.node.data_dir / "made"
    path.mkdir(exist_ok=True)
    return path


class _Make(Flow):
    item = ""

    async def run(self, data: Any) -> None:
        (_made(data) / f"{data.tag}-{self.item}").write_text("x")

    async def rollback(self, data: Any) -> None:
        target = _made(data) / f"{data.tag}-{self.item}"
        if target.exists():
            target.unlink()
        with open(data.node.data_dir / "undo.log", "a") as log:
            log.write(f"undo {self.item}\n")


class MakeA(_Make):
    item = "A"


class MakeB(_Make):
    """Runs labInner inside its run; as in the product (the host allocator inside
    VmAllocateHostFlow), its rollback undoes what the nested chain made."""

    item = "B"

    async def run(self, data: Any) -> None:
        await super().run(data)
        await data.node.chain(INNER).run(data)

    async def rollback(self, data: Any) -> None:
        for item in ("C", "D"):
            (_made(data) / f"{data.tag}-{item}").unlink(missing_ok=True)
        await super().rollback(data)


class InnerC(_Make):
    item = "C"


class InnerD(_Make):
    item = "D"


class ReserveE(Flow):
    """Chooses a name in-step; only the checkpoint lets a rollback find it."""

    async def run(self, data: Any) -> None:
        save = checkpointer()
        name = f"E{os.getpid()}"

        def reserve(conn: Any) -> None:
            data.reservation = name
            save(conn)

        await data.node.db.run_core(reserve)
        (_made(data) / f"{data.tag}-{name}").write_text("x")

    async def rollback(self, data: Any) -> None:
        if data.reservation is not None:
            target = _made(data) / f"{data.tag}-{data.reservation}"
            if target.exists():
                target.unlink()
        with open(data.node.data_dir / "undo.log", "a") as log:
            log.write("undo E\n")


class MakeF(_Make):
    item = "F"


class KillHere(NoRollbackFlow):
    async def run(self, data: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class KillOnRollback(Flow):
    """Kills the node at its first rollback; recovery (which runs the recorded flows)
    retries that rollback, which then logs ``undo kill``."""

    async def run(self, data: Any) -> None:
        return None

    async def rollback(self, data: Any) -> None:
        marker = data.node.data_dir / "killed-on-rollback"
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        with open(data.node.data_dir / "undo.log", "a") as log:
            log.write("undo kill\n")


class Blocked(Flow):
    """A step whose rollback cannot be done while ``<data dir>/blocked`` exists."""

    async def run(self, data: Any) -> None:
        (_made(data) / f"{data.tag}-blocked").write_text("x")

    async def rollback(self, data: Any) -> None:
        if (data.node.data_dir / "blocked").exists():
            raise operr("the agent that would undo this is down")
        (_made(data) / f"{data.tag}-blocked").unlink(missing_ok=True)
        with open(data.node.data_dir / "undo.log", "a") as log:
            log.write("undo blocked\n")


class Fail(NoRollbackFlow):
    async def run(self, data: Any) -> None:
        raise operr("the lab fails here")


def _paths(*classes: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__name__}" for cls in classes]


OUTER_FLOWS = _paths(MakeA, MakeB, ReserveE, MakeF)
INNER_FLOWS = _paths(InnerC, InnerD)
KILL = _paths(KillHere)[0]
KILL_ON_ROLLBACK = _paths(KillOnRollback)[0]
FAIL = _paths(Fail)[0]
BLOCKED = _paths(Blocked)[0]


class DurableLabPlugin(Plugin, Service):
    implements = (Service,)
    service_id = "durableLab"

    def __init__(self, node: ManagementNode) -> None:
        super().__init__(node)
        node.declare_chain(OUTER, OUTER_FLOWS, LabData)
        node.declare_chain(INNER, INNER_FLOWS, LabData)

    @handles(RunLab)
    async def run_lab(self, msg: RunLab) -> dict[str, Any]:
        data = LabData(tag=msg.tag).bind(self.node)
        outcome = await self.node.chain(OUTER).start(data)
        outcome.raise_for_error("the lab failed")
        return {"tag": msg.tag}


PLUGINS: dict[str, type] = {
    "globalConfig": GlobalConfigPlugin,
    "operationLog": OperationLogPlugin,
    "durableLab": DurableLabPlugin,
    "garbageCollector": GarbageCollectorPlugin,
}


def lab_node(config: Path) -> ManagementNode:
    return ManagementNode(
        properties.load(config, env={}), plugin_classes=PLUGINS, serve_socket=False
    )


def main(config: str, tag: str) -> None:
    sys.exit(asyncio.run(_main(Path(config), tag)))


async def _main(config: Path, tag: str) -> int:
    node = lab_node(config)
    await node.start()
    try:
        reply = await node.call("RunLab", {"tag": tag})
    finally:
        await node.stop()
    return 0 if reply.success else 1

"""A node with the garbage-collector plugin (whether or not the installed entry points
have it yet), and helpers to submit and watch GC jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.gc.models import GarbageCollectorVO
from core.gc.plugin import GarbageCollectorPlugin
from core.kernel.db import Database
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import make_node, ok

RUNNER = "tests.core.gc.jobs.RemoveLeftover"
PLUGINS = {"garbageCollector": GarbageCollectorPlugin}


def gc_node(props: Properties) -> ManagementNode:
    return make_node(props, PLUGINS)


@pytest.fixture
async def node(props: Properties) -> AsyncIterator[ManagementNode]:
    n = gc_node(props)
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


class Leftover:
    """A file to clean up and the blocker that makes its clean-up fail while it exists."""

    def __init__(self, root: Path, name: str = "leftover") -> None:
        self.path = root / name
        self.blocker = root / f"{name}.blocker"
        self.path.write_text("x")
        self.blocker.write_text("busy")

    @property
    def context(self) -> dict[str, Any]:
        return {"path": str(self.path), "blocker": str(self.blocker)}

    def unblock(self) -> None:
        self.blocker.unlink()


async def set_config(node: ManagementNode, name: str, value: int) -> None:
    await ok(node, "UpdateGlobalConfig", category="gc", name=name, value=str(value))


async def job(node: ManagementNode, uuid: str) -> dict[str, Any]:
    [found] = await ok(node, "QueryGarbageCollector", conditions=[f"uuid={uuid}"])
    return found


async def until_status(
    node: ManagementNode, uuid: str, status: str, timeout: float = 60.0
) -> dict[str, Any]:
    """The job once its status is ``status`` (fails the test after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (found := await job(node, uuid))["status"] != status:
        assert loop.time() < deadline, f"GC job never became {status}: {found}"
        await asyncio.sleep(0.05)
    return found


async def until_done(node: ManagementNode, uuid: str, timeout: float = 60.0) -> dict[str, Any]:
    return await until_status(node, uuid, "Done", timeout)


async def stored(props: Properties, uuid: str) -> tuple[str, int]:
    """(status, attempts) of a job as the database of a stopped node has it."""
    db = Database(props.db_url)
    try:
        row = await db.run(lambda s: s.get(GarbageCollectorVO, uuid))
        return row.status, row.attempts
    finally:
        db.close()

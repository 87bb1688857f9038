"""Fixtures for the ztui tests: a config in a temp dir, labs on simulator hosts, an app
bound to a node the test started, and a way to wait on the app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.pilot import Pilot
from textual.screen import Screen

from core.client import InProcessClient, NodeClient
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties, load
from tests.core.vm.conftest import Lab, make_lab
from ztui.app import ZtuiApp
from ztui.screens.base import ZtuiScreen

SMALL, LARGE = (80, 24), (120, 40)
"""The terminal sizes every screen is checked at."""
S = TypeVar("S", bound=Screen[Any])


def write_config(tmp_path: Path, data_dir: Path | str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[core]\ndata_dir = "{data_dir}"\n')
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, tmp_path / "data")


@pytest.fixture
def props(config_path: Path) -> Properties:
    return load(config_path, env={})


@pytest.fixture
async def node(props: Properties) -> AsyncIterator[ManagementNode]:
    """A running node on the test's data dir (stopped at the end, if the app did not)."""
    n = ManagementNode(props)
    await n.start()
    try:
        yield n
    finally:
        if n.running:
            await n.stop()


@pytest.fixture
async def lab(node: ManagementNode, tmp_path: Path) -> Lab:
    """A simulator host with storage, an offering ``small`` and a Ready image ``base``."""
    return await make_lab(node, tmp_path)


def app_on(node: ManagementNode, **kw: Any) -> ZtuiApp:
    """An app whose session is the test's running node, in-process (quitting stops it)."""

    async def connector(_props: Properties) -> NodeClient:
        return InProcessClient(node)

    return ZtuiApp(node.props, connector=connector, **kw)


async def own_node(props: Properties) -> NodeClient:
    """A connector hosting the node in the app's own process and loop, stopped when the
    app quits (a service the product would start outlives the test; tests own their
    nodes).  Start-up events (hosts reconnecting) happen before the app subscribes, as
    they do when ztui attaches to a service that is already running."""
    node = ManagementNode(props)
    await node.start()
    return InProcessClient(node)


def prepare(props: Properties, build: Callable[[ManagementNode], Awaitable[None]]) -> None:
    """Run ``build`` on a node of the data dir, then stop it (for snapshot tests, whose
    app runs its own node on its own event loop)."""

    async def run() -> None:
        async with ManagementNode(props) as node:
            await build(node)

    asyncio.run(run())


async def wait_until(
    pilot: Pilot, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Let the app run until ``predicate()`` holds, or fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)
    await pilot.pause()


async def the_vm_stopped(pilot: Pilot) -> dict[str, Any]:
    """Wait until the app's node reports its one VM Stopped (a snapshot lab's simulated
    host, started again by the app's node, reports it so); the VM's inventory."""
    app = pilot.app
    assert isinstance(app, ZtuiApp)

    async def the_vm() -> dict[str, Any]:
        reply = await app.session.call("QueryVmInstance", {})
        assert reply.success, reply.error
        [vm] = reply.inventories or []
        return dict(vm)

    for _ in range(200):
        if (await the_vm())["state"] == "Stopped":
            break
        await pilot.pause(0.1)
    vm = await the_vm()
    assert vm["state"] == "Stopped"
    return vm


async def shown(pilot: Pilot, screen_type: type[S], loads: int = 1) -> S:
    """Wait until the app shows a ``screen_type`` that has loaded ``loads`` times."""

    def ready() -> bool:
        screen = pilot.app.screen
        if not isinstance(screen, screen_type):
            return False
        return not isinstance(screen, ZtuiScreen) or screen.loads_completed >= loads

    await wait_until(pilot, ready, what=f"{screen_type.__name__} (load {loads})")
    screen = pilot.app.screen
    assert isinstance(screen, screen_type)
    return screen

"""The overview at 80x24, with volatile values (uuids, dates, pid, paths) masked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.pilot import Pilot

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.ztui.conftest import wait_until
from ztui.app import ZtuiApp
from ztui.screens.overview import OverviewScreen


async def _create_zone(props: Properties, name: str) -> None:
    async with ManagementNode(props) as node:
        reply = await node.call("CreateZone", {"name": name, "description": "snapshot"})
        assert reply.success, reply.error


async def _wait_for_first_load(pilot: Pilot) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, OverviewScreen)
    await wait_until(pilot, lambda: screen.loads_completed >= 1, what="the first load")


def test_overview_snapshot(props: Properties, snap_compare: Callable[..., bool]) -> None:
    asyncio.run(_create_zone(props, "zone-a"))
    app = ZtuiApp(props, mask_volatile=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_wait_for_first_load)


def test_global_configs_snapshot(props: Properties, snap_compare: Callable[..., bool]) -> None:
    app = ZtuiApp(props, mask_volatile=True)
    assert snap_compare(app, press=["3"], terminal_size=(80, 24), run_before=_wait_for_first_load)

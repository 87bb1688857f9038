"""The hosts view at 80x24 and 120x40: two simulator hosts, one running a VM, and the
pane under the table (agent port and tool versions masked)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.core.vm.conftest import GiB, make_lab
from tests.ztui.conftest import LARGE, SMALL, own_node, prepare, shown, wait_until
from ztui.app import ZtuiApp
from ztui.screens.hosts import HostsScreen


def build_lab(root: Path) -> Callable[[ManagementNode], Any]:
    """Hosts ``sim`` (4 cores, 8G) and ``sim2`` (2 cores, 4G) and a stopped VM on sim."""

    async def build(node: ManagementNode) -> None:
        lab = await make_lab(node, root)
        await ok(
            node,
            "AddSimulatorHost",
            name="sim2",
            clusterUuid=lab.host["clusterUuid"],
            cpuNum=2,
            memorySize=4 * GiB,
        )
        vm = await ok(
            node,
            "CreateVmInstance",
            name="web1",
            imageUuid=lab.image_uuid,
            instanceOfferingUuid=lab.offering["uuid"],
            hostUuid=lab.host["uuid"],
        )
        await ok(node, "StopVmInstance", uuid=vm["uuid"])

    return build


async def call(app: ZtuiApp, api: str, **params: Any) -> Any:
    reply = await app.session.call(api, params)
    assert reply.success, f"{api}: {reply.error}"
    return reply.inventories if reply.inventories is not None else reply.inventory


async def start_web1(pilot: Pilot) -> None:
    """Both hosts reconnected at start-up: start web1 and wait for its capacity."""
    app = pilot.app
    assert isinstance(app, ZtuiApp)
    app.trace_shown = False

    hosts = await call(app, "QueryHost")  # the node is ready: both hosts reconnected
    assert [h["status"] for h in hosts] == ["Connected", "Connected"]
    await pilot.press("5")
    screen = await shown(pilot, HostsScreen)
    [web1] = await call(app, "QueryVmInstance", conditions=["name=web1"])
    await call(app, "StartVmInstance", uuid=web1["uuid"])
    await wait_until(
        pilot,
        lambda: (
            screen.table.column_values("cpu") == ["1/40", "0/20"]
            and screen.detail.tags is not None
            and "1/40 vCPU" in screen.detail.text
        ),
        what="the capacity web1 takes",
    )


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "120x40"])
def test_hosts_snapshot(
    props: Properties, tmp_path: Path, size: tuple[int, int], snap_compare: Callable[..., bool]
) -> None:
    prepare(props, build_lab(tmp_path))
    app = ZtuiApp(props, connector=own_node, mask_volatile=True)
    assert snap_compare(app, terminal_size=size, run_before=start_web1)

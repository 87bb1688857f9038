"""Pilot tests of the overview at 80x24 against a real node in a temp data dir."""

from __future__ import annotations

import os

from core.client import SocketClient, connect
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.ztui.conftest import wait_until
from ztui.app import ZtuiApp
from ztui.screens.overview import NO_HOSTS_NOTE, OverviewScreen
from ztui.widgets.node_summary import NodeSummary
from ztui.widgets.resource_table import ResourceTable
from ztui.widgets.status_line import StatusLine

SIZE = (80, 24)


def overview(app: ZtuiApp) -> OverviewScreen:
    screen = app.screen
    assert isinstance(screen, OverviewScreen)
    return screen


def table(app: ZtuiApp, table_id: str) -> ResourceTable:
    return overview(app).query_one(f"#{table_id}", ResourceTable)


async def loaded(pilot, app: ZtuiApp, times: int = 1) -> None:
    await wait_until(pilot, lambda: overview(app).loads_completed >= times, what="a refresh")


async def test_global_configs_are_listed_sorted(props: Properties) -> None:
    app = ZtuiApp(props)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        configs = table(app, "global-configs-table")
        names = configs.column_values("name")
        assert "vm.migrationQuantity" in names
        row = configs.get_row_at(names.index("vm.migrationQuantity"))
        assert row[0] == "kvm"
        keys = list(zip(configs.column_values("category"), names, strict=True))
        assert keys == sorted(keys)
        assert "global configs" in overview(app).status.text


async def test_header_names_the_in_process_node(props: Properties) -> None:
    app = ZtuiApp(props)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        text = overview(app).query_one(NodeSummary).text
        assert str(props.data_dir) in text
        assert "in-process" in text
        assert f"pid {os.getpid()}" in text
        assert "Running" in text


async def test_zone_created_elsewhere_appears_on_refresh(props: Properties) -> None:
    app = ZtuiApp(props)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        assert table(app, "zones-table").row_count == 0
        other = await connect(props)  # the app's node holds the data dir: this attaches
        try:
            assert isinstance(other, SocketClient)
            reply = await other.call("CreateZone", {"name": "zone-a"})
            assert reply.success, reply.error
        finally:
            await other.close()
        await pilot.press("r")
        await loaded(pilot, app, 2)
        zones = table(app, "zones-table")
        assert zones.column_values("name") == ["zone-a"]
        assert zones.column_values("state") == ["Enabled"]
        assert zones.column_values("uuid") == [reply.inventory["uuid"]]
        assert "1 zone " in overview(app).status.text


async def test_hosts_tab_says_there_are_none_yet(props: Properties) -> None:
    app = ZtuiApp(props)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("2")
        assert overview(app).query_one("TabbedContent").active == "hosts"
        note = overview(app).query_one("#hosts-note")
        assert str(note.content) == NO_HOSTS_NOTE
        assert note.region.width > 0  # visible at 80x24
        assert table(app, "hosts-table").row_count == 0


async def test_hosts_tab_lists_hosts_with_capacity(props: Properties) -> None:
    app = ZtuiApp(props)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        other = await connect(props)
        try:
            zone = (await other.call("CreateZone", {"name": "z"})).inventory
            cluster = (
                await other.call(
                    "CreateCluster",
                    {"name": "c", "zoneUuid": zone["uuid"], "hypervisorType": "Simulator"},
                )
            ).inventory
            reply = await other.call(
                "AddSimulatorHost",
                {
                    "name": "sim-a",
                    "clusterUuid": cluster["uuid"],
                    "cpuNum": 2,
                    "memorySize": 4 * 1024**3,
                },
            )
            assert reply.success, reply.error
        finally:
            await other.close()
        await pilot.press("r")
        await loaded(pilot, app, 2)
        await pilot.press("2")
        hosts = table(app, "hosts-table")
        assert hosts.column_values("name") == ["sim-a"]
        assert hosts.column_values("status") == ["Connected"]
        assert hosts.column_values("availableMemoryCapacity") == ["4G"]
        assert not overview(app).query_one("#hosts-note").display


async def test_q_quits_and_frees_the_data_dir(props: Properties) -> None:
    app = ZtuiApp(props)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        await pilot.press("q")
        await wait_until(pilot, lambda: app.return_code is not None, what="the app to exit")
    assert app.return_code == 0
    assert app.startup_error is None
    node = ManagementNode(props)
    await node.start()  # would raise NodeAlreadyRunning if the app's node still held the lock
    await node.stop()


async def test_attaches_to_a_running_node_and_leaves_it_running(props: Properties) -> None:
    node = ManagementNode(props)
    await node.start()
    try:
        app = ZtuiApp(props)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot, app)
            assert "attached" in overview(app).query_one(NodeSummary).text
            assert "vm.migrationQuantity" in table(app, "global-configs-table").column_values(
                "name"
            )
            await pilot.press("q")
        assert node.running
        assert (await node.call("QueryZone", {})).success
    finally:
        await node.stop()


async def test_becomes_the_node_when_the_attached_one_stops(props: Properties) -> None:
    node = ManagementNode(props)
    await node.start()
    app = ZtuiApp(props)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, app)
        assert app.session.in_process is False
        await node.stop()
        await pilot.press("r")
        await loaded(pilot, app, 2)
        assert app.session.in_process is True
        assert "in-process" in overview(app).query_one(NodeSummary).text
        assert not overview(app).status.has_class("-error")
    again = ManagementNode(props)  # and quitting stopped the node it became
    await again.start()
    await again.stop()


async def test_refresh_is_harmless_before_the_node_is_reached(props: Properties) -> None:
    app = ZtuiApp(props)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")  # may land before the connect worker is done
        await loaded(pilot, app)
        assert isinstance(overview(app).status, StatusLine)

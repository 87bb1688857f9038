"""The hosts view: the table and the pane under it, live rows from host events and
capacity after VM events, reconnect with ``c``, and read-only mode."""

from __future__ import annotations

from tests.conftest import ok
from tests.core.vm.conftest import GiB, Lab
from tests.ztui.conftest import LARGE, SMALL, app_on, shown, wait_until
from ztui.formatting import Formatter
from ztui.screens.hosts import HostsScreen, host_row
from ztui.widgets.host_detail import tag_text


def cells(screen: HostsScreen, field: str) -> list[str]:
    return screen.table.column_values(field)


def host_events(app: object) -> list[tuple[str, str]]:
    return [
        (e.data["oldStatus"], e.data["newStatus"])
        for e in app.recent_events  # type: ignore[attr-defined]
        if e.path == "/host/status/change"
    ]


def test_a_host_row_has_its_capacity_as_text() -> None:
    row = host_row(
        {
            "uuid": "h",
            "totalCpuCapacity": 40,
            "availableCpuCapacity": 39,
            "totalPhysicalMemory": 8 * GiB,
            "totalMemoryCapacity": 7 * GiB,
            "availableMemoryCapacity": 6 * GiB,
        },
        Formatter(),
    )
    assert (row["cpu"], row["memory"], row["reservedMemory"]) == ("1/40", "1G/7G", GiB)
    assert tag_text("qemu-img::version::7.2", Formatter(mask_volatile=True)) == (
        "qemu-img::version::<version>"
    )
    assert tag_text("hvm::vmx", Formatter(mask_volatile=True)) == "hvm::vmx"


async def test_the_table_and_the_pane_under_it(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("5")
        screen = await shown(pilot, HostsScreen)
        assert cells(screen, "name") == ["sim"]
        assert cells(screen, "status") == ["Connected"]
        assert cells(screen, "state") == ["Enabled"]
        assert cells(screen, "hypervisorType") == ["Simulator"]
        assert cells(screen, "cpu") == ["0/40"]
        assert cells(screen, "memory") == ["0B/8G"]
        assert cells(screen, "reservedMemory") == ["0B"]
        assert cells(screen, "managementIp") == ["127.0.0.1"]
        assert screen.status.text == "1 host"
        await wait_until(pilot, lambda: screen.detail.tags is not None, what="the host's tags")
        lines = screen.detail.text.splitlines()
        assert lines[0].startswith("Agent 127.0.0.1:")
        assert lines[0].endswith("Connected · Enabled · Simulator (tcg)")
        assert lines[1].endswith("0/40 vCPU · 4 cores")
        assert lines[2].endswith("0B/8G used · 0B reserved")
        assert lines[3].startswith("Tags  qemu-img::version::")
        assert "libvirt::version::0.0.0" in lines[3] and "hvm::vmx" in lines[3]
        assert screen.detail.border_title == "Host sim"


async def test_rows_follow_host_events_and_vms(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=LARGE) as pilot:
        await pilot.press("5")
        screen = await shown(pilot, HostsScreen)
        [cluster] = await ok(lab.node, "QueryCluster")
        await ok(
            lab.node,
            "AddSimulatorHost",
            name="sim2",
            clusterUuid=cluster["uuid"],
            cpuNum=2,
            memorySize=4 * GiB,
        )
        await wait_until(pilot, lambda: cells(screen, "name") == ["sim", "sim2"], what="sim2")
        assert cells(screen, "cpu") == ["0/40", "0/20"]
        assert screen.status.text == "2 hosts"
        await ok(
            lab.node,
            "CreateVmInstance",
            name="web1",
            imageUuid=lab.image_uuid,
            instanceOfferingUuid=lab.offering["uuid"],
            hostUuid=lab.host["uuid"],
        )
        await wait_until(pilot, lambda: cells(screen, "cpu")[0] == "1/40", what="capacity")
        assert cells(screen, "memory")[0] == "512M/8G"
        assert "1/40 vCPU" in screen.detail.text  # the cursor's host
        assert screen.loads_completed == 1  # all of it without a reload


async def test_reconnect_with_c(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("5")
        screen = await shown(pilot, HostsScreen)
        await wait_until(pilot, lambda: screen.detail.tags is not None)
        assert screen.check_action("reconnect", ()) is True
        await pilot.press("c")
        await wait_until(pilot, lambda: screen.status.text == "sim reconnected", what="reconnect")
        await wait_until(
            pilot,
            lambda: host_events(app) == [("Connected", "Connecting"), ("Connecting", "Connected")],
            what="the host's status events",
        )
        assert cells(screen, "status") == ["Connected"]
        assert "qemu-img::version::" in screen.detail.text  # tags fetched again
        ops = [r.get("apiName") for r in app.operations.records.values()]
        assert "ReconnectHost" in ops


async def test_read_only_disables_reconnect(lab: Lab) -> None:
    app = app_on(lab.node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("5")
        screen = await shown(pilot, HostsScreen)
        assert screen.check_action("reconnect", ()) is None
        await pilot.press("c")
        await pilot.pause(0.5)
        assert host_events(app) == []
        ops = [r.get("apiName") for r in app.operations.records.values()]
        assert "ReconnectHost" not in ops
        assert screen.status.text == "1 host"

"""The dashboard: what it shows of a simulator lab, and how it follows events without
reloading (VM counts one VM at a time, hosts and routers from their events)."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from core.client import InProcessClient, NodeClient
from core.kernel.api import ApiReply
from core.kernel.errors import ErrorCode
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import ok
from tests.core.host.test_hosts import simulator_pid
from tests.core.host.test_owned_agents import hold
from tests.core.virtual_router.conftest import make_net_lab
from tests.core.vm.conftest import GiB, Lab
from tests.ztui.conftest import LARGE, SMALL, app_on, shown, wait_until
from ztui.app import ZtuiApp
from ztui.context import RecentEvent
from ztui.formatting import Formatter
from ztui.screens.dashboard import DashboardScreen, range_size
from ztui.widgets.capacity_panel import HostCapacity, bar
from ztui.widgets.event_log import describe_event, newest_first
from ztui.widgets.state_counts import ordered

FMT = Formatter()


async def create_vm(lab: Lab, name: str, **params: Any) -> dict[str, Any]:
    return await ok(
        lab.node,
        "CreateVmInstance",
        name=name,
        imageUuid=lab.image_uuid,
        instanceOfferingUuid=lab.offering["uuid"],
        **params,
    )


def event_lines(screen: DashboardScreen) -> list[str]:
    return screen.event_log.text.splitlines()


def has_event(screen: DashboardScreen, text: str) -> bool:
    return any(line.endswith(text) for line in event_lines(screen))


# -- pieces -------------------------------------------------------------------------


def test_event_lines_say_what_happened() -> None:
    names = {"img1": "base", "vm9": "old"}
    vm = {"uuid": "vm1", "name": "web1", "state": "Running"}
    config = {"category": "kvm", "name": "reservedMemory", "oldValue": "512M", "newValue": "1G"}
    progress = {"imageUuid": "img1", "stage": "downloading", "progress": 32 << 20}
    cases: list[tuple[str, Any, str]] = [
        (
            "/vm/state/change",
            {"vmUuid": "vm1", "oldState": "Starting", "newState": "Running", "inventory": vm},
            "VM web1  Starting → Running",
        ),
        ("/vm/deleted", {"vmUuid": "vm9"}, "VM old  deleted"),
        (
            "/host/status/change",
            {"oldStatus": "Connected", "newStatus": "Disconnected", "inventory": {"name": "sim"}},
            "host sim  Connected → Disconnected",
        ),
        (
            "/appliance-vm/status/change",
            {"applianceVmUuid": "r1", "oldStatus": "Connected", "newStatus": "Destroyed"},
            "router r1  Connected → Destroyed",
        ),
        (
            "/appliance-vm/repaired",
            {"applianceVmUuid": "r1", "repaired": ["dnsmasq restarted"]},
            "router r1  repaired: dnsmasq restarted",
        ),
        (
            "/image/download/progress",
            {**progress, "total": 64 << 20},
            "image base  downloading 50% (32M/64M)",
        ),
        ("/image/download/progress", {**progress, "total": 0}, "image base  downloading 32M"),
        ("/globalConfig/update/kvm/reservedMemory", config, "config kvm.reservedMemory  512M → 1G"),
        ("/client/overflow", {"dropped": 7}, "7 events dropped: the views reloaded"),
        ("/something/else", None, "/something/else"),
    ]
    for path, data, expected in cases:
        assert describe_event(path, data, names, FMT).plain == expected
    masked = describe_event("/vm/deleted", {"vmUuid": "vm2"}, {}, Formatter(mask_volatile=True))
    assert masked.plain == "VM <uuid>  deleted"


def test_newest_first_keeps_one_progress_line_per_image() -> None:
    at = datetime(2026, 1, 1)
    events = [
        RecentEvent(at, "/image/download/progress", {"imageUuid": "a", "progress": 1}),
        RecentEvent(at, "/vm/deleted", {"vmUuid": "x"}),
        RecentEvent(at, "/image/download/progress", {"imageUuid": "a", "progress": 2}),
        RecentEvent(at, "/image/download/progress", {"imageUuid": "b", "progress": 5}),
    ]
    shown = newest_first(events)
    assert [(e.path, e.data.get("progress")) for e in shown] == [
        ("/image/download/progress", 5),
        ("/image/download/progress", 2),
        ("/vm/deleted", None),
    ]


def test_capacity_of_a_kvm_host_shows_its_reserved_memory() -> None:
    host = {
        "cpuNum": 4,
        "totalCpuCapacity": 40,
        "availableCpuCapacity": 38,
        "totalPhysicalMemory": 8 * GiB,
        "totalMemoryCapacity": 8 * GiB - 512 * 2**20,
        "availableMemoryCapacity": 6 * GiB,
    }
    capacity = HostCapacity.of(host)
    assert capacity.reserved_memory == 512 * 2**20
    assert capacity.cpu_text() == "2/40 vCPU · 4 cores"
    assert capacity.memory_text(FMT) == "1.5G/7.5G used · 512M reserved"
    assert bar(10, 0.5, 0.1).plain == "█████▒░░░░"
    assert bar(10, 0.01).plain == "█░░░░░░░░░"  # something used is never an empty bar


def test_states_in_order_and_range_sizes() -> None:
    assert ordered({"Stopped": 2, "Running": 1, "Weird": 1, "Paused": 0}) == [
        ("Running", 1),
        ("Stopped", 2),
        ("Weird", 1),
    ]
    assert range_size({"startIp": "10.0.0.2", "endIp": "10.0.0.254"}) == 253
    assert range_size({"startIp": "bad", "endIp": "10.0.0.1"}) == 0


# -- the view -----------------------------------------------------------------------


async def test_the_dashboard_is_the_first_view_and_shows_the_lab(lab: Lab) -> None:
    await create_vm(lab, "web1")
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await shown(pilot, DashboardScreen)
        assert screen.summary_panel.text.splitlines()[1].startswith(
            "Node      in this process · pid "
        )
        assert str(lab.node.props.data_dir) in screen.summary_panel.text
        capacity = screen.capacity.text
        assert capacity.startswith("sim  Connected  Simulator tcg")
        assert "1/40 vCPU · 4 cores" in capacity
        assert "512M/8G used · 0B reserved" in capacity
        assert screen.capacity.border_title == "Hosts · 1"
        assert screen.counts.text == "Running 1"
        assert screen.counts.border_title == "VMs · 1"
        assert screen.networks.text == "no L3 networks yet"
        assert screen.status.text == "1 host · 1 VM · 0 L3 networks · 0 routers"


async def test_key_1_brings_the_dashboard_back(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await shown(pilot, DashboardScreen)
        await pilot.press("2")
        await wait_until(pilot, lambda: app.screen is not screen)
        await pilot.press("1")
        await wait_until(pilot, lambda: app.screen is screen, what="the same dashboard again")


async def test_counts_and_events_follow_vms_without_reloading(lab: Lab) -> None:
    await ok(lab.node, "UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Direct")
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await shown(pilot, DashboardScreen)
        assert screen.counts.text == "no VMs yet"
        web1 = await create_vm(lab, "web1")
        await create_vm(lab, "web2", strategy="JustCreate")
        await wait_until(pilot, lambda: has_event(screen, "VM web1  Starting → Running"))
        assert [line.split("  ", 1)[1] for line in event_lines(screen)[:2]] == [
            "VM web1  Starting → Running",
            "VM web1  Created → Starting",
        ]  # newest first
        assert screen.counts.counts == {"Running": 1}  # a JustCreate VM tells no event
        await wait_until(pilot, lambda: "1/40 vCPU" in screen.capacity.text, what="capacity")

        await ok(lab.node, "StopVmInstance", uuid=web1["uuid"])
        await wait_until(pilot, lambda: screen.counts.counts == {"Stopped": 1})
        await ok(lab.node, "DestroyVmInstance", uuid=web1["uuid"])
        await wait_until(pilot, lambda: screen.counts.counts == {}, what="web1 gone")
        assert has_event(screen, "VM web1  deleted")
        assert screen.counts.text == "no VMs yet"
        assert screen.loads_completed == 1  # all of it without a reload
        await wait_until(pilot, lambda: "0/40 vCPU" in screen.capacity.text, what="capacity")
        await pilot.press("r")
        await wait_until(pilot, lambda: screen.loads_completed == 2)
        assert screen.counts.counts == {"Created": 1}  # web2, which a reload finds


async def test_a_host_reconnect_and_a_config_change_show(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=LARGE) as pilot:
        screen = await shown(pilot, DashboardScreen)
        await ok(lab.node, "ReconnectHost", uuid=lab.host["uuid"])
        await ok(lab.node, "UpdateGlobalConfig", category="kvm", name="reservedMemory", value="1G")
        await wait_until(pilot, lambda: has_event(screen, "config kvm.reservedMemory  512M → 1G"))
        tail = [line.split("  ", 1)[1] for line in event_lines(screen)[:3]]
        assert tail == [
            "config kvm.reservedMemory  512M → 1G",
            "host sim  Connecting → Connected",
            "host sim  Connected → Connecting",
        ]
        assert screen.capacity.text.startswith("sim  Connected")
        assert screen.loads_completed == 1


async def test_networks_and_routers(node: ManagementNode, tmp_path: Path) -> None:
    net = await make_net_lab(node, tmp_path)
    await net.create_vm("web1")
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await shown(pilot, DashboardScreen)
        assert screen.networks.text.splitlines() == [
            "public   Public   1/253 IPs",
            "private  Private  1/253 IPs  vr-private Connected",
        ]
        assert screen.networks.border_title == "Networks · 2 L3 · 1 router"
        await net.create_vm("web2")
        await wait_until(pilot, lambda: "2/253 IPs" in screen.networks.text, what="IP usage")
        router = await net.router()
        assert router is not None
        await ok(node, "ReconnectVirtualRouter", uuid=router["uuid"])
        await wait_until(
            pilot, lambda: has_event(screen, "router vr-private  Connecting → Connected")
        )
        assert has_event(screen, "router vr-private  Connected → Connecting")
        assert screen.networks.text.endswith("vr-private Connected")
        assert screen.status.text == "1 host · 2 VMs · 2 L3 networks · 1 router"


class NoHostsClient(InProcessClient):
    """The node, except that QueryHost fails."""

    async def call(self, api: str, params: Any) -> ApiReply:
        if api == "QueryHost":
            return ApiReply.failure(ErrorCode("SYS.1000", "hosts are on fire"))
        return await super().call(api, params)


async def test_a_failed_query_stays_on_the_status_line(lab: Lab) -> None:
    async def connector(_props: Properties) -> NodeClient:
        return NoHostsClient(lab.node)

    app = ZtuiApp(lab.node.props, connector=connector)
    async with app.run_test(size=SMALL) as pilot:
        screen = await shown(pilot, DashboardScreen)
        assert screen.status.has_class("-error")
        assert "QueryHost: SYS.1000: hosts are on fire" in screen.status.text
        assert screen.capacity.text.startswith("hosts unknown: QueryHost failed")
        await create_vm(lab, "web1")
        await wait_until(pilot, lambda: screen.counts.counts == {"Running": 1})
        assert "hosts are on fire" in screen.status.text  # not hidden by the counts


async def test_the_node_s_pid_uptime_and_problems_show(lab: Lab) -> None:
    """A port another program holds: the dashboard names the port, the holder and the fix,
    and the problem goes once the port is free (the node retried by itself)."""
    node = lab.node
    host = lab.host
    app = app_on(node)
    async with app.run_test(size=LARGE) as pilot:
        screen = await shown(pilot, DashboardScreen)
        assert f"pid {os.getpid()} · up " in screen.summary_panel.text
        assert "Problem" not in screen.summary_panel.text
        await ok(node, "UpdateGlobalConfig", category="host", name="ping.interval", value="1")
        os.kill(simulator_pid(node, host["uuid"]), signal.SIGKILL)
        squatters: list[subprocess.Popen[str]] = []
        squatter = hold(squatters, host["agentPort"])
        try:
            await wait_until(
                pilot,
                lambda: f"is held by pid {squatter.pid}" in screen.summary_panel.text,
                timeout=60,
                what="the problem on the dashboard",
            )
            text = screen.summary_panel.text
            assert f"Problem   host {host['name']}: " in text
            assert f"port {host['agentPort']}" in text and "time.sleep(600)" in text
        finally:
            squatter.kill()
            squatter.wait()
        await wait_until(
            pilot,
            lambda: "Problem" not in screen.summary_panel.text,
            timeout=60,
            what="the problem to go",
        )

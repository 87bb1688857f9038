"""The networking commands on a simulator agent, through the real HTTP protocol: the same
checks and answers as on a real host, in-memory state, and no change to the host except
the virtual-router agents it starts (``--simulate``, no namespace)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.app import Agent
from agent.context import HostAgentContext
from agent.network.base import ApplianceNic, ApplianceSpec
from agent.simulator_backend import SimulatorBackend
from agentkit.plugins import AgentPlugin
from agentkit.procs import alive
from tests.agent.helpers import AgentCaller, wait_until
from tests.agent.net_helpers import (
    ROOT,
    VR_MAIN,
    snapshot,
    stand_in_command,
    stand_in_greeting,
    vr_call,
)

UUID = "0123456789abcdef0123456789abcdef"
BR1, BR2 = "zslbr-a00000001", "zslbr-a00000002"


@asynccontextmanager
async def simulator_agent(
    short_dir: Path, plugins: Sequence[type[AgentPlugin[HostAgentContext]]] | None = None
) -> AsyncIterator[tuple[Agent, AgentCaller]]:
    """A started simulator agent (``plugins``: default the installed ones) and a caller."""
    backend = SimulatorBackend(data_dir=short_dir / "agent")
    agent = Agent(backend, short_dir / "agent", plugins=plugins)
    await agent.start("127.0.0.1", 0)
    caller = AgentCaller(f"http://127.0.0.1:{agent.port}", agent.token)
    try:
        yield agent, caller
    finally:
        await caller.close()
        await agent.stop()


@pytest.fixture
async def sim(short_dir: Path) -> AsyncIterator[tuple[Agent, AgentCaller]]:
    async with simulator_agent(short_dir) as agent_and_caller:
        yield agent_and_caller


def footprint() -> tuple[set[str], set[str], set[str]]:
    """What a simulator could wrongly make on this host (other tests may run beside us, so
    only the names these tests use are compared): links, namespaces, the NAT table."""
    snap = snapshot()
    return (
        {n for n in snap.links if n in (BR1, BR2) or n.startswith("zslv012345678")},
        {n for n in snap.namespaces if n == "zsl-vr-012345678"},
        {t for t in snap.tables if "zsl_host_nat" in t},
    )


def appliance_body(**extra: Any) -> dict[str, Any]:
    return {
        "applianceUuid": UUID,
        "nics": [
            {"bridgeName": BR1, "mac": "52:54:00:AA:00:01", "ip": "10.0.0.1", "prefixLength": 24},
            {
                "bridgeName": BR2,
                "mac": "52:54:00:aa:00:02",
                "ip": "192.0.2.10",
                "prefixLength": 24,
                "role": "public",
            },
        ],
        "defaultGateway": "192.0.2.1",
        **extra,
    }


async def test_bridges_and_host_nat_keep_their_state_in_memory(
    sim: tuple[Agent, AgentCaller],
) -> None:
    _, caller = sim
    before = footprint() if ROOT else None
    await caller.ok("/network/bridge/create", {"bridgeName": BR1, "physicalInterface": "eth9"})
    await caller.ok("/network/bridge/create", {"bridgeName": BR1, "physicalInterface": "eth9"})
    taken = await caller.call(
        "/network/bridge/create", {"bridgeName": BR2, "physicalInterface": "eth9"}
    )
    assert taken["error"] == f"physical interface eth9 is already enslaved to {BR1}"
    await caller.ok("/network/bridge/create", {"bridgeName": BR2})
    check = await caller.ok("/network/bridge/check", {"bridgeNames": [BR1, "zslbr-gone"]})
    assert check["missing"] == ["zslbr-gone"]

    nat = {"bridgeName": BR1, "gatewayCidr": "10.0.0.1/24"}
    await caller.ok("/network/hostnat/set", nat)
    await caller.ok("/network/hostnat/set", nat)
    overlap = await caller.call(
        "/network/hostnat/set", {"bridgeName": BR2, "gatewayCidr": "10.0.0.129/25"}
    )
    assert overlap["error"] == f"10.0.0.128/25 overlaps the host route 10.0.0.0/24 via {BR1}"
    no_bridge = await caller.call(
        "/network/hostnat/set", {"bridgeName": "zslbr-gone", "gatewayCidr": "10.9.0.1/24"}
    )
    assert no_bridge["error"] == "bridge zslbr-gone does not exist on this host"
    await caller.ok("/network/hostnat/remove", nat)
    await caller.ok("/network/hostnat/remove", nat)

    await caller.ok("/network/bridge/delete", {"bridgeName": BR1})
    await caller.ok("/network/bridge/delete", {"bridgeName": BR1})
    assert (await caller.ok("/network/bridge/check", {"bridgeNames": [BR1]}))["missing"] == [BR1]
    if before is not None:
        assert footprint() == before  # nothing on the host


async def test_routes_are_the_host_nat_gateways_networks(sim: tuple[Agent, AgentCaller]) -> None:
    _, caller = sim
    assert (await caller.ok("/network/routes", {}))["routes"] == []
    await caller.ok("/network/bridge/create", {"bridgeName": BR1})
    await caller.ok("/network/bridge/create", {"bridgeName": BR2})
    await caller.ok("/network/hostnat/set", {"bridgeName": BR2, "gatewayCidr": "10.0.1.1/24"})
    await caller.ok("/network/hostnat/set", {"bridgeName": BR1, "gatewayCidr": "10.0.0.1/24"})
    await caller.ok("/network/hostnat/set", {"bridgeName": BR1, "gatewayCidr": "10.0.0.2/24"})
    assert (await caller.ok("/network/routes", {}))["routes"] == [
        {"destination": "10.0.0.0/24", "interface": BR1, "gateway": ""},
        {"destination": "10.0.1.0/24", "interface": BR2, "gateway": ""},
    ]
    await caller.ok("/network/hostnat/remove", {"bridgeName": BR1, "gatewayCidr": "10.0.0.1/24"})
    await caller.ok("/network/hostnat/remove", {"bridgeName": BR1, "gatewayCidr": "10.0.0.2/24"})
    await caller.ok("/network/bridge/delete", {"bridgeName": BR2})  # its link route goes too
    assert (await caller.ok("/network/routes", {}))["routes"] == []


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (
            "/network/bridge/create",
            {"bridgeName": "br0"},
            "field 'bridgeName' is not a project bridge name",
        ),
        (
            "/network/bridge/create",
            {"bridgeName": "zslbr-0123456789"},
            "field 'bridgeName' is not a project bridge name",
        ),
        (
            "/network/bridge/create",
            {"bridgeName": BR1, "physicalInterface": "eth0; rm"},
            "field 'physicalInterface' is not an interface name",
        ),
        (
            "/network/bridge/create",
            {"bridgeName": BR1, "allowDefaultRouteInterface": "yes"},
            "field 'allowDefaultRouteInterface' must be true or false",
        ),
        (
            "/network/bridge/check",
            {"bridgeNames": [BR1, "lo"]},
            "field 'bridgeNames[1]' is not a project bridge name",
        ),
        (
            "/network/hostnat/set",
            {"bridgeName": BR1, "gatewayCidr": "10.0.0.1"},
            "field 'gatewayCidr' needs a prefix",
        ),
        (
            "/network/hostnat/set",
            {"bridgeName": BR1, "gatewayCidr": "10.0.0.0/24"},
            "field 'gatewayCidr' must be a host address",
        ),
        (
            "/appliance/create",
            appliance_body(applianceUuid="../x"),
            "field 'applianceUuid' is not a uuid",
        ),
        ("/appliance/create", appliance_body(nics=[]), "field 'nics' needs at least one NIC"),
        (
            "/appliance/create",
            appliance_body(defaultGateway="10.0.0.254"),
            "field 'defaultGateway' 10.0.0.254 is in no public NIC's network",
        ),
        (
            "/appliance/create",
            appliance_body(nics=[{"bridgeName": BR1, "mac": "x", "ip": "1.1.1.1"}]),
            "field 'nics[0].mac' is not a MAC address",
        ),
        (
            "/appliance/create",
            appliance_body(
                nics=[
                    {
                        "bridgeName": BR1,
                        "mac": "52:54:00:aa:00:01",
                        "ip": "10.0.0.1",
                        "prefixLength": 24,
                        "role": "dmz",
                    }
                ]
            ),
            "field 'nics[0].role' must be one of guest, public",
        ),
        ("/appliance/check", {"applianceUuid": "zz"}, "field 'applianceUuid' is not a uuid"),
    ],
)
async def test_fields_are_checked(
    sim: tuple[Agent, AgentCaller], path: str, body: dict[str, Any], error: str
) -> None:
    answer = await sim[1].call(path, body)
    assert answer["success"] is False
    assert answer["error"].startswith(error), answer["error"]


async def test_vm_nics_need_project_names(sim: tuple[Agent, AgentCaller], tmp_path: Path) -> None:
    root = tmp_path / "root.qcow2"
    root.write_bytes(b"")
    body: dict[str, Any] = {
        "vmUuid": "vm-1",
        "cpuNum": 1,
        "memorySize": 64 * 1024**2,
        "rootVolume": {"installPath": str(root)},
    }
    nic = {"mac": "52:54:00:12:34:56", "bridgeName": BR1, "deviceName": "zslt0123456780"}
    for bad, error in [
        ({"bridgeName": "virbr0"}, "field 'nics[0].bridgeName' is not a project bridge name"),
        ({"deviceName": "vnet0"}, "field 'nics[0].deviceName' is not a project device name"),
        ({"deviceName": ""}, "field 'nics[0].deviceName' is required"),
    ]:
        answer = await sim[1].call("/vm/start", {**body, "nics": [{**nic, **bad}]})
        assert answer["error"].startswith(error), answer["error"]
    twice = await sim[1].call(
        "/vm/start", {**body, "nics": [nic, {**nic, "mac": "52:54:00:0:0:1"}]}
    )
    assert twice["success"] is False
    assert (await sim[1].call("/vm/start", {**body, "nics": [nic]}))["success"] is True


@pytest.mark.skipif(not VR_MAIN.exists(), reason=f"{VR_MAIN} is not written yet")
async def test_appliance_runs_the_real_agent_simulated(sim: tuple[Agent, AgentCaller]) -> None:
    agent, caller = sim
    before = footprint() if ROOT else None
    refused = await caller.call("/appliance/create", appliance_body())
    assert f"bridge {BR1} does not exist" in refused["error"]
    for bridge in (BR1, BR2):
        await caller.ok("/network/bridge/create", {"bridgeName": bridge})

    answer = await caller.ok("/appliance/create", appliance_body())
    directory = agent.backend.network.appliance_dir(UUID)
    assert answer["namespace"] == "zsl-vr-012345678"
    assert answer["socketPath"] == str(directory / "agent.sock")
    assert answer["tokenFile"] == str(directory / "agent.token")
    pid = answer["agentPid"]
    ping = await vr_call(answer["socketPath"], answer["tokenFile"], "/ping")
    assert ping["success"] is True, ping
    again = await caller.ok("/appliance/create", appliance_body())
    assert again["agentPid"] == pid
    status = await caller.ok("/appliance/check", {"applianceUuid": UUID})
    assert (status["namespace"], status["agentRunning"], status["missingNics"]) == (
        True,
        True,
        [],
    )
    await caller.ok("/network/bridge/delete", {"bridgeName": BR2})
    status = await caller.ok("/appliance/check", {"applianceUuid": UUID})
    assert status["missingNics"] == ["52:54:00:aa:00:02"]
    if before is not None:
        assert footprint() == before  # no namespace, no veth, no table

    await caller.ok("/appliance/destroy", {"applianceUuid": UUID})
    await caller.ok("/appliance/destroy", {"applianceUuid": UUID})
    assert not alive(pid) and not directory.exists()
    status = await caller.ok("/appliance/check", {"applianceUuid": UUID})
    assert (status["namespace"], status["agentRunning"]) == (False, False)


async def test_a_stand_in_agent_and_close_stops_it(short_dir: Path) -> None:
    backend = SimulatorBackend(data_dir=short_dir / "agent")
    network = backend.network
    await network.bridge_create(BR1)
    spec = ApplianceSpec(UUID, (ApplianceNic(BR1, "52:54:00:aa:00:01", "10.0.0.1", 24),))
    info = await network.appliance_create(spec, stand_in_command())
    assert stand_in_greeting(info.socket_path) == "stand-in simulated"
    assert (await network.appliance_check(UUID)).agent_running
    await backend.close()
    await wait_until(lambda: not alive(info.agent_pid), 5, "the stand-in to end")


async def test_destroying_an_appliance_never_made_succeeds(
    sim: tuple[Agent, AgentCaller],
) -> None:
    """A rollback after a crash destroys an appliance whose create may never have run."""
    agent, caller = sim
    await caller.ok("/appliance/destroy", {"applianceUuid": UUID})
    await caller.ok("/appliance/destroy", {"applianceUuid": UUID})
    assert not agent.backend.network.appliance_dir(UUID).exists()

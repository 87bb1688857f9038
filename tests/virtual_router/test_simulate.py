"""The contract over the real envelope (Unix socket, bearer token) in --simulate mode:
validation, merge rules, nothing changed by a refused command."""

from __future__ import annotations

import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from agentkit.server import AgentServer, CommandRegistry
from contracts import virtual_router as p
from tests.virtual_router.helpers import VrClient, dhcp_entry, snat
from virtual_router.app import VrAgent
from virtual_router.dnsmasq import SimulatedDnsmasq
from virtual_router.snat import SimulatedSnat

VR1 = "02:00:00:00:01:01"
VR2 = "02:00:00:00:01:02"
PUB = "02:00:00:00:00:aa"


def dnsmasq_of(agent: VrAgent) -> SimulatedDnsmasq:
    assert isinstance(agent.router.dnsmasq, SimulatedDnsmasq)
    return agent.router.dnsmasq


def snat_of(agent: VrAgent) -> SimulatedSnat:
    assert isinstance(agent.router.snat, SimulatedSnat)
    return agent.router.snat


def macs(agent: VrAgent) -> list[str]:
    return [e.mac for e in agent.router.state.dhcp]


# -- envelope ---------------------------------------------------------------------
async def test_socket_is_0600_and_needs_the_token(sim: VrClient, short_dir: Path) -> None:
    assert stat.S_IMODE((short_dir / "vr.sock").stat().st_mode) == 0o600
    assert stat.S_IMODE((short_dir / "token").stat().st_mode) == 0o600
    status, answer = await sim.post(p.PING, {}, {"Authorization": "Bearer wrong"})
    assert (status, answer["success"]) == (401, False)
    status, answer = await sim.post("/nope", {}, sim.auth)
    assert status == 404


async def test_deep_or_huge_bodies_are_400_naming_the_field(sim: VrClient) -> None:
    for data, error in (
        ("[" * 100_000 + "]" * 100_000, "the body nests deeper than 32 levels"),
        (
            '{"dhcpEntryList": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "field 'dhcpEntryList' nests deeper than 32 levels",
        ),
        ('{"uuid": ' + "1" * 5000 + "}", "field 'uuid' is a number of 5000 characters"),
    ):
        async with sim.session.post(f"http://vr{p.INIT}", data=data, headers=sim.auth) as resp:
            assert resp.status == 400
            answer = await resp.json()
        assert answer["success"] is False and answer["error"].startswith(error)
    await sim.ok(p.PING)


async def test_init_then_ping_answers_the_signature(sim: VrClient) -> None:
    assert await sim.ok(p.PING) == {
        "success": True,
        "error": "",
        "uuid": "",
        "repaired": [],
        "dnsmasq": {"pid": None, "restarts": 0, "lastExit": "", "reloads": 0},
    }
    await sim.ok(p.INIT, {"uuid": "vr-1"})
    assert (await sim.ok(p.PING))["uuid"] == "vr-1"
    assert "uuid" in await sim.fails(p.INIT, {})


async def test_start_unix_replaces_a_stale_socket_but_not_a_file(short_dir: Path) -> None:
    path = short_dir / "s.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # what a killed agent leaves
        stale.bind(str(path))
    server = AgentServer(CommandRegistry(), "t", _nothing)
    await server.start_unix(str(path))
    await server.stop()
    regular = short_dir / "file"
    regular.write_text("x")
    with pytest.raises(FileExistsError):
        await AgentServer(CommandRegistry(), "t", _nothing).start_unix(str(regular))
    assert regular.read_text() == "x"


async def test_stop_removes_its_socket_but_not_a_successors(short_dir: Path) -> None:
    """Sockets under /run/zstack-lite/vr outlived their agents (tests/host_leaks.py saw them)."""
    path = short_dir / "s.sock"
    server = AgentServer(CommandRegistry(), "t", _nothing)
    await server.start_unix(str(path))
    await server.stop()
    assert not path.exists()
    old, new = (AgentServer(CommandRegistry(), "t", _nothing) for _ in range(2))
    await old.start_unix(str(path))
    await new.start_unix(str(path))  # a restarted agent takes the path over
    await old.stop()
    assert path.is_socket()
    await new.stop()
    assert not path.exists()


async def _nothing(*_: Any) -> bool:
    return False


# -- DHCP -------------------------------------------------------------------------
async def test_adddhcp_merges_and_rebuild_replaces(sim: VrClient, sim_agent: VrAgent) -> None:
    a = dhcp_entry("10.1.0.10", "52:54:00:00:00:01", VR1, hostname="a", domain="lab.lan")
    b = dhcp_entry("10.1.0.11", "52:54:00:00:00:02", VR1)
    c = dhcp_entry("10.2.0.12", "52:54:00:00:00:03", VR2, default=False)
    await sim.ok(p.ADD_DHCP, {"dhcpEntryList": [a, b]})
    await sim.ok(p.ADD_DHCP, {"dhcpEntryList": [c]})
    assert macs(sim_agent) == ["52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"]
    config = dnsmasq_of(sim_agent).config
    assert config.interfaces == ("sim000101", "sim000102")
    assert [str(r) for r in config.ranges] == ["10.1.0.0/24", "10.2.0.0/24"]

    # Same ip, new mac: replaces a; same mac, new ip: replaces b.
    a2 = dhcp_entry("10.1.0.10", "52:54:00:00:00:0A", VR1)
    b2 = dhcp_entry("10.1.0.99", "52:54:00:00:00:02", VR1)
    await sim.ok(p.ADD_DHCP, {"dhcpEntryList": [a2, b2]})
    assert sorted((str(e.ip), e.mac) for e in sim_agent.router.state.dhcp) == [
        ("10.1.0.10", "52:54:00:00:00:0a"),
        ("10.1.0.99", "52:54:00:00:00:02"),
        ("10.2.0.12", "52:54:00:00:00:03"),
    ]

    await sim.ok(p.ADD_DHCP, {"rebuild": True, "dhcpEntryList": [c]})
    assert macs(sim_agent) == ["52:54:00:00:00:03"]
    assert dnsmasq_of(sim_agent).config.interfaces == ("sim000102",)


async def test_removedhcp_releases_and_stops_serving(sim: VrClient, sim_agent: VrAgent) -> None:
    a = dhcp_entry("10.1.0.10", "52:54:00:00:00:01", VR1)
    b = dhcp_entry("10.1.0.11", "52:54:00:00:00:02", VR1)
    await sim.ok(p.ADD_DHCP, {"dhcpEntryList": [a, b]})
    await sim.ok(p.REMOVE_DHCP, {"dhcpEntryList": [a]})
    assert macs(sim_agent) == ["52:54:00:00:00:02"]
    assert dnsmasq_of(sim_agent).releases == [("sim000101", "10.1.0.10", "52:54:00:00:00:01")]
    await sim.ok(p.REMOVE_DHCP, {"dhcpEntryList": [a]})  # already gone: fine
    await sim.ok(p.REMOVE_DHCP, {"dhcpEntryList": [b]})
    assert not dnsmasq_of(sim_agent).running


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"ip": "10.1.0"}, "'dhcpEntryList[1].ip' is not an IPv4 address: '10.1.0'"),
        ({"mac": "52:54:00:00:00"}, "'dhcpEntryList[1].mac' is not a MAC address"),
        ({"mac": None}, "'dhcpEntryList[1].mac' is required"),
        ({"netmask": "255.0.255.0"}, "'dhcpEntryList[1].netmask' is not a dotted IPv4 netmask"),
        ({"gateway": "10.9.9.1"}, "'dhcpEntryList[1].gateway' (10.9.9.1) is not in the network"),
        ({"gateway": ""}, "'dhcpEntryList[1].gateway' is required"),
        ({"hostname": "a,b"}, "'dhcpEntryList[1].hostname' is not a DNS name: 'a,b'"),
        ({"dnsDomain": "lab\nlan"}, "'dhcpEntryList[1].dnsDomain' is not a DNS name"),
        ({"dns": ["10.1.0.1", "x"]}, "'dhcpEntryList[1].dns[1]' is not an IPv4 address"),
        ({"isDefaultL3Network": "yes"}, "'dhcpEntryList[1].isDefaultL3Network' must be true"),
        ({"vrNicMac": "zz"}, "'dhcpEntryList[1].vrNicMac' is not a MAC address"),
        ({"mac": "52:54:00:00:00:03"}, "dhcpEntryList names 52:54:00:00:00:03 twice"),
    ],
)
async def test_bad_dhcp_entries_are_refused_and_change_nothing(
    sim: VrClient, sim_agent: VrAgent, change: dict[str, Any], named: str
) -> None:
    first = dhcp_entry("10.1.0.10", "52:54:00:00:00:01", VR1)
    await sim.ok(p.ADD_DHCP, {"dhcpEntryList": [first]})
    before = (sim_agent.router.state, dnsmasq_of(sim_agent).config)
    bad = {**dhcp_entry("10.1.0.11", "52:54:00:00:00:02", VR1), **change}
    good = dhcp_entry("10.1.0.12", "52:54:00:00:00:03", VR1)
    error = await sim.fails(p.ADD_DHCP, {"rebuild": True, "dhcpEntryList": [good, bad]})
    assert named in error
    assert (sim_agent.router.state, dnsmasq_of(sim_agent).config) == before


async def test_non_default_networks_need_no_gateway(sim: VrClient) -> None:
    entry = dhcp_entry("10.1.0.10", "52:54:00:00:00:01", VR1, default=False)
    await sim.ok(p.ADD_DHCP, {"dhcpEntryList": [{**entry, "gateway": ""}]})
    assert "'dhcpEntryList' must be a list" in await sim.fails(p.ADD_DHCP, {"dhcpEntryList": {}})


# -- DNS --------------------------------------------------------------------------
async def test_setdns_replaces_and_removedns_removes(sim: VrClient, sim_agent: VrAgent) -> None:
    one = {"dnsAddress": "203.0.113.53", "nicMac": VR1}
    two = {"dnsAddress": "203.0.113.54", "nicMac": VR2}
    await sim.ok(p.SET_DNS, {"dns": [one, two]})
    config = dnsmasq_of(sim_agent).config
    assert [str(a) for a in config.upstream] == ["203.0.113.53", "203.0.113.54"]
    assert config.interfaces == ("sim000101", "sim000102")
    await sim.ok(p.SET_DNS, {"dns": [two]})
    assert [str(a) for a in dnsmasq_of(sim_agent).config.upstream] == ["203.0.113.54"]
    await sim.ok(p.REMOVE_DNS, {"dns": [two]})
    assert not dnsmasq_of(sim_agent).running
    error = await sim.fails(p.SET_DNS, {"dns": [{"dnsAddress": "8.8.8", "nicMac": VR1}]})
    assert "'dns[0].dnsAddress' is not an IPv4 address: '8.8.8'" in error


# -- SNAT -------------------------------------------------------------------------
async def test_snat_set_remove_sync(sim: VrClient, sim_agent: VrAgent) -> None:
    s1 = snat(VR1, "10.1.0.1", PUB, "203.0.113.10")
    s2 = snat(VR2, "10.2.0.1", PUB, "203.0.113.11")
    await sim.ok(p.SET_SNAT, {"snats": [s1]})
    await sim.ok(p.SET_SNAT, {"snats": [s2, {**s1, "publicIp": "203.0.113.12"}]})
    ruleset = snat_of(sim_agent).ruleset
    assert "ip saddr 10.1.0.0/24 snat to 203.0.113.12" in ruleset
    assert "ip saddr 10.2.0.0/24 snat to 203.0.113.11" in ruleset
    assert "203.0.113.10" not in ruleset

    await sim.ok(p.REMOVE_SNAT, {"snats": [{"privateNicMac": VR1}]})
    assert [s.private_nic_mac for s in sim_agent.router.state.snats] == [VR2]

    before = (sim_agent.router.state, snat_of(sim_agent).ruleset)
    error = await sim.fails(p.SYNC_SNAT, {"snats": [s1, {**s2, "snatNetmask": "255.255.0.255"}]})
    assert "'snats[1].snatNetmask' is not a dotted IPv4 netmask" in error
    error = await sim.fails(p.SYNC_SNAT, {"snats": [s1, {**s2, "publicIp": None}]})
    assert "'snats[1].publicIp' is required" in error
    assert (sim_agent.router.state, snat_of(sim_agent).ruleset) == before

    await sim.ok(p.SYNC_SNAT, {"snats": []})
    assert snat_of(sim_agent).ruleset == "table ip zsl_vr_nat\ndelete table ip zsl_vr_nat\n"

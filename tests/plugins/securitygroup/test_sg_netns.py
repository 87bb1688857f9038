"""The agent's ruleset on real packets (root): three "guests" A, B, C are network namespaces
plugged by veths named like VM taps into a project bridge, which lives in a "switch"
namespace of its own, where the agent plugin applies its tables (through an ``nft`` that
runs there): nothing of the host's ruleset or links is touched, and nothing is sent
anywhere but between these namespaces.

This proves the bridge table and the established mark of the inet table on this kernel
(br_netfilter on, no bridge conntrack); the path from the API to the agent is the
simulator tests' (test_core_plugin.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from zsl_securitygroup.agent_plugin import SecurityGroupCommands
from zsl_securitygroup.contract import ApplyCmd, GroupTO, RuleTO, SgNicTO

from tests.plugins.securitygroup.conftest import AgentCtx

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")

LAB = "zsl" + "5e" * 5
GATEWAY = "10.77.0.1"
WEB, CLIENTS = "1" * 32, "2" * 32
RULE, EGRESS_RULE = "f" * 32, "e" * 32


@dataclass
class Guest:
    name: str
    netns: str
    tap: str
    mac: str
    ip: str


@dataclass
class Wire:
    """The switch namespace, its bridge, the guests and the servers they run."""

    switch: str
    guests: dict[str, Guest]
    nft: Path
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ip(self, *args: str, netns: str | None = None) -> None:
        ns = ["-n", netns] if netns else []
        subprocess.run(["ip", *ns, *args], check=True, capture_output=True, timeout=10)

    def serve(self, guest: str) -> None:
        """An HTTP server on port 80 of ``guest``."""
        g = self.guests[guest]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", g.netns, sys.executable, "-m", "http.server", "80",
             "--bind", g.ip],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.servers.append(proc)

    def reaches(self, client: str, server: str, source: str = "", timeout: float = 1.0) -> bool:
        """Whether ``client`` gets an HTTP answer from ``server``'s port 80 (from
        ``source``, an address the client holds, if given)."""
        g = self.guests[client]
        bind = ["--interface", source] if source else []
        done = subprocess.run(
            ["ip", "netns", "exec", g.netns, "curl", "-s", "-o", "/dev/null", "--max-time",
             str(timeout), *bind, f"http://{self.guests[server].ip}/"],
            capture_output=True, timeout=timeout + 10, check=False,
        )  # fmt: skip
        return done.returncode == 0


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Wire]:
    tag = uuid.uuid4().hex[:6]
    switch = f"zsltest-sg-{tag}-sw"
    guests = {
        name: Guest(
            name, f"zsltest-sg-{tag}-{name}", f"zslt{tag}{i:03d}0", f"fa:77:00:00:00:1{i}",
            f"10.77.0.1{i}",
        )
        for i, name in enumerate("abc")
    }  # fmt: skip
    nft = tmp_path / "nft"
    nft.write_text(f'#!/bin/sh\nexec ip netns exec {switch} nft "$@"\n')
    nft.chmod(0o755)
    w = Wire(switch, guests, nft)
    made: list[str] = []
    try:
        for ns in [switch, *(g.netns for g in guests.values())]:
            w.ip("netns", "add", ns)
            made.append(ns)
        bridge = f"zslbr-{tag}sg0"
        w.ip("link", "add", bridge, "type", "bridge", netns=switch)
        w.ip("link", "set", bridge, "up", netns=switch)
        for g in guests.values():
            w.ip("link", "add", g.tap, "netns", switch, "type", "veth", "peer", "name", "eth0",
                 "netns", g.netns)  # fmt: skip
            w.ip("link", "set", g.tap, "master", bridge, "up", netns=switch)
            w.ip("link", "set", "eth0", "address", g.mac, netns=g.netns)
            w.ip("addr", "add", f"{g.ip}/24", "dev", "eth0", netns=g.netns)
            w.ip("link", "set", "eth0", "up", netns=g.netns)
            w.ip("link", "set", "lo", "up", netns=g.netns)
        yield w
    finally:
        for proc in w.servers:
            proc.kill()
            proc.wait(timeout=10)
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)


def state(
    wire: Wire, *, members: str = "ab", rule: bool = True, egress: str = "accept"
) -> ApplyCmd:
    """A in group web (Ingress TCP 80 from group clients), B in clients (with egress drop:
    Egress TCP 80 to group web), C in none."""
    groups = {"a": [WEB], "b": [CLIENTS]}
    nics = [
        SgNicTO(uuid=f"nic-{n}", tap=g.tap, mac=g.mac, ip=g.ip, gateway=GATEWAY,
                group_uuids=groups[n])
        for n, g in wire.guests.items()
        if n in members
    ]  # fmt: skip
    web = [RuleTO(uuid=RULE, type="Ingress", protocol="TCP", start_port=80, end_port=80,
                  remote_group_uuid=CLIENTS)] if rule else []  # fmt: skip
    clients = [RuleTO(uuid=EGRESS_RULE, type="Egress", protocol="TCP", start_port=80,
                      end_port=80, remote_group_uuid=WEB)] if egress == "drop" else []  # fmt: skip
    members_of = {CLIENTS: [wire.guests["b"].ip], WEB: [wire.guests["a"].ip]}
    return ApplyCmd(
        nics=nics,
        groups=[GroupTO(uuid=WEB, rules=web), GroupTO(uuid=CLIENTS, rules=clients)],
        remote_members={g: members_of[g] for g in ([CLIENTS] if rule else []) +
                        ([WEB] if clients else [])},
        egress_policy=egress,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_a_group_admits_its_peer_only_and_guards_its_addresses(wire: Wire) -> None:
    agent = SecurityGroupCommands(AgentCtx("KVM", LAB))  # type: ignore[arg-type]
    agent.nft_binary = str(wire.nft)
    apply = agent.apply
    for server in "ac":
        wire.serve(server)
    deadline = time.monotonic() + 15
    while not (wire.reaches("b", "a") and wire.reaches("b", "c")):  # the servers are up
        assert time.monotonic() < deadline, "the test servers did not start"
    assert wire.reaches("c", "a")  # no group yet: nothing is filtered
    try:
        await apply(state(wire).to_json(), None)  # type: ignore[arg-type]
        # B (in clients) reaches A on port 80: its SYN by the rule, A's answer into B (whose
        # ingress policy is drop) by the established mark; C (in no group) does not.
        assert wire.reaches("b", "a")
        assert not wire.reaches("c", "a")
        assert wire.reaches("a", "c")  # egress accept; C is not filtered

        # A forged source address from B is dropped by B's own chain (C filters nothing).
        wire.ip("addr", "add", "10.77.0.99/24", "dev", "eth0", netns=wire.guests["b"].netns)
        assert wire.reaches("b", "c", source=wire.guests["b"].ip)
        assert not wire.reaches("b", "c", source="10.77.0.99")

        # Egress deny: A reaches no one (answers to B still leave: established); B reaches
        # only what its group's Egress rule names (A's group, port 80).
        await apply(state(wire, egress="drop").to_json(), None)  # type: ignore[arg-type]
        assert not wire.reaches("a", "c")
        assert wire.reaches("b", "a")
        assert not wire.reaches("b", "c")

        # A rule change is effective at once: within a second of the apply.
        await apply(state(wire, rule=False).to_json(), None)  # type: ignore[arg-type]
        assert not wire.reaches("b", "a")
        started = time.monotonic()
        await apply(state(wire).to_json(), None)  # type: ignore[arg-type]
        assert wire.reaches("b", "a")
        assert time.monotonic() - started < 1.0

        # A's VM goes: its chains and map elements go, and it is not filtered any more.
        await apply(state(wire, members="b").to_json(), None)  # type: ignore[arg-type]
        listed = (await agent.show({}, None)).ruleset  # type: ignore[arg-type]
        assert wire.guests["a"].tap not in listed and wire.guests["b"].tap in listed
        assert wire.reaches("c", "a")
    finally:
        await apply(ApplyCmd().to_json(), None)  # type: ignore[arg-type]
    assert (await agent.show({}, None)).ruleset == ""  # type: ignore[arg-type]

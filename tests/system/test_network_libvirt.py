"""The networking issue's acceptance on this host (qemu:///system, namespaces, nftables).

A homelab: an "upstream" namespace (203.0.113.1/24) plays the LAN, its veth's host
end is the physical interface of a public L2 network; two tiny guests on a private
network (10.77.0.0/24, domain lab.lan) get their addresses, names and SNAT from a
virtual router made on demand.  Then the router's parts are broken by hand (dnsmasq
killed, its nft table deleted, its agent stopped, then killed) and each is repaired,
with leases, names and SNAT still served.  At the end every object the test made is deleted and
the host is as it was before the networks existed.

Host comparison: only objects of this test count (names derived from the uuids of
its L2 networks, VMs and appliances, the upstream's prefix, processes whose command
line names the node's directory); zsl objects of other sessions on this machine are
printed and tolerated.
"""

from __future__ import annotations

import os
import re
import signal
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from contracts.names import bridge_name, namespace_name, veth_name
from tests.conftest import ok
from tests.system.net_lab import (
    UP_RE,
    UPSTREAM_HELLO,
    UPSTREAM_IP,
    UPSTREAM_PORT,
    GuestConsole,
    HostState,
    Lab,
    Upstream,
    alive,
    cmdline,
    in_ns,
    leftovers,
    running_node,
    sh,
    unrelated,
    wait_for,
)

pytestmark = pytest.mark.system

STATIC_IP = "10.77.0.77"
NFT_TABLE = "zsl_vr_nat"


def ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


class Guest:
    def __init__(self, vm: dict[str, Any], ip: str, mac: str, console: GuestConsole) -> None:
        self.vm, self.name, self.ip, self.mac, self.console = vm, vm["name"], ip, mac, console

    async def resolves(self, other: Guest) -> None:
        """``nslookup`` of the other guest's short and qualified names answers its address."""
        for name in (other.name, f"{other.name}.lab.lan"):
            _, out = await self.console.run(f"nslookup {name}")
            answer = rf"Name:\s+{re.escape(other.name)}(\.lab\.lan)?\s+Address:\s+{other.ip}\b"
            assert re.search(answer, out), f"{self.name}: nslookup {name}:\n{out}"

    async def leases(self) -> None:
        """A DHCP exchange now (one-shot udhcpc, no script) gets the guest's own address."""
        rc, out = await self.console.run(
            "udhcpc -q -n -f -i eth0 -t 4 -T 2 -s /bin/true", timeout=40
        )
        assert rc == 0 and f"lease of {self.ip} obtained" in out, f"{self.name}: {out}"

    async def reaches_upstream(self, upstream: Upstream, public_ip: str) -> None:
        """Ping and a TCP connection to the upstream; the upstream saw the router's public
        address as the source."""
        rc, out = await self.console.run(f"ping -c 3 -W 2 {UPSTREAM_IP}", timeout=40)
        assert rc == 0, f"{self.name}: ping {UPSTREAM_IP}:\n{out}"
        seen = len(upstream.peers())
        rc, out = await self.console.run(f"nc -w 5 {UPSTREAM_IP} {UPSTREAM_PORT} </dev/null")
        assert rc == 0 and UPSTREAM_HELLO in out, f"{self.name}: nc:\n{out}"
        assert upstream.peers()[seen:] == [public_ip], upstream.peers()

    async def checks(self, other: Guest, upstream: Upstream, public_ip: str) -> None:
        await self.resolves(other)
        await self.leases()
        await self.reaches_upstream(upstream, public_ip)


def dnsmasq_pid(appliance_dir: Path) -> int | None:
    """The appliance's running dnsmasq (by its pid file and command line)."""
    try:
        pid = int((appliance_dir / "dnsmasq.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    conf = f"--conf-file={appliance_dir / 'dnsmasq.conf'}"
    return pid if alive(pid) and conf in cmdline(pid) else None


def snat_rule(ns: str) -> str:
    return in_ns(ns, "nft", "list", "table", "ip", NFT_TABLE, check=False)


async def test_homelab_private_network_on_libvirt() -> None:
    async with running_node("net") as lab:
        before = HostState.now()
        upstream = Upstream(lab.root)
        lab.owned.prefixes.add(upstream.prefix)
        try:
            upstream.create()
            upstream.start_listener()
            await lab.make_networks(upstream.host_end)
            await scenario(lab, upstream)
            await lab.delete_ours()
        finally:
            upstream.destroy()
        after = HostState.now()
        print(f"zsl objects of other sessions (tolerated): {unrelated(before, after, lab.owned)}")
        assert leftovers(before, after, lab.owned) == {}
        assert not lab.appliances_dir.exists() or not any(lab.appliances_dir.iterdir())


async def scenario(lab: Lab, upstream: Upstream) -> None:
    node = lab.node
    private = lab.networks["private"]
    alpha = await lab.create_vm("alpha")
    bravo = await lab.create_vm("bravo", systemTags=[f"staticIp::{private['uuid']}::{STATIC_IP}"])

    # IPAM's addresses.
    [alpha_nic] = await lab.nics(alpha["uuid"])
    [bravo_nic] = await lab.nics(bravo["uuid"])
    assert bravo_nic["ip"] == STATIC_IP
    assert IPv4Address(alpha_nic["ip"]) in IPv4Network("10.77.0.0/24")
    assert alpha_nic["ip"] not in ("10.77.0.1", STATIC_IP)
    assert alpha_nic["gateway"] == "10.77.0.1"

    # One router, made on demand, with the gateway on the guest side and an address of
    # the public range.
    [router] = await lab.routers()
    assert (router["state"], router["status"]) == ("Running", "Connected"), router
    nics = {n["metaData"]: n for n in await lab.nics(router["uuid"])}
    assert {n["type"] for n in nics.values()} == {"ApplianceVmNic"}
    assert nics["guest"]["ip"] == "10.77.0.1"
    public_ip = nics["public"]["ip"]
    assert IPv4Address("203.0.113.10") <= IPv4Address(public_ip) <= IPv4Address("203.0.113.20")
    ns = namespace_name(router["uuid"])
    assert router["namespace"] == ns
    assert ns in sh("ip", "netns", "list").split()
    for i, role in enumerate(("public", "private")):  # the public NIC first
        shown = sh("ip", "-o", "link", "show", veth_name(router["uuid"], i))
        assert f"master {bridge_name(lab.networks[role]['l2NetworkUuid'])} " in shown, shown
    appliance_dir = Path(router["agentTokenFile"]).parent
    assert dnsmasq_pid(appliance_dir) is not None
    assert f"snat to {public_ip}" in snat_rule(ns)

    # Each guest came up with exactly IPAM's address and its name.
    guests = {}
    for vm, nic in ((alpha, alpha_nic), (bravo, bravo_nic)):
        console, log = await lab.console(vm["uuid"])

        def up(log: Path = log) -> re.Match[str] | None:
            return UP_RE.search(log.read_text(errors="replace")) if log.exists() else None

        match = await wait_for(up, f"{vm['name']}'s TINY-GUEST line", timeout=180)
        assert (match.group(1), match.group(2)) == (nic["ip"], vm["name"]), match.group(0)
        await console.ready()
        guests[vm["name"]] = Guest(vm, nic["ip"], nic["mac"], console)
    a, b = guests["alpha"], guests["bravo"]

    # Names, leases and SNAT.
    await a.checks(b, upstream, public_ip)
    await b.checks(a, upstream, public_ip)

    # Repair 1: dnsmasq killed; the agent's watchdog starts it again.
    old = dnsmasq_pid(appliance_dir)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    await wait_for(
        lambda: (pid := dnsmasq_pid(appliance_dir)) and pid != old and pid,
        "dnsmasq restarted",
        timeout=30,
    )
    await a.resolves(b)
    await b.leases()

    # Repair 2: the SNAT table deleted by hand; the watchdog restores it.
    in_ns(ns, "nft", "delete", "table", "ip", NFT_TABLE)
    await wait_for(lambda: f"snat to {public_ip}" in snat_rule(ns), "the nft table restored", 30)
    await b.reaches_upstream(upstream, public_ip)

    # Repair 3: the agent stopped (SIGTERM, which also stops its dnsmasq), then killed
    # (SIGKILL, which leaves its dnsmasq behind); each time the ping tracker notices,
    # reconnects (a new agent) and replays DHCP, DNS and SNAT into it.
    await ok(node, "UpdateGlobalConfig", category="virtualRouter", name="ping.interval", value="1")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        router = await restarted(lab, router, sig)
        await a.checks(b, upstream, public_ip)
        await b.checks(a, upstream, public_ip)

    # The agent's own watchdog did the first two repairs.
    log = (appliance_dir / "vr-agent.log").read_text()
    assert "repaired: dnsmasq restarted" in log
    assert f"repaired: nft table {NFT_TABLE} restored" in log


async def restarted(lab: Lab, router: dict[str, Any], sig: signal.Signals) -> dict[str, Any]:
    """Signal the router's agent; the router once reconnected with a new agent into which
    DHCP, DNS and SNAT were replayed."""
    ns, appliance_dir = router["namespace"], Path(router["agentTokenFile"]).parent
    old_agent, old_dnsmasq = router["agentPid"], dnsmasq_pid(appliance_dir)
    assert old_agent and alive(old_agent)
    agent_log = appliance_dir / "vr-agent.log"  # every agent of the router appends to it
    offset = agent_log.stat().st_size
    os.kill(old_agent, sig)

    def replayed() -> bool:
        with agent_log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return all(f"{cmd} done" in text for cmd in ("/init", "/setdns", "/adddhcp", "/syncsnat"))

    async def reconnected() -> dict[str, Any] | None:
        [r] = await lab.routers()
        done = r["agentPid"] not in (None, old_agent) and r["status"] == "Connected"
        return r if done and alive(r["agentPid"]) and replayed() else None

    router = await wait_for(reconnected, f"the router reconnected after {sig.name}", 60)
    agent_pid = router["agentPid"]
    # A fresh agent has no state: it runs dnsmasq only once DHCP and DNS were replayed
    # (and stops the one its killed predecessor left).
    pid = await wait_for(
        lambda: (p := dnsmasq_pid(appliance_dir)) and ppid(p) == agent_pid and p,
        "dnsmasq run by the new agent",
        30,
    )
    assert pid != old_dnsmasq
    assert not old_dnsmasq or not alive(old_dnsmasq)
    hosts = (appliance_dir / "dhcp-hosts").read_text()
    nics = await ok(lab.node, "QueryVmNic", conditions=["type=VNIC"])
    assert all(nic["mac"] in hosts for nic in nics), hosts
    # SNAT is in the new agent's state: its watchdog restores a deleted table.
    public_ip = snat_ip(ns)
    in_ns(ns, "nft", "delete", "table", "ip", NFT_TABLE)
    await wait_for(lambda: f"snat to {public_ip}" in snat_rule(ns), "the nft table restored", 30)
    return dict(router)


def snat_ip(ns: str) -> str:
    match = re.search(r"snat to (\S+)", snat_rule(ns))
    assert match, snat_rule(ns)
    return match.group(1)

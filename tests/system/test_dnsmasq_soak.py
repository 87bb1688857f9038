"""dnsmasq stays up: 1,000 entry changes through the real agent, in a real appliance namespace,
with a guest that keeps talking DHCP and DNS to it, and not one dnsmasq restart.

What crashed dnsmasq 2.90 (virtual_router.dnsmasq's module doc): a ``set:`` tag in the hosts
file, a DHCP packet from that guest, then a SIGHUP; it happened after a few reloads.  This
test sends the guest's DHCP exchanges and /removedhcp's DHCPRELEASEs between the reloads, as
normal use does, and asserts the same dnsmasq process served all along (its pid, the agent's
restart count in /ping, no unexpected exit in the agent's log), then that the last entries
are what it serves: the guest's lease, names that were added, none that were removed.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts import virtual_router as p
from tests.virtual_router.helpers import VrClient, wait_for
from tests.virtual_router.lab import (
    DOMAIN,
    UPSTREAM_IP,
    AgentProcess,
    Lab,
    guest_entry,
    made_lab,
    random_mac,
    why_not,
)

pytestmark = pytest.mark.system

if why_not():
    pytest.skip(why_not(), allow_module_level=True)

CHANGES = 1000
GUEST_TALKS_EVERY = 50
"""Changes between two DHCP exchanges (and a DNS query) of the guest."""
SET_DNS_EVERY = 20
"""Every this many changes, one is a /setdns that changes the upstream servers."""
MAX_LIVE = 60


@pytest.fixture
async def soak() -> AsyncIterator[tuple[Lab, AgentProcess]]:
    with made_lab() as lab:
        agent = AgentProcess(lab)
        try:
            yield lab, agent
        finally:
            await agent.stop()


def upstream(lab: Lab, *addresses: str) -> dict[str, Any]:
    """A /setdns body: these upstream servers, DNS served on the guest interface."""
    return {"dns": [{"dnsAddress": a, "nicMac": lab.vr_guest_mac} for a in addresses]}


async def fail_with_the_exit(vr: VrClient, agent: AgentProcess, what: str) -> None:
    """Fail naming how dnsmasq exited (the agent's log) and the restarts /ping counts."""
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: "restarting dnsmasq" in agent.log(), 10, "the restart")
    exits = [line for line in agent.log().splitlines() if "exited unexpectedly" in line]
    status = (await vr.ok(p.PING))["dnsmasq"]
    raise AssertionError(f"{what}: {exits}; /ping: {status}")


async def test_a_thousand_entry_changes_never_restart_dnsmasq(
    soak: tuple[Lab, AgentProcess],
) -> None:
    lab, agent = soak
    rng = random.Random(6)
    vr = await agent.start()
    await vr.ok(p.INIT, {"uuid": "soak"})
    guest = guest_entry(lab, 10, lab.guest_mac, "guest")
    await vr.ok(p.ADD_DHCP, {"rebuild": True, "dhcpEntryList": [guest]})
    servers = [upstream(lab, UPSTREAM_IP), upstream(lab, UPSTREAM_IP, "203.0.113.2")]
    await vr.ok(p.SET_DNS, servers[0])
    pid = agent.dnsmasq_pid()
    assert pid is not None
    lease = lab.dhcp()  # from now on dnsmasq knows the guest: each packet links its tags
    assert lease["ip"] == lab.ip(10)
    lab.configure_guest(lease["ip"])

    live: dict[str, dict[str, Any]] = {}  # name -> entry
    removed: list[str] = []
    free = list(range(20, 250))
    changes = 0
    while changes < CHANGES:
        changes += 1
        if changes % SET_DNS_EVERY == 0:
            await vr.ok(p.SET_DNS, servers[changes // SET_DNS_EVERY % 2])
        elif live and (len(live) >= MAX_LIVE or rng.random() < 0.4):
            name = rng.choice(sorted(live))
            entry = live.pop(name)
            await vr.ok(p.REMOVE_DHCP, {"dhcpEntryList": [entry]})  # and a DHCPRELEASE
            free.append(int(entry["ip"].rsplit(".", 1)[1]))
            removed.append(name)
        else:
            host = free.pop(rng.randrange(len(free)))
            name = f"h{changes}"
            live[name] = guest_entry(lab, host, random_mac(), name)
            await vr.ok(p.ADD_DHCP, {"dhcpEntryList": [live[name]]})
        if changes % GUEST_TALKS_EVERY == 0:
            assert lab.dhcp()["ip"] == lab.ip(10), f"no lease after {changes} changes"
            assert lab.lookup(f"guest.{DOMAIN}") == [lab.ip(10)]
        if agent.dnsmasq_pid() != pid:
            await fail_with_the_exit(vr, agent, f"dnsmasq {pid} died after {changes} changes")

    status = (await vr.ok(p.PING))["dnsmasq"]
    assert status["pid"] == pid
    assert (status["restarts"], status["lastExit"]) == (0, "")
    assert status["reloads"] >= CHANGES - 1
    assert "exited unexpectedly" not in agent.log()

    # What it serves is the last state: the guest's lease, every live name, no removed one.
    assert lab.dhcp()["ip"] == lab.ip(10)
    last = max(live, key=lambda n: int(n[1:]))
    assert lab.lookup(f"{last}.{DOMAIN}") == [live[last]["ip"]]
    assert lab.lookup(f"{removed[-1]}.{DOMAIN}") == []
    hosts = (agent.data / "dhcp-hosts").read_text().splitlines()
    assert sorted(line.split(",")[0] for line in hosts) == sorted(
        [lab.guest_mac, *(e["mac"] for e in live.values())]
    )

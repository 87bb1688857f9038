"""The real agent in a real appliance namespace: DHCP to a guest namespace with busybox
udhcpc, names with busybox nslookup, SNAT to an "upstream" namespace, repairs, restarts and a
port-53 conflict.

The namespaces and the agent's process come from tests.virtual_router.lab, which removes
everything it made.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contracts import virtual_router as p
from contracts.names import dnsmasq_run_dir
from tests.virtual_router.helpers import dhcp_entry, snat, wait_for
from tests.virtual_router.lab import (
    BUSYBOX,
    DOMAIN,
    PUBLIC_IP,
    UPSTREAM_IP,
    AgentProcess,
    Lab,
    alive,
    guest_entry,
    in_ns,
    made_lab,
    random_mac,
    why_not,
)
from virtual_router.dnsmasq import unprivileged_user

pytestmark = pytest.mark.system

if why_not():
    pytest.skip(why_not(), allow_module_level=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with made_lab() as made:
        yield made


@pytest.fixture
async def agent(lab: Lab) -> AsyncIterator[AgentProcess]:
    process = AgentProcess(lab)
    try:
        yield process
    finally:
        await process.stop()


def nft_table(lab: Lab) -> str:
    return in_ns(lab.vr, "nft", "list", "table", "ip", p.NFT_TABLE, check=False)


def upstream_sees(lab: Lab) -> str:
    """Connect from the guest to a one-shot TCP server in the upstream namespace; the peer
    address that server saw."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.upstream, sys.executable, "-c",
         "import socket,sys\n"
         f"s=socket.create_server(('{UPSTREAM_IP}', 8080))\n"
         "print('ready', flush=True)\n"
         "s.settimeout(10)\n"
         "c,peer=s.accept()\n"
         "c.sendall(peer[0].encode())\n"
         "c.close()\n"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        return in_ns(
            lab.guest, sys.executable, "-c",
            "import socket\n"
            f"c=socket.create_connection(('{UPSTREAM_IP}', 8080), timeout=5)\n"
            "print(c.recv(64).decode())\n",
        ).strip()  # fmt: skip
    finally:
        server.kill()
        server.wait()


def uids(pid: int) -> list[int]:
    """The real, effective, saved and filesystem uids of ``pid`` (/proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(u) for u in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")


def assert_unprivileged(agent: AgentProcess) -> None:
    """dnsmasq runs as Debian's dnsmasq user (else nobody), never root; what it re-reads on
    SIGHUP is readable by its group only, behind the data dir's symlinks."""
    pid = agent.dnsmasq_pid()
    assert pid is not None
    run_as = unprivileged_user()
    assert uids(pid) == [pwd.getpwnam(run_as.user).pw_uid] * 4
    served = dnsmasq_run_dir(agent.data)
    assert (served.stat().st_mode & 0o777, served.stat().st_gid) == (0o750, run_as.gid)
    hosts = agent.data / "dhcp-hosts"
    assert hosts.is_symlink() and hosts.resolve() == served / "dhcp-hosts"
    assert (hosts.stat().st_mode & 0o777, hosts.stat().st_gid) == (0o640, run_as.gid)


async def test_dhcp_dns_snat_repairs_and_restart(lab: Lab, agent: AgentProcess) -> None:
    vr = await agent.start()
    assert (await vr.ok(p.PING))["uuid"] == ""
    await vr.ok(p.INIT, {"uuid": "vr-uuid-1"})
    vm1 = guest_entry(lab, 10, lab.guest_mac, "vm1")
    vm2 = guest_entry(lab, 20, random_mac(), "vm2")
    await vr.ok(p.ADD_DHCP, {"rebuild": True, "dhcpEntryList": [vm1, vm2]})

    # DHCP: exactly the reserved address, router, DNS and domain.
    lease = lab.dhcp()
    assert lease == {
        "ip": lab.ip(10),
        "router": lab.gateway,
        "dns": lab.gateway,
        "domain": DOMAIN,
        "subnet": "255.255.255.0",
        "hostname": "vm1",
    }
    assert lab.guest_mac in agent.leases()  # written by dnsmasq after it dropped root
    assert_unprivileged(agent)

    # DNS: both names, from the guest.
    lab.configure_guest(lease["ip"])
    assert lab.lookup(f"vm1.{DOMAIN}") == [lab.ip(10)]
    assert lab.lookup(f"vm2.{DOMAIN}") == [lab.ip(20)]
    assert lab.lookup(f"nobody.{DOMAIN}") == []

    # Unknown interfaces are refused and change nothing.
    bad = snat(lab.vr_guest_mac, lab.gateway, random_mac(), PUBLIC_IP)
    assert "'snats[0].publicNicMac': no interface with MAC" in await vr.fails(
        p.SET_SNAT, {"snats": [bad]}
    )
    assert nft_table(lab) == ""

    # SNAT: the upstream sees the appliance's public address.
    rule = snat(lab.vr_guest_mac, lab.gateway, lab.vr_public_mac, PUBLIC_IP)
    await vr.ok(p.SET_SNAT, {"snats": [rule]})
    assert f"snat to {PUBLIC_IP}" in nft_table(lab)
    in_ns(lab.guest, BUSYBOX, "ping", "-c", "1", "-W", "3", UPSTREAM_IP)
    assert upstream_sees(lab) == PUBLIC_IP

    # Repair: a killed dnsmasq is restarted by the watchdog and still serves.
    first_pid = agent.dnsmasq_pid()
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    await wait_for(
        lambda: agent.dnsmasq_pid() not in (None, first_pid), 10, "dnsmasq to be restarted"
    )
    await wait_for(lambda: "repaired: dnsmasq restarted" in agent.log(), 5, "the repair's log")
    assert f"dnsmasq {first_pid} exited unexpectedly (killed by SIGKILL)" in agent.log()
    status = (await vr.ok(p.PING))["dnsmasq"]
    assert (status["restarts"], status["lastExit"]) == (1, "killed by SIGKILL")
    assert status["pid"] == agent.dnsmasq_pid()
    assert lab.dhcp()["ip"] == lab.ip(10)
    assert lab.lookup(f"vm2.{DOMAIN}") == [lab.ip(20)]
    assert_unprivileged(agent)

    # Repair: a deleted table is restored, and /ping says so (unless the watchdog was first).
    expected_table = nft_table(lab)
    for _ in range(5):
        in_ns(lab.vr, "nft", "delete", "table", "ip", p.NFT_TABLE)
        repaired = (await vr.ok(p.PING))["repaired"]
        if repaired:
            break
    assert repaired == [f"nft table {p.NFT_TABLE} restored"]
    assert nft_table(lab) == expected_table
    assert upstream_sees(lab) == PUBLIC_IP

    # Agent restart: dnsmasq goes with it, the signature is gone until the next /init.
    dnsmasq_pid = agent.dnsmasq_pid()
    assert await agent.stop() == 0
    assert dnsmasq_pid is not None and not alive(dnsmasq_pid)
    assert not dnsmasq_run_dir(agent.data).exists()
    vr = await agent.start()
    fresh = {"pid": None, "restarts": 0, "lastExit": "", "reloads": 0}
    assert (await vr.ok(p.PING)) == {
        "success": True,
        "error": "",
        "uuid": "",
        "repaired": [],
        "dnsmasq": fresh,
    }
    await vr.ok(p.INIT, {"uuid": "vr-uuid-1"})
    await vr.ok(p.ADD_DHCP, {"dhcpEntryList": [vm1]})

    # Agent killed: the next one stops the dnsmasq it left behind (which holds the ports).
    orphan = agent.dnsmasq_pid()
    await agent.kill()
    assert orphan is not None and alive(orphan)
    vr = await agent.start()
    assert not alive(orphan)
    assert (await vr.ok(p.PING))["uuid"] == ""
    await vr.ok(p.INIT, {"uuid": "vr-uuid-1"})
    await vr.ok(p.ADD_DHCP, {"rebuild": True, "dhcpEntryList": [vm1, vm2]})
    await vr.ok(p.SYNC_SNAT, {"snats": [rule]})
    assert (await vr.ok(p.PING))["uuid"] == "vr-uuid-1"
    assert lab.dhcp()["ip"] == lab.ip(10)

    # /removedhcp: the lease is released and no longer offered; the other name still answers.
    await vr.ok(p.REMOVE_DHCP, {"dhcpEntryList": [vm1]})
    await wait_for(lambda: lab.guest_mac not in agent.leases(), 10, "the lease to be released")
    assert lab.dhcp(tries=2) == {}
    assert lab.lookup(f"vm1.{DOMAIN}") == []
    assert lab.lookup(f"vm2.{DOMAIN}") == [lab.ip(20)]

    await vr.ok(p.SYNC_SNAT, {"snats": []})
    assert nft_table(lab) == ""


async def test_port_53_taken_is_named_and_nothing_is_half_applied(
    lab: Lab, agent: AgentProcess
) -> None:
    blocker = subprocess.Popen(
        ["ip", "netns", "exec", lab.vr, sys.executable, "-c",
         "import socket,time\n"
         "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
         f"s.bind(('{lab.ip(1, True)}', 53))\n"
         "print('bound', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert blocker.stdout is not None and blocker.stdout.readline().strip() == "bound"
        vr = await agent.start()

        # The first /adddhcp on the blocked network fails and leaves nothing behind.
        blocked = dhcp_entry(lab.ip(10, True), lab.guest2_mac, lab.vr_guest2_mac)
        error = await vr.fails(p.ADD_DHCP, {"dhcpEntryList": [blocked]})
        assert f"{lab.ip(1, True)} port 53" in error and "already in use" in error
        assert agent.dnsmasq_pid() is None
        assert not (agent.data / "dhcp-hosts").exists()  # nothing served, nothing in /run
        assert not dnsmasq_run_dir(agent.data).exists()
        assert (await vr.ok(p.PING))["repaired"] == []

        # With a network being served, adding the blocked one fails and the old state stays.
        vm1 = guest_entry(lab, 10, lab.guest_mac, "vm1")
        await vr.ok(p.ADD_DHCP, {"dhcpEntryList": [vm1]})
        error = await vr.fails(p.ADD_DHCP, {"dhcpEntryList": [blocked]})
        assert f"{lab.ip(1, True)} port 53" in error
        assert lab.guest2_mac not in (agent.data / "dhcp-hosts").read_text()
        assert "interface=vg1" not in (agent.data / "dnsmasq.conf").read_text()
        assert agent.dnsmasq_pid() is not None
        assert lab.dhcp()["ip"] == lab.ip(10)
        assert (await vr.ok(p.PING))["repaired"] == []
    finally:
        blocker.kill()
        blocker.wait()

    # Once the port is free the same command succeeds.
    await vr.ok(p.ADD_DHCP, {"dhcpEntryList": [blocked]})
    assert lab.dhcp("ge1")["ip"] == lab.ip(10, True)


async def test_a_guest_off_its_default_l3_network_gets_no_router(
    lab: Lab, agent: AgentProcess
) -> None:
    """Options come by the network's tag, and by a tag of its own (set in the conf) for a
    guest whose options differ: the one thing the hosts file no longer carries."""
    vr = await agent.start()
    first = guest_entry(lab, 10, lab.guest_mac, "vm1")
    other = dhcp_entry(lab.ip(20, True), random_mac(), lab.vr_guest2_mac, hostname="vm2")
    second = dhcp_entry(lab.ip(30, True), lab.guest2_mac, lab.vr_guest2_mac, default=False)
    await vr.ok(p.ADD_DHCP, {"rebuild": True, "dhcpEntryList": [first, other, second]})
    assert "dhcp-mac=set:zsl-own," + lab.guest2_mac in (agent.data / "dnsmasq.conf").read_text()

    assert lab.dhcp("ge1") == {
        "ip": lab.ip(30, True),
        "router": "",
        "dns": "",
        "domain": "",
        "subnet": "255.255.255.0",
        "hostname": "",
    }
    lease = lab.dhcp("ge0")
    assert (lease["router"], lease["dns"], lease["domain"]) == (lab.gateway, lab.gateway, DOMAIN)

    # Now its default network: the network's options, and nothing of its own in the conf.
    second = dhcp_entry(lab.ip(30, True), lab.guest2_mac, lab.vr_guest2_mac, hostname="vm3")
    await vr.ok(p.ADD_DHCP, {"dhcpEntryList": [second]})
    assert "dhcp-mac=" not in (agent.data / "dnsmasq.conf").read_text()
    lease = lab.dhcp("ge1")
    assert (lease["ip"], lease["router"], lease["hostname"]) == (
        lab.ip(30, True),
        lab.ip(1, True),
        "vm3",
    )
    assert (await vr.ok(p.PING))["dnsmasq"]["restarts"] == 0

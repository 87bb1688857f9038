"""Issue 15's acceptance for port forwarding and EIPs on the real host (qemu:///system,
namespaces, nftables): from the host, a VIP's port reaches an HTTP server in a tiny
guest (a source outside the rule's allowedCidr is refused, one inside admitted; the
tiny guest's busybox has no UDP server, so UDP rules are checked by the kernel's own
acceptance of the rendered ruleset in test_vr_agent);
an upstream namespace reaches a guest through its EIP and sees the EIP as the guest's
source; a router agent killed and replaced gets every VIP, rule and EIP back, rule by
rule; deleting everything leaves the host as it was."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
from typing import Any

import pytest
from zsl_vip.contract import NFT_TABLE

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
    in_ns,
    leftovers,
    running_node,
    sh,
    unrelated,
    wait_for,
    why_not_libvirt,
)

pytestmark = pytest.mark.system
if why := why_not_libvirt("namespaces, bridges, nftables"):
    pytest.skip(why, allow_module_level=True)

MARKER = "ZSL-PF-HELLO"


async def web_guest(lab: Lab, name: str) -> tuple[dict[str, Any], dict[str, Any], GuestConsole]:
    """A tiny guest serving MARKER on port 80 (busybox httpd); (vm, nic, console)."""
    vm = await lab.create_vm(name)
    [nic] = await lab.nics(vm["uuid"])
    console, log = await lab.console(vm["uuid"])

    def up() -> re.Match[str] | None:
        return UP_RE.search(log.read_text(errors="replace")) if log.exists() else None

    await wait_for(up, f"{name}'s TINY-GUEST line", timeout=180)
    await console.ready()
    page = f"echo {MARKER}-{name} > /tmp/www/index.html"
    rc, out = await console.run(f"mkdir -p /tmp/www && {page} && httpd -p 80 -h /tmp/www")
    assert rc == 0, out
    return vm, nic, console


FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read())"


def wget(url: str, ns: str | None = None) -> tuple[int, str]:
    """GET ``url`` from the host or a namespace (Python's urllib: the host's busybox wget
    crashes): (status, output and errors)."""
    argv = [sys.executable, "-c", FETCH, url]
    if ns:
        argv = ["ip", "netns", "exec", ns, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout + done.stderr


async def served(url: str, text: str, ns: str | None = None) -> None:
    await wait_for(lambda: text in wget(url, ns)[1], f"{url} to serve {text}", timeout=30)


class Probe:
    """A namespace ``zsl-p<hex>`` with one address on a bridge: a client the host is not."""

    def __init__(self, bridge: str, address: str) -> None:
        self.ns = f"zsl-p{secrets.token_hex(3)}"
        self.bridge, self.address = bridge, address

    def create(self) -> None:
        host_end, peer = f"{self.ns}h", f"{self.ns}u"
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", self.ns)
        sh("ip", "-n", self.ns, "addr", "add", self.address, "dev", peer)
        sh("ip", "-n", self.ns, "link", "set", peer, "up")
        sh("ip", "link", "set", host_end, "master", self.bridge, "up")

    def destroy(self) -> None:
        sh("ip", "netns", "del", self.ns, check=False)
        sh("ip", "link", "del", f"{self.ns}h", check=False)


def vip_table(ns: str) -> list[tuple[str, str, str]]:
    """The router's VIP table, rule by rule: (chain, comment, expression) without handles."""
    out = in_ns(ns, "nft", "-j", "list", "table", "ip", NFT_TABLE, check=False)
    rules = [i["rule"] for i in json.loads(out or '{"nftables": []}')["nftables"] if "rule" in i]
    return sorted((r["chain"], r.get("comment", ""), json.dumps(r["expr"])) for r in rules)


def vip_addresses(ns: str) -> set[str]:
    out = in_ns(ns, "ip", "-4", "-o", "addr", "show")
    return {m for m in re.findall(r"inet (\S+/32)", out)}


async def replayed_after_kill(lab: Lab) -> None:
    """Kill the router's agent: the reconnect replays the same table and addresses."""
    [router] = await lab.routers()
    ns, old = router["namespace"], router["agentPid"]
    table, addresses = vip_table(ns), vip_addresses(ns)
    assert table and addresses
    os.kill(old, signal.SIGKILL)

    async def back() -> bool:
        [r] = await lab.routers()
        fresh = r["agentPid"] not in (None, old) and r["status"] == "Connected"
        return fresh and alive(r["agentPid"]) and vip_table(ns) == table

    await wait_for(back, "the router's new agent with the same VIP table", timeout=90)
    assert vip_addresses(ns) == addresses
    # The new agent keeps it: a deleted table comes back by its watchdog.
    in_ns(ns, "nft", "delete", "table", "ip", NFT_TABLE)
    await wait_for(lambda: vip_table(ns) == table, "the VIP table restored", timeout=30)


async def test_port_forwarding_from_the_host() -> None:
    async with running_node("pf") as lab:
        before = HostState.now()
        node = lab.node
        public = (await ok(node, "QueryL3Network", conditions=["category=Public"]))[0]
        [private] = await ok(node, "QueryL3Network", conditions=["name=private"])
        lab.networks = {"public": public, "private": private}
        services = await ok(
            node, "QueryNetworkServiceL3NetworkRef", conditions=[f"l3NetworkUuid={private['uuid']}"]
        )
        # The bootstrap gave the default private network port forwarding and EIPs.
        assert {"PortForwarding", "Eip"} <= {s["networkServiceType"] for s in services}
        _vm, nic, _console = await web_guest(lab, "web")
        vip = await ok(node, "CreateVip", name="web", l3NetworkUuid=public["uuid"])
        await ok(
            node,
            "CreatePortForwardingRule",
            name="http",
            vipUuid=vip["uuid"],
            vipPortStart=8080,
            privatePortStart=80,
            protocolType="TCP",
            vmNicUuid=nic["uuid"],
        )
        await served(f"http://{vip['ip']}:8080/", f"{MARKER}-web")  # from the host

        # A rule for one outside client: the host is refused, that client admitted.
        probe_vip = await ok(node, "CreateVip", name="probe-address", l3NetworkUuid=public["uuid"])
        [l2] = await ok(node, "QueryL2Network", conditions=[f"uuid={public['l2NetworkUuid']}"])
        prefix = (await ok(node, "QueryIpRange", conditions=[f"l3NetworkUuid={public['uuid']}"]))[0]
        probe = Probe(l2["bridgeName"], f"{probe_vip['ip']}/{prefix['prefixLen']}")
        lab.owned.prefixes.add(probe.ns)
        try:
            probe.create()
            await ok(
                node,
                "CreatePortForwardingRule",
                name="only-probe",
                vipUuid=vip["uuid"],
                vipPortStart=8081,
                privatePortStart=80,
                protocolType="TCP",
                allowedCidr=f"{probe_vip['ip']}/32",
                vmNicUuid=nic["uuid"],
            )
            await served(f"http://{vip['ip']}:8081/", f"{MARKER}-web", ns=probe.ns)
            rc, out = wget(f"http://{vip['ip']}:8081/")
            assert rc != 0 and "refused" in out.lower(), out
        finally:
            probe.destroy()

        await replayed_after_kill(lab)
        await served(f"http://{vip['ip']}:8080/", f"{MARKER}-web")
        lab.networks = {}  # the bootstrap's networks stay until the lab goes
        await lab.delete_ours()
        after = HostState.now()
        print(f"zsl objects of other sessions (tolerated): {unrelated(before, after, lab.owned)}")
        assert leftovers(before, after, lab.owned) == {}


async def test_an_eip_is_the_guests_address_both_ways() -> None:
    async with running_node("eip") as lab:
        before = HostState.now()
        node = lab.node
        upstream = Upstream(lab.root)
        lab.owned.prefixes.add(upstream.prefix)
        try:
            upstream.create()
            upstream.start_listener()
            await lab.make_networks(upstream.host_end)
            [provider] = await ok(
                node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"]
            )
            await ok(
                node,
                "AttachNetworkServiceToL3Network",
                l3NetworkUuid=lab.networks["private"]["uuid"],
                networkServices={provider["uuid"]: ["Eip", "PortForwarding"]},
            )
            _vm, nic, console = await web_guest(lab, "db")
            public = lab.networks["public"]["uuid"]
            vip = await ok(node, "CreateVip", name="db", l3NetworkUuid=public)
            eip = await ok(node, "CreateEip", name="db", vipUuid=vip["uuid"], vmNicUuid=nic["uuid"])
            await served(f"http://{vip['ip']}/", f"{MARKER}-db", ns=upstream.ns)  # inbound

            async def source_seen(expected: str) -> bool:
                _rc, out = await console.run(f"nc -w 5 {UPSTREAM_IP} {UPSTREAM_PORT} </dev/null")
                return UPSTREAM_HELLO in out and upstream.peers()[-1:] == [expected]

            await wait_for(lambda: source_seen(vip["ip"]), "the EIP as the guest's source", 60)

            # A port-forwarding rule beside it (another VIP), then the agent is replaced.
            pf_vip = await ok(node, "CreateVip", name="pf", l3NetworkUuid=public)
            await ok(
                node,
                "CreatePortForwardingRule",
                name="http",
                vipUuid=pf_vip["uuid"],
                vipPortStart=8080,
                privatePortStart=80,
                protocolType="TCP",
                vmNicUuid=nic["uuid"],
            )
            await served(f"http://{pf_vip['ip']}:8080/", f"{MARKER}-db", ns=upstream.ns)
            await replayed_after_kill(lab)
            await served(f"http://{vip['ip']}/", f"{MARKER}-db", ns=upstream.ns)

            # Detached: the guest leaves as the router's SNAT address and is not reached.
            await ok(node, "DetachEip", uuid=eip["uuid"])
            [router] = await lab.routers()
            router_ip = next(
                n["ip"] for n in await lab.nics(router["uuid"]) if n["metaData"] == "public"
            )
            await wait_for(lambda: source_seen(router_ip), "the router's address as source", 60)
            assert wget(f"http://{vip['ip']}/", upstream.ns)[0] != 0
            await lab.delete_ours()
        finally:
            upstream.destroy()
        after = HostState.now()
        print(f"zsl objects of other sessions (tolerated): {unrelated(before, after, lab.owned)}")
        assert leftovers(before, after, lab.owned) == {}

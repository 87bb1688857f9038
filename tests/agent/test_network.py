"""Bridges and host NAT on the real host: real links, real ``nft``, real routes.

Every object is named ``zsl…`` with a random suffix and removed in the fixture's
``finally``.  The interface carrying the host's default route is only ever named
in a request that must be refused; it is never enslaved.  Traffic goes only
between namespaces the tests make (an "upstream" one on 203.0.113.0/24).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from agent.app import Agent
from agent.network import host_nat, links
from agent.network.base import ApplianceNic, ApplianceSpec
from agent.network.host import HostNetwork
from agent.simulator_backend import SimulatorBackend
from agentkit.errors import AgentError
from contracts.names import namespace_name, veth_name
from tests.agent.helpers import AgentCaller
from tests.agent.net_helpers import (
    ROOT,
    HostObjects,
    free_subnet,
    stand_in_command,
    suffix,
    threaded,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(not ROOT, reason="needs root (links, namespaces, nftables)"),
]

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@pytest.fixture
def host() -> Iterator[HostObjects]:
    objects = HostObjects()
    try:
        yield objects
    finally:
        objects.clean()


@pytest.fixture
def nat_host(host: HostObjects) -> HostObjects:
    """Host NAT tests share the table with any other lab on the host: each test's rules
    carry its own lab (its temp data dir's), and only those are removed at the end."""
    host.ip_forward = IP_FORWARD.read_text()
    return host


def host_network(host: HostObjects) -> Iterator[HostNetwork]:
    """A short data dir: an appliance's socket path must fit sun_path (108 bytes)."""
    data_dir = Path(tempfile.mkdtemp(prefix="zsl-test-"))
    network = HostNetwork(data_dir / "agent")
    host.labs.append(network.lab)
    try:
        yield network
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def net(host: HostObjects) -> Iterator[HostNetwork]:
    yield from host_network(host)


@pytest.fixture
def other_lab(host: HostObjects) -> Iterator[HostNetwork]:
    """A second lab's network driver on the same host."""
    yield from host_network(host)


@threaded
def link(name: str) -> links.Link | None:
    with IPRoute() as ipr:
        return links.find(ipr, name)


@threaded
def master_name(name: str) -> str:
    with IPRoute() as ipr:
        found = links.find(ipr, name)
        assert found is not None, name
        master = links.master_of(found)
        return links.index_name(ipr, master) if master else ""


@threaded
def addresses(name: str) -> set[str]:
    with IPRoute() as ipr:
        found = links.find(ipr, name)
        assert found is not None
        return {
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.addr("dump", family=2)
            if a["index"] == found["index"]
        }


@threaded
def default_route_interface() -> str:
    with IPRoute() as ipr:
        indexes = links.default_route_ifindexes(ipr)
        return links.index_name(ipr, min(indexes)) if indexes else ""


# -- bridges -------------------------------------------------------------------------------
async def test_bridge_create_and_delete_are_idempotent(host: HostObjects, net: HostNetwork) -> None:
    name = host.bridge()
    assert await net.bridge_check([name]) == [name]
    await net.bridge_create(name)
    await net.bridge_create(name)
    bridge = link(name)
    assert bridge is not None and links.kind_of(bridge) == "bridge" and links.is_up(bridge)
    assert await net.bridge_check([name]) == []
    await net.bridge_delete(name)
    await net.bridge_delete(name)
    assert link(name) is None
    assert await net.bridge_check([name]) == [name]


async def test_a_bridge_an_agent_died_making_is_finished_by_the_repeat(
    host: HostObjects, net: HostNetwork
) -> None:
    """Killed between making the bridge and pinning its MAC (and setting it up): the repeated
    create finishes the job instead of taking the half-made bridge as done."""
    name = host.bridge()
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    assert Path(f"/sys/class/net/{name}/addr_assign_type").read_text().strip() != "3"
    await net.bridge_create(name)
    bridge = link(name)
    assert bridge is not None and links.is_up(bridge)
    # 3: NET_ADDR_SET, the MAC was set and no longer follows the lowest port's.
    assert Path(f"/sys/class/net/{name}/addr_assign_type").read_text().strip() == "3"
    await net.bridge_delete(name)


async def test_a_given_interface_is_enslaved_then_released_not_deleted(
    host: HostObjects, net: HostNetwork
) -> None:
    port = host.port()
    first, second = host.bridge(), host.bridge()
    await net.bridge_create(first, port)
    await net.bridge_create(first, port)  # idempotent: already its port
    assert master_name(port) == first
    port_link = link(port)
    assert port_link is not None and links.is_up(port_link)

    with pytest.raises(AgentError, match=f"{port} is already enslaved to {first}"):
        await net.bridge_create(second, port)
    assert link(second) is None  # refused before anything was made

    await net.bridge_delete(first)
    assert link(first) is None
    assert link(port) is not None and master_name(port) == ""


async def test_the_default_route_interface_is_refused(host: HostObjects, net: HostNetwork) -> None:
    uplink = default_route_interface()
    if not uplink:
        pytest.skip("this host has no default route")
    name = host.bridge()
    with pytest.raises(AgentError) as refused:
        await net.bridge_create(name, uplink)
    assert str(refused.value) == (
        f"{uplink} carries the host's default route; pass allowDefaultRouteInterface to enslave it"
    )
    assert link(name) is None
    assert master_name(uplink) == ""


async def test_clashes_and_missing_interfaces_are_refused(
    host: HostObjects, net: HostNetwork
) -> None:
    clash = host.port(name=f"zslbr-t{suffix()}")
    with pytest.raises(AgentError, match=f"bridge name {clash} is taken by a veth link"):
        await net.bridge_create(clash)
    with pytest.raises(AgentError, match=f"{clash} is a veth link, not a bridge"):
        await net.bridge_delete(clash)
    found = link(clash)
    assert found is not None and links.kind_of(found) == "veth"  # untouched
    assert await net.bridge_check([clash]) == [clash]

    name = host.bridge()
    with pytest.raises(AgentError, match="physical interface zsltnothere does not exist"):
        await net.bridge_create(name, "zsltnothere")
    other = host.bridge()
    await net.bridge_create(other)
    with pytest.raises(AgentError, match=f"{other} is itself a bridge"):
        await net.bridge_create(name, other)
    assert link(name) is None


async def test_bridges_through_the_http_protocol(host: HostObjects, tmp_path: Path) -> None:
    """The commands reach the real network part (a simulator agent given a HostNetwork)."""
    backend = SimulatorBackend()
    backend.network = HostNetwork(tmp_path / "agent")
    agent = Agent(backend, tmp_path / "agent")
    await agent.start("127.0.0.1", 0)
    caller = AgentCaller(f"http://127.0.0.1:{agent.port}", agent.token)
    try:
        name = host.bridge()
        answer = await caller.ok("/network/bridge/create", {"bridgeName": name})
        assert answer["bridgeName"] == name
        check = await caller.ok("/network/bridge/check", {"bridgeNames": [name, "zslbr-nothere"]})
        assert check["missing"] == ["zslbr-nothere"]
        await caller.ok("/network/bridge/delete", {"bridgeName": name})
        assert link(name) is None
        refused = await caller.call("/network/bridge/create", {"bridgeName": "eth0"})
        assert refused["success"] is False and "'bridgeName'" in refused["error"]
    finally:
        await caller.close()
        await agent.stop()


# -- routes ----------------------------------------------------------------------------------
@threaded
def add_route(destination: str, gateway: str, interface: str) -> None:
    with IPRoute() as ipr:
        ipr.route("add", dst=destination, gateway=gateway, oif=ipr.link_lookup(ifname=interface)[0])


async def test_host_routes_through_the_http_protocol(host: HostObjects, tmp_path: Path) -> None:
    """A veth's link route and a route through a gateway on it are listed with the veth's
    name; no default route is."""
    port = host.port("198.51.100.1/24")
    beyond = str(free_subnet())
    add_route(beyond, "198.51.100.2", port)  # goes with the veth
    backend = SimulatorBackend()
    backend.network = HostNetwork(tmp_path / "agent")
    agent = Agent(backend, tmp_path / "agent")
    await agent.start("127.0.0.1", 0)
    caller = AgentCaller(f"http://127.0.0.1:{agent.port}", agent.token)
    try:
        routes = (await caller.ok("/network/routes", {}))["routes"]
        assert {"destination": "198.51.100.0/24", "interface": port, "gateway": ""} in routes
        assert {"destination": beyond, "interface": port, "gateway": "198.51.100.2"} in routes
        for route in routes:
            assert set(route) == {"destination", "interface", "gateway"}
            assert ipaddress.IPv4Network(route["destination"]).prefixlen > 0
    finally:
        await caller.close()
        await agent.stop()


@threaded
def routes_in(ns: str) -> set[tuple[str, str, str]]:
    """(destination, interface, gateway) of ``ns``'s routes, after making two veths in it,
    a multipath route over both, a blackhole and a default route."""
    with IPRoute(netns=ns) as nsr:
        nsr.link("add", ifname="zslta", kind="veth", peer="zsltb")
        for i, name in enumerate(("zslta", "zsltb")):
            index = nsr.link_lookup(ifname=name)[0]
            nsr.addr("add", index=index, address=f"198.51.{100 + i}.1", prefixlen=24)
            nsr.link("set", index=index, state="up")
        nsr.route(
            "add",
            dst="203.0.113.0/24",
            multipath=[
                {"gateway": "198.51.100.2", "oif": nsr.link_lookup(ifname="zslta")[0]},
                {"gateway": "198.51.101.2", "oif": nsr.link_lookup(ifname="zsltb")[0]},
            ],
        )
        nsr.route("add", dst="10.99.0.0/16", type="blackhole")
        nsr.route("add", dst="0.0.0.0/0", gateway="198.51.100.2")
        return {
            (str(r.network), links.index_name(nsr, r.oif) if r.oif else "", r.gateway)
            for r in links.ipv4_routes(nsr)
        }


async def test_ipv4_routes_lists_each_next_hop(host: HostObjects) -> None:
    assert routes_in(host.namespace()) == {
        ("10.99.0.0/16", "", ""),
        ("198.51.100.0/24", "zslta", ""),
        ("198.51.101.0/24", "zsltb", ""),
        ("203.0.113.0/24", "zslta", "198.51.100.2"),
        ("203.0.113.0/24", "zsltb", "198.51.101.2"),
    }


# -- host NAT --------------------------------------------------------------------------------
def nat_table(lab: str | None = None) -> dict[str, object] | None:
    """The table's chains and rules (of ``lab`` only, if given); None without a table."""
    done = subprocess.run(
        ["nft", "-j", "list", "table", host_nat.FAMILY, host_nat.TABLE],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return None
    items = json.loads(done.stdout)["nftables"]
    chains = {i["chain"]["name"]: i["chain"] for i in items if "chain" in i}
    rules = [i["rule"] for i in items if "rule" in i]
    if lab is not None:
        rules = [r for r in rules if f" lab={lab} " in r.get("comment", "")]
    return {"chains": chains, "rules": rules}


def lab_rules(lab: str) -> list[dict[str, object]]:
    table = nat_table(lab)
    return [] if table is None else table["rules"]  # type: ignore[return-value]


def bridge_in(rule: dict[str, object]) -> str:
    return next(w for w in str(rule["comment"]).split() if w.startswith("zslbr-"))


def masquerades(table: dict[str, object]) -> set[tuple[str, str]]:
    """(source network, bridge named in its comment) of every masquerade rule; each leaves
    the project's bridges (``zslbr-*``) alone."""
    found = set()
    for rule in table["rules"]:  # type: ignore[attr-defined]
        if rule["chain"] != "postrouting":
            continue
        net, bridge = "", ""
        for expr in rule["expr"]:
            match = expr.get("match")
            if match and match["left"].get("payload", {}).get("field") == "saddr":
                prefix = match["right"]["prefix"]
                net = f"{prefix['addr']}/{prefix['len']}"
            if match and match["left"].get("meta", {}).get("key") == "oifname":
                assert match["op"] == "!=" and match["right"] in ("zslbr-*", bridge_in(rule))
        bridge = bridge_in(rule)
        assert any("masquerade" in expr for expr in rule["expr"])
        found.add((net, bridge))
    return found


async def test_host_nat_set_and_remove(nat_host: HostObjects, net: HostNetwork) -> None:
    lab = net.lab
    first, second = nat_host.bridge(), nat_host.bridge()
    await net.bridge_create(first)
    await net.bridge_create(second)
    net1, net2 = free_subnet(), free_subnet()
    gw1 = ipaddress.IPv4Interface(f"{net1[1]}/{net1.prefixlen}")
    gw2 = ipaddress.IPv4Interface(f"{net2[1]}/{net2.prefixlen}")

    await net.hostnat_set(first, gw1)
    await net.hostnat_set(first, gw1)  # idempotent
    assert str(gw1) in addresses(first)
    assert IP_FORWARD.read_text().strip() == "1"
    table = nat_table(lab)
    assert table is not None
    chains = table["chains"]  # type: ignore[index]
    assert chains["forward"]["hook"] == "forward" and chains["forward"]["type"] == "filter"
    assert chains["forward"]["policy"] == "accept"
    assert chains["postrouting"]["hook"] == "postrouting" and chains["postrouting"]["type"] == "nat"
    assert chains["input"]["hook"] == "input" and chains["input"]["type"] == "filter"
    assert chains["input"]["policy"] == "accept"
    assert masquerades(table) == {(str(net1), first)}

    await net.hostnat_set(second, gw2)
    table = nat_table(lab)
    assert table is not None and masquerades(table) == {(str(net1), first), (str(net2), second)}
    rules = table["rules"]  # type: ignore[index]
    accepted = json.dumps([r for r in rules if r["chain"] == "forward"])
    assert first in accepted and second in accepted
    assert host_nat.read_entries(lab) == sorted(
        [host_nat.HostNatEntry(first, gw1), host_nat.HostNatEntry(second, gw2)]
    )

    await net.hostnat_remove(first, gw1)
    assert str(gw1) not in addresses(first)
    table = nat_table(lab)
    assert table is not None and masquerades(table) == {(str(net2), second)}
    assert first not in json.dumps(table["rules"])  # type: ignore[index]
    await net.hostnat_remove(first, gw1)  # idempotent
    await net.hostnat_remove(second, gw2)
    assert lab_rules(lab) == []
    # The last entry of the last lab takes the table with it (other labs may hold rules).
    assert nat_table() is None or host_nat.read_rules()
    assert addresses(second) == set()


async def test_host_nat_refuses_a_cidr_overlapping_a_host_route(
    nat_host: HostObjects, net: HostNetwork
) -> None:
    wide = free_subnet(16)
    port = nat_host.port(f"{wide[1]}/16")
    bridge = nat_host.bridge()
    await net.bridge_create(bridge)
    inside = ipaddress.IPv4Interface(f"{wide[5 * 256 + 1]}/24")
    with pytest.raises(AgentError) as refused:
        await net.hostnat_set(bridge, inside)
    assert str(refused.value) == f"{inside.network} overlaps the host route {wide} via {port}"
    assert addresses(bridge) == set()
    assert lab_rules(net.lab) == []

    with pytest.raises(AgentError, match="bridge zslbr-tnothere1 does not exist"):
        await net.hostnat_set("zslbr-tnothere1", ipaddress.IPv4Interface("10.1.2.1/24"))


SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", PORT))
s.listen()
print("listening", s.getsockname()[1], flush=True)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode())
    c.close()
"""
"""Answers each connection with the peer's address; ``PORT`` 0 for any free port."""

CLIENT = """
import socket
s = socket.socket()
s.settimeout(1.0)
try:
    s.connect((ADDRESS, PORT))
    print(s.recv(100).decode())
except OSError as exc:
    print("failed:", exc)
"""


def server_code(port: int = 8099) -> str:
    return SERVER.replace("PORT", str(port))


async def listening(proc: subprocess.Popen[bytes]) -> int:
    """Wait for a SERVER to listen; its port."""
    assert proc.stdout is not None
    line = (await asyncio.to_thread(proc.stdout.readline)).decode().split()
    assert line[:1] == ["listening"], line
    return int(line[1])


async def connect_from(host: HostObjects, ns: str, address: str, port: int = 8099) -> str:
    """Connect from namespace ``ns`` (the host's when "") to ``address``:``port``; what the
    server answered, or ``failed: …``."""
    code = CLIENT.replace("ADDRESS", repr(address)).replace("PORT", str(port))
    proc = host.run_in(ns, code) if ns else host.run_on_host(code)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=10)
    return out.decode().strip()


async def test_host_nat_traffic_and_a_foreign_forward_drop(
    nat_host: HostObjects, net: HostNetwork
) -> None:
    """A guest on the public bridge reaches an "upstream" namespace masqueraded; then a
    Docker-like table whose forward chain drops (policy drop) breaks it despite this
    table's accept: nftables needs every base chain on a hook to accept a packet."""
    public = nat_host.bridge()
    await net.bridge_create(public)
    subnet = free_subnet()
    await net.hostnat_set(public, ipaddress.IPv4Interface(f"{subnet[1]}/24"))
    guest = nat_host.appliance()  # a namespace on the public bridge: the "guest"
    spec = ApplianceSpec(
        guest,
        (ApplianceNic(public, "52:54:00:aa:00:09", str(subnet[10]), 24, "public"),),
        default_gateway=str(subnet[1]),
    )
    await net.appliance_create(spec, stand_in_command())
    upstream = nat_host.upstream("203.0.113.1/24", "203.0.113.2/24")
    await listening(nat_host.run_in(upstream, server_code()))

    # The upstream side sees the host's address, not the guest's: masqueraded.
    assert await connect_from(nat_host, namespace_name(guest), "203.0.113.2") == "203.0.113.1"

    nat_host.table(
        "ip",
        "zsl_test_dropfwd",
        "table ip zsl_test_dropfwd {\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy drop;\n"
        "  }\n"
        "}\n",
    )
    answer = await connect_from(nat_host, namespace_name(guest), "203.0.113.2")
    assert answer.startswith("failed"), answer  # the documented limitation
    await net.appliance_destroy(guest)


async def public_guest(host: HostObjects, net: HostNetwork) -> tuple[str, str, str]:
    """A host-NAT public bridge and a "guest" namespace on it (an appliance with a stand-in
    agent, as the router's public NIC is): (namespace, guest address, gateway address)."""
    public = host.bridge()
    await net.bridge_create(public)
    subnet = free_subnet()
    await net.hostnat_set(public, ipaddress.IPv4Interface(f"{subnet[1]}/24"))
    guest = host.appliance()
    spec = ApplianceSpec(
        guest,
        (ApplianceNic(public, "52:54:00:aa:00:0a", str(subnet[10]), 24, "public"),),
        default_gateway=str(subnet[1]),
    )
    await net.appliance_create(spec, stand_in_command())
    return namespace_name(guest), str(subnet[10]), str(subnet[1])


async def test_guests_reach_no_host_service_but_the_world_through_the_nat(
    nat_host: HostObjects, net: HostNetwork
) -> None:
    """A TCP service of the host on 0.0.0.0 is out of a host-NAT guest's reach, on the
    gateway address and on any other address of the host; the NAT to the outside and
    connections the host opens to the guest still work."""
    ns, guest_ip, gateway = await public_guest(nat_host, net)
    port = await listening(nat_host.run_on_host(server_code(0)))
    upstream = nat_host.upstream("203.0.113.1/24", "203.0.113.2/24")
    await listening(nat_host.run_in(upstream, server_code()))

    assert not (await connect_from(nat_host, "", gateway, port)).startswith("failed")  # it runs
    assert (await connect_from(nat_host, ns, gateway, port)).startswith("failed")
    assert (await connect_from(nat_host, ns, "203.0.113.1", port)).startswith("failed")
    # What the product needs: out through the NAT, and replies to the host's connections.
    assert await connect_from(nat_host, ns, "203.0.113.2") == "203.0.113.1"
    await listening(nat_host.run_in(ns, server_code()))
    assert await connect_from(nat_host, "", guest_ip) == gateway
    rules = json.dumps([r for r in lab_rules(net.lab) if r["chain"] == "input"])
    assert '"drop"' in rules and "established" in rules


def rules_by_handle(lab: str) -> dict[int, str]:
    return {int(r["handle"]): json.dumps(r, sort_keys=True) for r in lab_rules(lab)}  # type: ignore[arg-type]


async def test_two_labs_on_one_host_keep_each_others_rules(
    nat_host: HostObjects, net: HostNetwork, other_lab: HostNetwork
) -> None:
    assert net.lab != other_lab.lab
    mine, theirs, legacy = nat_host.bridge(), nat_host.bridge(), nat_host.bridge()
    for bridge in (mine, theirs, legacy):
        await net.bridge_create(bridge)
    net1, net2, net3 = free_subnet(), free_subnet(), free_subnet()
    gw1 = ipaddress.IPv4Interface(f"{net1[1]}/24")
    gw2 = ipaddress.IPv4Interface(f"{net2[1]}/24")
    gw3 = ipaddress.IPv4Interface(f"{net3[1]}/24")
    await asyncio.gather(net.hostnat_set(mine, gw1), other_lab.hostnat_set(theirs, gw2))
    assert host_nat.read_entries(net.lab) == [host_nat.HostNatEntry(mine, gw1)]
    assert host_nat.read_entries(other_lab.lab) == [host_nat.HostNatEntry(theirs, gw2)]
    chains = {r["chain"] for r in lab_rules(other_lab.lab)}  # type: ignore[misc]
    assert chains == {"forward", "postrouting", "input"}
    # A rule of an earlier version (no lab in its comment), as an upgrade finds it.
    host_nat.nft(
        ["add", "rule", host_nat.FAMILY, host_nat.TABLE, "postrouting", "ip", "saddr",
         str(net3), "oifname", "!=", legacy, "masquerade", "comment",
         f'"{host_nat.COMMENT_TAG} {legacy} {gw3}"']
    )  # fmt: skip
    theirs_before = rules_by_handle(other_lab.lab)

    # Re-syncing, removing and re-adding one lab's entries leaves the other's as they were.
    await net.hostnat_set(mine, gw1)
    await net.hostnat_remove(mine, gw1)
    assert lab_rules(net.lab) == []
    assert rules_by_handle(other_lab.lab) == theirs_before
    assert str(gw2) in addresses(theirs)
    assert host_nat.HostNatEntry(legacy, gw3) in host_nat.read_entries()
    await net.hostnat_set(mine, gw1)
    assert rules_by_handle(other_lab.lab) == theirs_before

    # A lab that sets an entry on the earlier version's bridge takes its rules over.
    await net.hostnat_set(legacy, ipaddress.IPv4Interface(f"{net3[2]}/24"))
    assert host_nat.read_entries(net.lab) == sorted(
        [
            host_nat.HostNatEntry(mine, gw1),
            host_nat.HostNatEntry(legacy, gw3),
            host_nat.HostNatEntry(legacy, ipaddress.IPv4Interface(f"{net3[2]}/24")),
        ]
    )
    assert not [r for r in host_nat.read_rules() if r.ours and not r.lab and r.bridge == legacy]

    # A lab's reset takes all its rules and addresses, and nothing of the other lab.
    assert threaded(host_nat.remove_lab)(other_lab.lab) == [host_nat.HostNatEntry(theirs, gw2)]
    assert lab_rules(other_lab.lab) == [] and addresses(theirs) == set()
    assert {e.bridge_name for e in host_nat.read_entries(net.lab)} == {mine, legacy}
    threaded(host_nat.remove_lab)(net.lab)
    assert lab_rules(net.lab) == []
    assert nat_table() is None or host_nat.read_rules()


async def test_bridges_and_appliance_veths_name_their_lab(
    host: HostObjects, net: HostNetwork, other_lab: HostNetwork
) -> None:
    """A reset finds a lab's links by their ifalias; a bridge of another lab is refused."""
    bridge = host.bridge()
    await net.bridge_create(bridge)
    made = link(bridge)
    assert made is not None and links.alias_of(made) == f"zstack-lite lab={net.lab}"
    with pytest.raises(AgentError, match=f"bridge {bridge} belongs to another lab .*{net.lab}"):
        await other_lab.bridge_create(bridge)
    await net.bridge_create(bridge)  # its own lab: idempotent

    appliance = host.appliance()
    spec = ApplianceSpec(appliance, (ApplianceNic(bridge, "52:54:00:aa:00:0b", "10.9.9.9", 24),))
    await net.appliance_create(spec, stand_in_command())
    veth = link(veth_name(appliance, 0))
    assert veth is not None and links.alias_of(veth) == f"zstack-lite lab={net.lab}"
    await net.appliance_destroy(appliance)

"""Helpers for the networking tests: names for test objects, host snapshots, cleanup,
a stand-in virtual-router agent and a client for an agent's Unix socket.

Every object a test makes is named ``zsl`` + a random suffix, and is removed in a
``finally`` by :class:`HostObjects` whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiohttp
from pyroute2 import IPRoute, netns

from agent.network import host_nat, links
from contracts.names import namespace_name, veth_index

P = ParamSpec("P")
T = TypeVar("T")

ROOT = os.geteuid() == 0
VR_MAIN = Path(__file__).resolve().parents[2] / "virtual_router" / "main.py"

STAND_IN = r"""
import argparse, os, signal, socket, sys
p = argparse.ArgumentParser()
p.add_argument("--socket"); p.add_argument("--data-dir"); p.add_argument("--token-file")
p.add_argument("--simulate", action="store_true")
a = p.parse_args()
s = socket.socket(socket.AF_UNIX)
s.bind(a.socket)
s.listen()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    c, _ = s.accept()
    try:  # a readiness probe connects and closes without reading
        c.sendall(b"stand-in " + (b"simulated" if a.simulate else b"real") + b"\n")
    except OSError:
        pass
    c.close()
"""
"""A tiny virtual-router agent: answers one line on its Unix socket to every connection."""


def threaded(fn: Callable[P, T]) -> Callable[P, T]:
    """Run ``fn`` in a thread of its own and wait: pyroute2's blocking IPRoute runs its own
    event loop, which cannot run in the thread of the test's running loop."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(fn, *args, **kwargs).result()

    return wrapper


def stand_in_command() -> list[str]:
    return [sys.executable, "-c", STAND_IN]


def stand_in_greeting(socket_path: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(socket_path)
        return s.makefile().readline().strip()


async def vr_call(
    socket_path: str, token_file: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST to a virtual-router agent over its Unix socket, as the core does."""
    token = Path(token_file).read_text().strip()
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path)) as session,
        session.post(
            f"http://vr{path}",
            json=body or {},
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as response,
    ):
        return await response.json()  # type: ignore[no-any-return]


def suffix() -> str:
    return secrets.token_hex(4)


@threaded
def free_subnet(prefix: int = 24) -> ipaddress.IPv4Network:
    """A random 10.x.y.0/prefix overlapping no route on the host."""
    with IPRoute() as ipr:
        taken = [route.network for route in links.ipv4_routes(ipr)]
    while True:
        raw = secrets.randbits(16)
        net = ipaddress.IPv4Network(f"10.{raw >> 8}.{raw & 0xFF}.0/{prefix}", strict=False)
        if not any(net.overlaps(t) for t in taken):
            return net


# -- what is on the host ---------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    links: frozenset[str]
    namespaces: frozenset[str]
    tables: frozenset[str]
    processes: frozenset[tuple[int, str]]


def snapshot(marker: str = "") -> Snapshot:
    """``ip -j link``, ``ip netns list``, ``nft list tables`` and the processes whose
    command line holds ``marker``."""
    link_names = {
        item["ifname"]
        for item in json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True).stdout)
    }
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    namespaces = {line.split()[0] for line in listed.splitlines() if line.strip()}
    tables = {
        line.strip()
        for line in subprocess.run(
            ["nft", "list", "tables"], capture_output=True, text=True
        ).stdout.splitlines()
        if line.strip()
    }
    processes = set()
    if marker:
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                with contextlib.suppress(OSError):
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    if marker.encode() in cmd:
                        processes.add((int(pid), cmd.decode(errors="replace")))
    return Snapshot(
        frozenset(link_names), frozenset(namespaces), frozenset(tables), frozenset(processes)
    )


# -- cleanup ------------------------------------------------------------------------------
@dataclass
class HostObjects:
    """Names a test may leave on the host; :meth:`clean` removes what is left of them."""

    links: list[str] = field(default_factory=list)
    appliances: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    """``family name`` of nftables tables a test made."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    labs: list[str] = field(default_factory=list)
    """Labs whose host NAT rules (and gateway addresses) go at the end."""
    ip_forward: str = ""

    def bridge(self) -> str:
        name = f"zslbr-t{suffix()}"
        self.links.append(name)
        return name

    @threaded
    def port(self, address: str = "", name: str = "") -> str:
        """A stand-in for a physical interface: one end of a veth pair (``zslt…``; this
        kernel has no dummy links), both ends up, ``address`` on it if given."""
        name = name or f"zslt{suffix()}"
        peer = f"zslt{suffix()}p"
        self.links += [name, peer]
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="veth", peer=peer)
            for each in (peer, name):
                ipr.link("set", index=ipr.link_lookup(ifname=each)[0], state="up")
            if address:
                iface = ipaddress.IPv4Interface(address)
                ipr.addr(
                    "add",
                    index=ipr.link_lookup(ifname=name)[0],
                    address=str(iface.ip),
                    prefixlen=iface.network.prefixlen,
                )
        return name

    def appliance(self) -> str:
        appliance_uuid = secrets.token_hex(16)
        self.appliances.append(appliance_uuid)
        return appliance_uuid

    @threaded
    def namespace(self) -> str:
        """An empty namespace ``zsl-t…`` (its links go with it)."""
        ns = f"zsl-t{suffix()}"
        self.namespaces.append(ns)
        netns.create(ns)
        return ns

    @threaded
    def upstream(self, host_address: str, address: str) -> str:
        """A namespace ``zsl-t…`` standing for the outside world: a veth ``zslt…`` from the
        host (``host_address`` on the host end, ``address`` inside)."""
        ns = f"zsl-t{suffix()}"
        self.namespaces.append(ns)
        netns.create(ns)
        host_end = f"zslt{suffix()}"
        self.links.append(host_end)
        host_iface, iface = ipaddress.IPv4Interface(host_address), ipaddress.IPv4Interface(address)
        with IPRoute() as ipr:
            ipr.link("add", ifname=host_end, kind="veth", peer={"ifname": "eth0", "net_ns_fd": ns})
            index = ipr.link_lookup(ifname=host_end)[0]
            ipr.addr(
                "add",
                index=index,
                address=str(host_iface.ip),
                prefixlen=host_iface.network.prefixlen,
            )
            ipr.link("set", index=index, state="up")
        with IPRoute(netns=ns) as nsr:
            index = nsr.link_lookup(ifname="eth0")[0]
            nsr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            nsr.link("set", index=index, state="up")
            nsr.link("set", index=nsr.link_lookup(ifname="lo")[0], state="up")
        return ns

    def run_in(self, ns: str, code: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.processes.append(proc)
        return proc

    def run_on_host(self, code: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.processes.append(proc)
        return proc

    def table(self, family: str, name: str, script: str) -> None:
        self.tables.append(f"{family} {name}")
        subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True)

    @threaded
    def clean(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        for table in self.tables:
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
        for appliance_uuid in self.appliances:
            self._kill_namespace(namespace_name(appliance_uuid))
            with IPRoute() as ipr:
                for link in ipr.link("dump"):
                    if veth_index(appliance_uuid, links.name_of(link)) is not None:
                        links.delete_link(ipr, link["index"])
        for ns in self.namespaces:
            self._kill_namespace(ns)
        with IPRoute() as ipr:
            for name in self.links:
                link = links.find(ipr, name)
                if link is not None:
                    links.delete_link(ipr, link["index"])
        for lab in self.labs:
            host_nat.remove_lab(lab)
        for rule in host_nat.read_rules():  # an earlier version's rules a test made
            if rule.ours and not rule.lab and rule.bridge in self.links:
                subprocess.run(
                    ["nft", "delete", "rule", host_nat.FAMILY, host_nat.TABLE, rule.chain,
                     "handle", str(rule.handle)],
                    capture_output=True,
                )  # fmt: skip
        if not host_nat.read_rules():
            subprocess.run(
                ["nft", "delete", "table", host_nat.FAMILY, host_nat.TABLE], capture_output=True
            )
        if self.ip_forward:
            Path("/proc/sys/net/ipv4/ip_forward").write_text(self.ip_forward)

    @staticmethod
    def _kill_namespace(ns: str) -> None:
        with contextlib.suppress(Exception):
            for pid in netns.ns_pids().get(ns, []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        if ns in netns.listnetns():
            with contextlib.suppress(OSError):
                netns.remove(ns)


# -- port pluggers (agent.extension_points) -----------------------------------------------
class RecordingPlugger:
    """A :class:`~agent.extension_points.PortPlugger` of ``openvswitch`` ports that records
    its calls and keeps its ports in memory: it changes nothing on the host."""

    virtual_port_type = "openvswitch"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.ports: dict[str, tuple[str, int | None]] = {}
        """port -> (bridge, VLAN tag)."""

    def plug(self, bridge: str, port: str, vlan_id: int | None) -> None:
        self.calls.append(("plug", bridge, port, vlan_id))
        self.ports[port] = (bridge, vlan_id)

    def unplug(self, port: str) -> None:
        self.calls.append(("unplug", port))
        self.ports.pop(port, None)

    def plugged(self, bridge: str, port: str, vlan_id: int | None) -> bool:
        return self.ports.get(port) == (bridge, vlan_id)

    def unplugged(self) -> set[str]:
        return {call[1] for call in self.calls if call[0] == "unplug"}

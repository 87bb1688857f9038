"""Shared parts of the networking system tests (real host: libvirt, namespaces, nftables).

* :func:`running_node`: a management node on the ``make run`` layout under /var/tmp
  (first-start bootstrap of the local KVM host, a free agent port), torn down with
  everything it made, through the API first and by hand for what is left, even when
  the test failed.
* :class:`Upstream`: the "outside world" of a homelab: a namespace ``zsl-t<hex>`` with
  203.0.113.1/24 on one end of a veth pair whose other end stays on the host, to be
  the physical interface of a public L2 network, and a TCP listener there that
  records the source address of every connection.
* :class:`HostState`: the project's objects on the host (links, namespaces, nft tables
  and processes), for "the host is as it was" checks.
* :class:`GuestConsole`: a tiny guest's serial console (the pty GetVmConsoleAddress
  names): type a command, read its output and exit status.

Only loopback and namespaces made here carry traffic; the only addresses used are
documentation (203.0.113.0/24) and private ones, inside those namespaces and bridges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt

from agent.guest_image import UP_LINE_PREFIX
from agent.guest_image import build as guest_image
from contracts.names import bridge_name, namespace_name, tap_name, veth_prefix
from core.host.local_agent import free_port
from core.kernel.chains import FlowChainContributor
from core.kernel.node import ManagementNode
from tests.conftest import load_props, ok, write_config

log = logging.getLogger(__name__)

MiB = 1024**2
REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "build" / "tiny-guest.qcow2"
UP_RE = re.compile(re.escape(UP_LINE_PREFIX) + r" ip=(\S+) hostname=(\S+)")
UPSTREAM_IP = "203.0.113.1"
UPSTREAM_PORT = 8080
UPSTREAM_HELLO = "UPSTREAM-HELLO"
PLUGIN_RESOURCES = (
    ("QueryPortForwardingRule", "DeletePortForwardingRule"),
    ("QueryEip", "DeleteEip"),
    ("QueryVip", "DeleteVip"),
)
"""(query, delete) of resources of plugins that hold networks, deleted first."""


# -- small helpers --------------------------------------------------------------------


def sh(*argv: str, check: bool = True) -> str:
    """Run a host command; its stdout (raise with its stderr if ``check`` and it fails)."""
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def why_not_libvirt(needs: str) -> str:
    """Why a test on qemu:///system cannot run here ("" when it can): it ``needs`` root
    for those things, and libvirtd."""
    if os.geteuid() != 0:
        return f"needs root ({needs})"
    try:
        libvirt.open("qemu:///system").close()
    except libvirt.libvirtError as exc:
        return f"no libvirtd on qemu:///system ({exc})"
    return ""


def virsh(*args: str) -> str:
    return sh("virsh", "-c", "qemu:///system", *args, check=False)


async def wait_for(
    check: Callable[[], Any], what: str, timeout: float = 90.0, interval: float = 0.25
) -> Any:
    """Poll ``check`` (sync or async) until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def kill_all(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL what still runs after ``grace`` seconds (by pid only)."""
    pending = {pid for pid in pids if pid != os.getpid()}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pending and time.monotonic() < deadline:
            pending = {pid for pid in pending if alive(pid)}
            time.sleep(0.05)
        if not pending:
            return


def in_ns(ns: str, *argv: str, check: bool = True) -> str:
    return sh("ip", "netns", "exec", ns, *argv, check=check)


# -- the host's state ---------------------------------------------------------------------


def _processes() -> dict[int, str]:
    """Processes that may be the project's: dnsmasq, virtual-router agents, anything with
    ``zsl`` on its command line."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        line = cmdline(int(entry))
        if line and ("zsl" in line or "dnsmasq" in line or "virtual_router" in line):
            out[int(entry)] = line
    return out


@dataclass(frozen=True)
class HostState:
    links: frozenset[str]
    """Link names starting with zsl in the host's namespace."""
    namespaces: frozenset[str]
    """Named network namespaces starting with zsl."""
    tables: frozenset[str]
    """``family name`` of the nft tables starting with zsl in the host's namespace."""
    processes: dict[int, str] = field(hash=False)
    """pid -> command line (see _processes)."""

    @classmethod
    def now(cls) -> HostState:
        links = {
            line.split(":", 2)[1].strip().split("@", 1)[0]
            for line in sh("ip", "-o", "link").splitlines()
            if ":" in line
        }
        namespaces = {line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line}
        tables = {
            line.removeprefix("table ").strip()
            for line in sh("nft", "list", "tables").splitlines()
            if line.startswith("table ")
        }
        return cls(
            links=frozenset(n for n in links if n.startswith("zsl")),
            namespaces=frozenset(n for n in namespaces if n.startswith("zsl")),
            tables=frozenset(t for t in tables if t.split()[-1].startswith("zsl")),
            processes=_processes(),
        )

    def processes_under(self, root: Path) -> dict[int, str]:
        """The processes whose command line names a path under ``root`` (a node's dir)."""
        return {pid: line for pid, line in self.processes.items() if str(root) in line}


@dataclass
class Owned:
    """What one test's node made on the host, by name (derived from the uuids of its
    L2 networks, VMs and appliances, and the upstream's prefix)."""

    root: Path
    l2_uuids: set[str] = field(default_factory=set)
    vm_uuids: set[str] = field(default_factory=set)
    appliance_uuids: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)

    def link_is_ours(self, name: str) -> bool:
        if name in {bridge_name(u) for u in self.l2_uuids}:
            return True
        if any(name.startswith(tap_name(u, 0)[:-1]) for u in self.vm_uuids):
            return True
        if any(name.startswith(veth_prefix(u)) for u in self.appliance_uuids):
            return True
        return any(name.startswith(p) for p in self.prefixes)

    def namespace_is_ours(self, name: str) -> bool:
        return name in {namespace_name(u) for u in self.appliance_uuids} or any(
            name.startswith(p) for p in self.prefixes
        )


def leftovers(before: HostState, after: HostState, owned: Owned) -> dict[str, Any]:
    """What of ours is on the host now and was not before, and what of ours that was there
    before is gone; objects of other sessions (other zsl names) are ignored."""
    mine_before = before.processes_under(owned.root)
    mine_after = after.processes_under(owned.root)
    found = {
        "links": sorted(n for n in after.links - before.links if owned.link_is_ours(n)),
        "namespaces": sorted(
            n for n in after.namespaces - before.namespaces if owned.namespace_is_ours(n)
        ),
        "links gone": sorted(n for n in before.links - after.links if owned.link_is_ours(n)),
        "processes": {p: c for p, c in mine_after.items() if p not in mine_before},
        "processes gone": {p: c for p, c in mine_before.items() if p not in mine_after},
        # Host tables are shared by name (inet zsl_host_nat); no table of an appliance
        # may ever show up in the host's namespace.
        "tables": sorted(t for t in after.tables - before.tables if "zsl_vr" in t),
    }
    return {k: v for k, v in found.items() if v}


def unrelated(before: HostState, after: HostState, owned: Owned) -> dict[str, list[str]]:
    """New zsl objects that are not ours (another session's): reported, tolerated."""
    return {
        "links": sorted(n for n in after.links - before.links if not owned.link_is_ours(n)),
        "namespaces": sorted(
            n for n in after.namespaces - before.namespaces if not owned.namespace_is_ours(n)
        ),
        "tables": sorted(after.tables - before.tables),
    }


# -- the upstream namespace ---------------------------------------------------------------

_LISTENER = """
import socket, sys
host, port, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, port))
srv.listen(16)
open(record + ".ready", "w").close()
while True:
    conn, peer = srv.accept()
    with open(record, "a") as f:
        f.write(peer[0] + "\\n")
    try:
        conn.sendall(b"%s\\n" % sys.argv[4].encode())
    finally:
        conn.close()
"""


class Upstream:
    """A namespace ``zsl-t<6 hex>`` holding 203.0.113.1/24 on ``<ns>u``, the peer of
    ``<ns>h`` left on the host (up, no address) for a public L2 network to enslave."""

    def __init__(self, workdir: Path) -> None:
        self.prefix = f"zsl-t{secrets.token_hex(3)}"
        self.ns = self.prefix
        self.host_end = f"{self.prefix}h"
        self.peer_end = f"{self.prefix}u"
        self.record = workdir / "upstream-peers"
        self._listener: subprocess.Popen[bytes] | None = None

    def create(self) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_end, "type", "veth", "peer", "name", self.peer_end)
        sh("ip", "link", "set", self.peer_end, "netns", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns, "addr", "add", f"{UPSTREAM_IP}/24", "dev", self.peer_end)
        sh("ip", "-n", self.ns, "link", "set", self.peer_end, "up")
        sh("ip", "link", "set", self.host_end, "up")

    def start_listener(self) -> None:
        """A TCP server on 203.0.113.1:8080 in the namespace; see :meth:`peers`."""
        self._listener = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                sys.executable,
                "-c",
                _LISTENER,
                UPSTREAM_IP,
                str(UPSTREAM_PORT),
                str(self.record),
                UPSTREAM_HELLO,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not Path(f"{self.record}.ready").exists():
            if self._listener.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the upstream listener did not start")
            time.sleep(0.05)

    def peers(self) -> list[str]:
        """The source address of every connection the listener took, in order."""
        try:
            return self.record.read_text().split()
        except FileNotFoundError:
            return []

    def destroy(self) -> None:
        """Best effort, every part tried."""
        if self._listener is not None:
            kill_all([self._listener.pid])
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._listener.wait(5)
            self._listener = None
        if self.ns in sh("ip", "netns", "list", check=False).split():
            kill_all(int(p) for p in sh("ip", "netns", "pids", self.ns, check=False).split())
            sh("ip", "netns", "del", self.ns, check=False)
        if sh("ip", "-o", "link", "show", self.host_end, check=False):
            sh("ip", "link", "del", self.host_end, check=False)


# -- a guest's serial console ---------------------------------------------------------------


class GuestConsole:
    """The serial console of a running tiny guest through its pty: a thread keeps
    reading it (so QEMU never blocks on a full pty), :meth:`run` types a command and
    waits for its end marker."""

    def __init__(self, pty: str) -> None:
        self.fd = os.open(pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        with contextlib.suppress(termios.error):
            tty.setraw(self.fd)  # QEMU makes it raw; never echo the guest's output back
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seq = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if ready:
                    data = os.read(self.fd, 4096)
                    if data:
                        with self._lock:
                            self._buf.extend(data)
            except BlockingIOError:
                continue
            except OSError:
                time.sleep(0.2)  # EIO while QEMU has not (re)opened its end yet

    def text(self, start: int = 0) -> str:
        with self._lock:
            return self._buf[start:].decode(errors="replace")

    def _mark(self) -> int:
        with self._lock:
            return len(self._buf)

    def send(self, line: str) -> None:
        data = line.encode() + b"\r"
        while data:
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:
                time.sleep(0.05)
                continue
            data = data[written:]

    async def ready(self, timeout: float = 60.0) -> None:
        """Until the shell answers (it comes right after the TINY-GUEST line)."""
        deadline = time.monotonic() + timeout
        start = self._mark()
        while time.monotonic() < deadline:
            self.send("echo ZSL-$((6*7))-READY")
            for _ in range(15):
                if "ZSL-42-READY" in self.text(start):
                    return
                await asyncio.sleep(0.2)
        raise AssertionError(f"the guest's shell does not answer; console:\n{self.text()}")

    async def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        """Type ``command``; (its exit status, what the console printed meanwhile)."""
        self._seq += 1
        seq = 1000 + self._seq
        end = re.compile(rf"ZSL-END-{seq}-rc(\d+)")
        start = self._mark()
        # The echo of the typed line shows $((...)), never the expanded marker.
        self.send(f"{command}; zslrc=$?; echo ZSL-END-$(({seq}+0))-rc$zslrc")

        def done() -> re.Match[str] | None:
            return end.search(self.text(start))

        try:
            match = await wait_for(done, f"the guest to run {command!r}", timeout, 0.2)
        except AssertionError:
            raise AssertionError(
                f"no end of {command!r} within {timeout:g}s; console since:\n{self.text(start)}"
            ) from None
        out = self.text(start)
        return int(match.group(1)), out[: match.start()]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with contextlib.suppress(OSError):
            os.close(self.fd)


# -- the node and its networks ---------------------------------------------------------------


@dataclass
class Lab:
    node: ManagementNode
    root: Path
    owned: Owned
    zone_uuid: str = ""
    cluster_uuid: str = ""
    host_uuid: str = ""
    image_uuid: str = ""
    instance_offering_uuid: str = ""
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``public`` and ``private`` L3 inventories once :meth:`make_networks` ran."""
    offering: dict[str, Any] = field(default_factory=dict)
    consoles: list[GuestConsole] = field(default_factory=list)

    @property
    def appliances_dir(self) -> Path:
        return self.node.data_dir / "agent" / "appliances"

    async def make_networks(self, public_interface: str = "") -> None:
        """A public L3 network (203.0.113.10-20, gateway .1) on an L2 network enslaving
        ``public_interface`` (isolated when empty), a private L3 network 10.77.0.0/24
        (domain lab.lan) on an isolated L2 network with the virtual router's DHCP, DNS
        and SNAT, and the zone's default virtual router offering on the public one.
        Both L2 networks are attached to the bootstrap cluster."""
        node = self.node
        l2s = {}
        for role, interface in (("public", public_interface), ("private", "")):
            l2 = await ok(
                node,
                "CreateL2NoVlanNetwork",
                name=f"test-{role}",
                zoneUuid=self.zone_uuid,
                # An isolated bridge: no physicalInterface at all ("" is refused).
                **({"physicalInterface": interface} if interface else {}),
            )
            self.owned.l2_uuids.add(l2["uuid"])
            assert l2["bridgeName"] == bridge_name(l2["uuid"])
            await ok(
                node,
                "AttachL2NetworkToCluster",
                l2NetworkUuid=l2["uuid"],
                clusterUuid=self.cluster_uuid,
            )
            l2s[role] = l2
        public = await ok(
            node,
            "CreateL3Network",
            name="test-public",
            l2NetworkUuid=l2s["public"]["uuid"],
            category="Public",
        )
        await ok(
            node,
            "AddIpRange",
            l3NetworkUuid=public["uuid"],
            name="upstream",
            startIp="203.0.113.10",
            endIp="203.0.113.20",
            netmask="255.255.255.0",
            gateway=UPSTREAM_IP,
        )
        private = await ok(
            node,
            "CreateL3Network",
            name="test-private",
            l2NetworkUuid=l2s["private"]["uuid"],
            category="Private",
            dnsDomain="lab.lan",
        )
        await ok(
            node,
            "AddIpRangeByNetworkCidr",
            l3NetworkUuid=private["uuid"],
            name="private",
            networkCidr="10.77.0.0/24",
        )
        [provider] = await ok(
            node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"]
        )
        await ok(
            node,
            "AttachNetworkServiceToL3Network",
            l3NetworkUuid=private["uuid"],
            networkServices={provider["uuid"]: ["DHCP", "DNS", "SNAT"]},
        )
        # The bootstrap may have made the zone's first (default) offering: ours is made
        # the default so the router lands on our public network.
        self.offering = await ok(
            node,
            "CreateVirtualRouterOffering",
            name="test-vr",
            zoneUuid=self.zone_uuid,
            publicNetworkUuid=public["uuid"],
            isDefault=True,
        )
        self.networks = {"public": public, "private": private}

    async def create_vm(self, name: str, **params: Any) -> dict[str, Any]:
        reply = await self.node.call(
            "CreateVmInstance",
            {
                "name": name,
                "instanceOfferingUuid": self.instance_offering_uuid,
                "imageUuid": self.image_uuid,
                "l3NetworkUuids": [self.networks["private"]["uuid"]],
                **params,
            },
        )
        if reply.inventory:
            self.owned.vm_uuids.add(reply.inventory["uuid"])
        assert reply.success, f"CreateVmInstance failed: {reply.error}"
        return dict(reply.inventory)

    async def boot(self, name: str, **params: Any) -> tuple[dict[str, Any], GuestConsole]:
        """A tiny guest up (its TINY-GUEST line names its NIC's address) with a shell that
        answers: the VM's inventory with its NIC (``nic``), and its console."""
        vm = await self.create_vm(name, **params)
        [nic] = await self.nics(vm["uuid"])
        console, log = await self.console(vm["uuid"])

        def up() -> re.Match[str] | None:
            return UP_RE.search(log.read_text(errors="replace")) if log.exists() else None

        match = await wait_for(up, f"{name}'s TINY-GUEST line", timeout=180)
        assert (match.group(1), match.group(2)) == (nic["ip"], name), match.group(0)
        await console.ready()
        return {**vm, "nic": nic}, console

    async def routers(self) -> list[dict[str, Any]]:
        routers = await ok(self.node, "QueryVirtualRouterVm")
        self.owned.appliance_uuids.update(r["uuid"] for r in routers)
        return list(routers)

    async def nics(self, owner_uuid: str) -> list[dict[str, Any]]:
        return list(await ok(self.node, "QueryVmNic", conditions=[f"vmInstanceUuid={owner_uuid}"]))

    async def console(self, vm_uuid: str) -> tuple[GuestConsole, Path]:
        address = await ok(self.node, "GetVmConsoleAddress", uuid=vm_uuid)
        console = GuestConsole(address["pty"])
        self.consoles.append(console)
        return console, Path(address["consoleLogPath"])

    async def delete_ours(self) -> None:
        """What the test made through the API, in dependency order: VMs (destroy, expunge),
        virtual routers, our offering, our L3 and L2 networks (not the bootstrap's)."""
        node = self.node
        for vm in await ok(node, "QueryVmInstance"):
            self.owned.vm_uuids.add(vm["uuid"])
            if vm["state"] != "Destroyed":
                await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
            await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])
        await self.delete_plugin_resources()
        for router in await self.routers():
            await ok(node, "DestroyVirtualRouter", uuid=router["uuid"])
        if self.offering:
            await ok(node, "DeleteVirtualRouterOffering", uuid=self.offering["uuid"])
            self.offering = {}
        for role in ("private", "public"):
            l3 = self.networks.pop(role, None)
            if l3 is not None:
                await ok(node, "DeleteL3Network", uuid=l3["uuid"])
                await ok(node, "DeleteL2Network", uuid=l3["l2NetworkUuid"])

    async def delete_plugin_resources(self) -> None:
        """Port forwarding, EIPs and VIPs (a VIP holds its public network), when their
        plugin is installed."""
        for query, delete in PLUGIN_RESOURCES:
            reply = await self.node.call(query, {})
            for row in (reply.inventories or []) if reply.success else []:
                await ok(self.node, delete, uuid=row["uuid"])

    async def delete_everything(self) -> None:
        """Through the API, in dependency order: VMs (destroy, expunge), virtual routers,
        offerings, L3 networks (private first), L2 networks.  Raises on the first
        refusal."""
        node = self.node
        for vm in await ok(node, "QueryVmInstance"):
            self.owned.vm_uuids.add(vm["uuid"])
            if vm["state"] != "Destroyed":
                await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
            await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])
        await self.delete_plugin_resources()
        for router in await self.routers():
            await ok(node, "DestroyVirtualRouter", uuid=router["uuid"])
        for offering in await ok(node, "QueryVirtualRouterOffering"):
            await ok(node, "DeleteVirtualRouterOffering", uuid=offering["uuid"])
        l3s = await ok(node, "QueryL3Network")
        for l3 in sorted(l3s, key=lambda n: n["category"] != "Private"):
            await ok(node, "DeleteL3Network", uuid=l3["uuid"])
        for l2 in await ok(node, "QueryL2Network"):
            self.owned.l2_uuids.add(l2["uuid"])
            await ok(node, "DeleteL2Network", uuid=l2["uuid"])


def rebuild_chains(node: ManagementNode, overrides: dict[str, list[str]]) -> None:
    """Rebuild every chain as the node's start did (config.toml's [chains] and the
    plugins' insertions), with ``overrides`` replacing some lists; ``{}`` restores."""
    insertions = [
        ins
        for contributor in node.registry.extensions(FlowChainContributor)
        for ins in contributor.flow_insertions()
    ]
    node.chains.build_all({**dict(node.props["chains"]), **overrides}, insertions)


async def _by_hand(lab: Lab) -> None:
    """Whatever the API left: domains, appliance processes/namespaces/veths, bridges."""
    owned = lab.owned
    if lab.appliances_dir.is_dir():  # an appliance directory is named by its uuid
        owned.appliance_uuids.update(p.name for p in lab.appliances_dir.iterdir())
    for uuid in owned.vm_uuids:
        virsh("destroy", f"zsl-{uuid}")
        virsh("undefine", f"zsl-{uuid}")
    kill_all(HostState.now().processes_under(lab.root))
    host = HostState.now()
    for ns in host.namespaces:
        if owned.namespace_is_ours(ns) and ns.startswith("zsl-vr-"):
            kill_all(int(p) for p in sh("ip", "netns", "pids", ns, check=False).split())
            sh("ip", "netns", "del", ns, check=False)
    for link in host.links:
        if owned.link_is_ours(link) and not any(link.startswith(p) for p in owned.prefixes):
            sh("ip", "link", "del", link, check=False)


@contextlib.asynccontextmanager
async def running_node(name: str) -> AsyncIterator[Lab]:
    """A node on the ``make run`` layout (bootstrap kvm host, storage under the data
    dir) with the tiny image and a 256 MiB offering; everything it made is removed at
    the end: through the API while the node runs, then by hand.  ZSL_TEST_KEEP_DIR=1
    keeps the node's directory (its agents' logs) for a post-mortem."""
    guest_image.main(["--output", str(IMAGE)])  # builds only if missing or stale
    # QEMU runs as libvirt-qemu: the storage must sit where it can reach (not pytest's 0700).
    root = Path(tempfile.mkdtemp(prefix=f"zsl-test-{name}-", dir="/var/tmp"))
    root.chmod(0o755)
    props = load_props(
        write_config(root, f'[agent]\nport = {free_port()}\n[bootstrap]\nlocal_host = "kvm"\n')
    )
    node = ManagementNode(props, serve_socket=False)
    lab = Lab(node=node, root=root, owned=Owned(root))
    started = False
    try:
        await node.start()
        started = True
        [host] = await ok(node, "QueryHost")
        assert host["status"] == "Connected", host
        lab.host_uuid, lab.cluster_uuid, lab.zone_uuid = (
            host["uuid"],
            host["clusterUuid"],
            host["zoneUuid"],
        )
        # What the bootstrap made is this node's too.
        lab.owned.l2_uuids.update(l2["uuid"] for l2 in await ok(node, "QueryL2Network"))
        lab.image_uuid = (await ok(node, "AddImage", name="tiny", url=str(IMAGE)))["uuid"]
        lab.instance_offering_uuid = (
            await ok(node, "CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=256 * MiB)
        )["uuid"]
        yield lab
    finally:
        for console in lab.consoles:
            console.close()
        if started:
            try:
                await lab.delete_everything()
            except BaseException as exc:  # the test's own failure matters more
                log.warning("cleanup through the API failed: %s", exc)
            with contextlib.suppress(Exception):
                await lab.routers()
            await node.stop()
        await _by_hand(lab)
        if os.environ.get("ZSL_TEST_KEEP_DIR"):  # to read the agents' logs after a failure
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

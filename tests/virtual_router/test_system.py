"""The real agent in a real appliance namespace: DHCP to a guest namespace with busybox
udhcpc, names with busybox nslookup, SNAT to an "upstream" namespace, repairs, restarts and a
port-53 conflict.

Everything made here is a namespace named ``zsl-t<random>`` (the veths live and die with them)
or lives in one temp directory; all is removed in ``finally``.  Traffic stays between these
namespaces (the upstream one is 203.0.113.0/24, a documentation range).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.network.names import dnsmasq_run_dir
from tests.virtual_router.helpers import VrClient, dhcp_entry, snat, wait_for
from virtual_router import protocol as p
from virtual_router.dnsmasq import unprivileged_user

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
DOMAIN = "lab.lan"
PUBLIC_IP, UPSTREAM_IP = "203.0.113.10", "203.0.113.1"


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("/usr/sbin/dnsmasq", "/usr/sbin/nft", "/usr/bin/dhcp_release", BUSYBOX):
        if not os.path.exists(tool):
            return f"{tool} is missing (make system-deps)"
    return ""


if _why_not():
    pytest.skip(_why_not(), allow_module_level=True)


def run(*args: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def in_ns(ns: str, *args: str, check: bool = True, timeout: float = 15) -> str:
    return run("ip", "netns", "exec", ns, *args, check=check, timeout=timeout).stdout


def random_mac() -> str:
    return "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))


@dataclass
class Lab:
    """The appliance (``vr``), a guest and an upstream namespace, wired by veths."""

    suffix: str
    workdir: Path
    net: int = field(default_factory=lambda: 1 + secrets.randbelow(250))
    vr_guest_mac: str = field(default_factory=random_mac)
    vr_guest2_mac: str = field(default_factory=random_mac)
    vr_public_mac: str = field(default_factory=random_mac)
    guest_mac: str = field(default_factory=random_mac)
    guest2_mac: str = field(default_factory=random_mac)

    @property
    def vr(self) -> str:
        return f"zsl-t{self.suffix}v"

    @property
    def guest(self) -> str:
        return f"zsl-t{self.suffix}g"

    @property
    def upstream(self) -> str:
        return f"zsl-t{self.suffix}u"

    @property
    def namespaces(self) -> list[str]:
        return [self.vr, self.guest, self.upstream]

    def ip(self, host: int, second: bool = False) -> str:
        return f"10.{77 + second}.{self.net}.{host}"

    @property
    def gateway(self) -> str:
        return self.ip(1)

    def create(self) -> None:
        for ns in self.namespaces:
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        self._veth("vg0", self.vr_guest_mac, "ge0", self.guest_mac, self.guest)
        self._veth("vg1", self.vr_guest2_mac, "ge1", self.guest2_mac, self.guest)
        self._veth("vp0", self.vr_public_mac, "ue0", random_mac(), self.upstream)
        run("ip", "-n", self.vr, "addr", "add", f"{self.gateway}/24", "dev", "vg0")
        run("ip", "-n", self.vr, "addr", "add", f"{self.ip(1, True)}/24", "dev", "vg1")
        run("ip", "-n", self.vr, "addr", "add", f"{PUBLIC_IP}/24", "dev", "vp0")
        run("ip", "-n", self.upstream, "addr", "add", f"{UPSTREAM_IP}/24", "dev", "ue0")

    def _veth(self, name: str, mac: str, peer: str, peer_mac: str, peer_ns: str) -> None:
        run(
            "ip", "-n", self.vr, "link", "add", name, "address", mac, "type", "veth",
            "peer", "name", peer, "address", peer_mac, "netns", peer_ns,
        )  # fmt: skip
        run("ip", "-n", self.vr, "link", "set", name, "up")
        run("ip", "-n", peer_ns, "link", "set", peer, "up")

    def destroy(self) -> None:
        """Kill whatever still runs in our namespaces (all of it started here), then delete them."""
        existing = run("ip", "netns", "list", check=False).stdout
        for ns in self.namespaces:
            if not re.search(rf"^{re.escape(ns)}\b", existing, re.M):
                continue
            for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", ns, check=False)

    # -- the guest's view ------------------------------------------------------------
    def dhcp(self, interface: str = "ge0", tries: int = 4) -> dict[str, str]:
        """One DHCP exchange from the guest with busybox udhcpc; the lease's variables
        (empty when no lease came)."""
        script = self.workdir / "udhcpc.sh"
        if not script.exists():
            script.write_text(
                "#!/bin/sh\n"
                '[ "$1" = bound ] && echo "LEASE ip=$ip router=$router dns=$dns '
                'domain=$domain subnet=$subnet hostname=$hostname"\nexit 0\n'
            )
            script.chmod(0o755)
        out = in_ns(
            self.guest, BUSYBOX, "udhcpc", "-i", interface, "-n", "-q", "-f",
            "-t", str(tries), "-T", "1", "-A", "1", "-s", str(script),
            check=False,
        )  # fmt: skip
        for line in out.splitlines():
            if line.startswith("LEASE "):
                return dict(kv.split("=", 1) for kv in line[6:].split())
        return {}

    def configure_guest(self, ip: str) -> None:
        run("ip", "-n", self.guest, "addr", "replace", f"{ip}/24", "dev", "ge0")
        run("ip", "-n", self.guest, "route", "replace", "default", "via", self.gateway)

    def lookup(self, name: str) -> list[str]:
        """The addresses the appliance's DNS answers for ``name``, asked from the guest."""
        out = in_ns(self.guest, BUSYBOX, "nslookup", name, self.gateway, check=False)
        answer = out.split(f"Name:\t{name}", 1)
        return re.findall(r"Address:\s*([\d.]+)\s*$", answer[1], re.M) if len(answer) > 1 else []


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie not yet reaped does not)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


class AgentProcess:
    """``python -m virtual_router.main`` inside the appliance namespace."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.socket = lab.workdir / "vr.sock"
        self.data = lab.workdir / "data"
        self.token_file = lab.workdir / "token"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: VrClient | None = None
        self._log_start = 0

    async def start(self) -> VrClient:
        self._log_start = len(self.log())
        self.proc = subprocess.Popen(
            [
                "ip", "netns", "exec", self.lab.vr, sys.executable, "-m", "virtual_router.main",
                "--socket", str(self.socket), "--data-dir", str(self.data),
                "--token-file", str(self.token_file), "--log-level", "debug",
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await wait_for(self._listening, 20, "the agent to listen")
        self.client = VrClient(str(self.socket), self.token_file.read_text().strip())
        return self.client

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the agent exited ({self.proc.returncode}):\n{self.log()}")
        return "serving on" in self.log()[self._log_start :]

    async def stop(self) -> int:
        """SIGTERM; the exit status."""
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(self.proc.wait, 10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        return code

    async def kill(self) -> None:
        """SIGKILL, as a crash would: dnsmasq is left running."""
        if self.client is not None:
            await self.client.close()
            self.client = None
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def log(self) -> str:
        path = self.data / p.LOG_FILE
        return path.read_text() if path.exists() else ""

    def dnsmasq_pid(self) -> int | None:
        """The running dnsmasq's pid (from its pid file), if it runs."""
        try:
            pid = int((self.data / "dnsmasq.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def leases(self) -> str:
        path = self.data / "dnsmasq.leases"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def lab() -> Iterator[Lab]:
    workdir = Path(tempfile.mkdtemp(prefix="zsl-vr-sys-"))
    made = Lab(secrets.token_hex(3), workdir)
    try:
        made.create()
        yield made
    finally:
        made.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def agent(lab: Lab) -> AsyncIterator[AgentProcess]:
    process = AgentProcess(lab)
    try:
        yield process
    finally:
        await process.stop()


def guest_entry(lab: Lab, host: int, mac: str, name: str) -> dict[str, Any]:
    return dhcp_entry(
        lab.ip(host), mac, lab.vr_guest_mac, hostname=name, domain=DOMAIN, dns=[lab.gateway]
    )


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
    assert (await vr.ok(p.PING)) == {"success": True, "error": "", "uuid": "", "repaired": []}
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

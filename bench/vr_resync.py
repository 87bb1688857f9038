"""Virtual-router appliance re-sync: one full re-sync of 1,000 DHCP/DNS entries plus SNAT
versus the same entries applied one at a time, each with a dnsmasq reload.

Run (as root): ``.venv/bin/python bench/vr_resync.py`` (or ``make bench-vr-resync``).

The real agent (``python -m virtual_router.main``) runs inside an appliance
namespace with a guest veth (``10.201.0.1/22``, room for 1,000 leases) and a
public veth (``203.0.113.10/24``, a documentation range); the peers of both
live in a second namespace that plays the guests and the upstream.  It is
driven over its Unix socket with the bearer token by the project's one HTTP
client (core.kernel.http.JsonHttpClient), a fresh connection per call, as the
core drives it.  Each run starts from the state of a freshly started agent
(no entries, no DNS, no SNAT, dnsmasq stopped, no nft table):

(a) full re-sync, what the core sends when an appliance is created, started or
    reconnects: one ``/adddhcp`` with ``rebuild=true`` and the 1,000 entries,
    one ``/setdns``, one ``/syncsnat`` with one SNAT entry.
(b) per entry, the way ZStack's Python router agent is driven as VMs start:
    ``/setdns`` and ``/setsnat``, then one ``/adddhcp`` (``rebuild=false``) per
    entry.  Each such call rewrites dnsmasq's host files and sends dnsmasq a
    SIGHUP, so dnsmasq re-reads them once per entry (virtual_router/dnsmasq.py:
    ``Dnsmasq._apply``; the agent's and dnsmasq's own log lines are counted to
    show it).

"answered" is the wall time from the first call to the last answer; "served" is
until a DNS lookup of the last entry's name, asked from the guest side with
busybox nslookup, returns its address (dnsmasq re-reads on SIGHUP after the
agent has answered).  After every run dnsmasq's files must hold all 1,000
leases and names, three names must resolve, a guest with the last entry's MAC
must get its reserved lease from busybox udhcpc, and the nft table must SNAT
to the public address; the run stops otherwise.  Targets are printed, never
asserted.  The namespaces (the veths go with them), the agent, dnsmasq and the
temp dir are removed at the end, whatever happens (Ctrl-C included).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from types import FrameType
from typing import Any

from contracts import virtual_router as p
from core.kernel.http import JsonHttpClient

REPO = Path(__file__).resolve().parents[1]
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
TOOLS = ("/usr/sbin/dnsmasq", "/usr/sbin/nft", BUSYBOX)

ENTRIES = 1000
FULL_RUNS = 5
PER_ENTRY_RUNS = 3
GUEST_NET = IPv4Interface("10.201.0.1/22")  # the appliance's guest address; 1,022 hosts
PUBLIC_NET = IPv4Interface("203.0.113.10/24")  # the appliance's public address
UPSTREAM_NET = IPv4Interface("203.0.113.1/24")  # the "upstream" DNS server (none listens)
GUEST_SIDE_NET = IPv4Interface("10.201.3.254/22")  # where nslookup asks from
DOMAIN = "bench.lan"
VR_GUEST_MAC = "02:5a:01:00:00:01"
VR_PUBLIC_MAC = "02:5a:01:00:00:02"
UPSTREAM_MAC = "02:5a:01:00:00:03"
CALL_TIMEOUT = 120.0
SERVED_TIMEOUT = 30.0

FULL_TARGET_S = 1.0
RATIO_TARGET = 20.0


class BenchFailed(RuntimeError):
    pass


# --------------------------------------------------------------------------
# the lab: two namespaces wired by two veths
# --------------------------------------------------------------------------


def run(*args: str, check: bool = True, timeout: float = 30) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise BenchFailed(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def entry_mac(n: int) -> str:
    return f"02:5a:00:00:{n >> 8:02x}:{n & 0xFF:02x}"


def entry_ip(n: int) -> IPv4Address:
    return GUEST_NET.ip + n  # .0.2 .. .3.233 for n = 1 .. 1000


@dataclass
class Lab:
    """The appliance namespace (``vr``) and the guests'/upstream's (``out``); the agent."""

    workdir: Path
    suffix: str = field(default_factory=lambda: secrets.token_hex(2))
    agent: subprocess.Popen[bytes] | None = None
    made: list[str] = field(default_factory=list)

    @property
    def vr(self) -> str:
        return f"zslbench{self.suffix}v"

    @property
    def out(self) -> str:
        return f"zslbench{self.suffix}o"

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def socket(self) -> Path:
        return self.workdir / "vr.sock"

    @property
    def token_file(self) -> Path:
        return self.workdir / "token"

    def create(self) -> None:
        for ns in (self.vr, self.out):
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        # Both veths are made inside the namespaces: nothing ever appears in the host's.
        self._veth("zslbg0", VR_GUEST_MAC, "zslbg1", entry_mac(ENTRIES))
        self._veth("zslbp0", VR_PUBLIC_MAC, "zslbp1", UPSTREAM_MAC)
        run("ip", "-n", self.vr, "addr", "add", str(GUEST_NET), "dev", "zslbg0")
        run("ip", "-n", self.vr, "addr", "add", str(PUBLIC_NET), "dev", "zslbp0")
        run("ip", "-n", self.out, "addr", "add", str(GUEST_SIDE_NET), "dev", "zslbg1")
        run("ip", "-n", self.out, "addr", "add", str(UPSTREAM_NET), "dev", "zslbp1")

    def _veth(self, name: str, mac: str, peer: str, peer_mac: str) -> None:
        run(
            "ip", "-n", self.vr, "link", "add", name, "address", mac, "type", "veth",
            "peer", "name", peer, "address", peer_mac, "netns", self.out,
        )  # fmt: skip
        run("ip", "-n", self.vr, "link", "set", name, "up")
        run("ip", "-n", self.out, "link", "set", peer, "up")

    def in_ns(self, ns: str, *args: str, check: bool = True, timeout: float = 30) -> str:
        return run("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)

    # -- the agent -----------------------------------------------------------------
    async def start_agent(self) -> JsonHttpClient:
        self.agent = subprocess.Popen(
            [
                "ip", "netns", "exec", self.vr, sys.executable, "-m", "virtual_router.main",
                "--socket", str(self.socket), "--data-dir", str(self.data),
                "--token-file", str(self.token_file),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "serving on" not in self.log():
            if self.agent.poll() is not None:
                raise BenchFailed(f"the agent exited ({self.agent.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise BenchFailed(f"the agent did not start within 30 s:\n{self.log()}")
            await asyncio.sleep(0.05)
        token = self.token_file.read_text().strip()
        return JsonHttpClient(
            "http://vr", unix_socket=str(self.socket), headers={"Authorization": f"Bearer {token}"}
        )

    def log(self) -> str:
        path = self.data / p.LOG_FILE
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_agent(self) -> None:
        """SIGTERM (the agent stops its dnsmasq), SIGKILL after 10 s."""
        proc, self.agent = self.agent, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def destroy(self) -> None:
        """Stop the agent, kill what still runs in our namespaces (all started here: the
        agent, its dnsmasq, a lookup), delete them (their veths go with them)."""
        with contextlib.suppress(Exception):
            self.stop_agent()
        for ns in reversed(self.made):
            for pid in run("ip", "netns", "pids", ns, check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", ns, check=False)
        self.made.clear()

    # -- the guest's view ------------------------------------------------------------
    def lookup(self, name: str) -> list[str]:
        """The addresses the appliance's DNS answers for ``name``, asked from the guest side."""
        out = self.in_ns(
            self.out, BUSYBOX, "nslookup", name, str(GUEST_NET.ip), check=False, timeout=10
        )
        answer = out.split(f"Name:\t{name}", 1)
        return re.findall(r"Address:\s*([\d.]+)\s*$", answer[1], re.M) if len(answer) > 1 else []

    def dhcp(self) -> dict[str, str]:
        """One DHCP exchange with busybox udhcpc from the guest veth (the last entry's MAC);
        the lease's variables (empty when none came).  The address is not configured."""
        script = self.workdir / "udhcpc.sh"
        if not script.exists():
            script.write_text(
                "#!/bin/sh\n"
                '[ "$1" = bound ] && echo "LEASE ip=$ip router=$router dns=$dns '
                'domain=$domain subnet=$subnet hostname=$hostname"\nexit 0\n'
            )
            script.chmod(0o755)
        out = self.in_ns(
            self.out, BUSYBOX, "udhcpc", "-i", "zslbg1", "-n", "-q", "-f",
            "-t", "4", "-T", "1", "-A", "1", "-s", str(script),
            check=False,
        )  # fmt: skip
        for line in out.splitlines():
            if line.startswith("LEASE "):
                return dict(kv.split("=", 1) for kv in line[6:].split())
        return {}


# --------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------


def dhcp_entry(n: int) -> dict[str, Any]:
    return {
        "ip": str(entry_ip(n)),
        "mac": entry_mac(n),
        "netmask": str(GUEST_NET.netmask),
        "gateway": str(GUEST_NET.ip),
        "hostname": f"vm-{n}",
        "dnsDomain": DOMAIN,
        "dns": [str(GUEST_NET.ip)],
        "isDefaultL3Network": True,
        "vrNicMac": VR_GUEST_MAC,
    }


ALL_ENTRIES = [dhcp_entry(n) for n in range(1, ENTRIES + 1)]
DNS = {"dns": [{"dnsAddress": str(UPSTREAM_NET.ip), "nicMac": VR_GUEST_MAC}]}
SNATS = {
    "snats": [
        {
            "privateNicMac": VR_GUEST_MAC,
            "privateNicIp": str(GUEST_NET.ip),
            "snatNetmask": str(GUEST_NET.netmask),
            "publicNicMac": VR_PUBLIC_MAC,
            "publicIp": str(PUBLIC_NET.ip),
        }
    ]
}


async def ok(vr: JsonHttpClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await vr.post(path, body, timeout=CALL_TIMEOUT)
    if not isinstance(answer, dict) or answer.get("success") is not True:
        raise BenchFailed(f"{path} failed: {answer}")
    return answer


async def timed(vr: JsonHttpClient, path: str, body: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    await ok(vr, path, body)
    return time.perf_counter() - t0


async def reset(vr: JsonHttpClient) -> None:
    """Back to a freshly started agent's state: no SNAT, no entries, no DNS (dnsmasq stops)."""
    await ok(vr, p.SYNC_SNAT, {"snats": []})
    await ok(vr, p.ADD_DHCP, {"rebuild": True, "dhcpEntryList": []})
    await ok(vr, p.SET_DNS, {"dns": []})


async def full_resync(vr: JsonHttpClient) -> dict[str, float]:
    """(a): the seconds of each call."""
    return {
        "adddhcp": await timed(vr, p.ADD_DHCP, {"rebuild": True, "dhcpEntryList": ALL_ENTRIES}),
        "setdns": await timed(vr, p.SET_DNS, DNS),
        "syncsnat": await timed(vr, p.SYNC_SNAT, SNATS),
    }


async def per_entry(vr: JsonHttpClient) -> dict[str, Any]:
    """(b): the seconds of the DNS and SNAT calls and of each /adddhcp."""
    setdns = await timed(vr, p.SET_DNS, DNS)
    setsnat = await timed(vr, p.SET_SNAT, SNATS)
    adds = [
        await timed(vr, p.ADD_DHCP, {"rebuild": False, "dhcpEntryList": [entry]})
        for entry in ALL_ENTRIES
    ]
    return {"setdns": setdns, "setsnat": setsnat, "adddhcp": adds}


# --------------------------------------------------------------------------
# checking what the appliance serves
# --------------------------------------------------------------------------


async def wait_served(lab: Lab) -> None:
    """Until the last entry's name resolves to its address."""
    name, want = f"vm-{ENTRIES}.{DOMAIN}", [str(entry_ip(ENTRIES))]
    deadline = time.monotonic() + SERVED_TIMEOUT
    while (got := await asyncio.to_thread(lab.lookup, name)) != want:
        if time.monotonic() > deadline:
            raise BenchFailed(f"{name} resolves to {got}, not {want}, after {SERVED_TIMEOUT:g}s")
        await asyncio.sleep(0.01)


def verify(lab: Lab) -> None:
    """dnsmasq's files hold every lease and name, names resolve, the last entry's MAC gets
    its lease, the nft table SNATs."""
    want = {(entry_mac(n), str(entry_ip(n))) for n in range(1, ENTRIES + 1)}
    hosts = (lab.data / "dhcp-hosts").read_text().splitlines()
    leases = {(line.split(",")[0], line.split(",")[1]) for line in hosts}
    if len(hosts) != ENTRIES or leases != want:
        raise BenchFailed(f"dhcp-hosts has {len(hosts)} lines, not the {ENTRIES} leases")
    names = (lab.data / "addn-hosts").read_text().splitlines()
    if len(names) != ENTRIES:
        raise BenchFailed(f"addn-hosts has {len(names)} lines, not {ENTRIES}")
    for n in (1, ENTRIES // 2, ENTRIES):
        name = f"vm-{n}.{DOMAIN}"
        if (got := lab.lookup(name)) != [str(entry_ip(n))]:
            raise BenchFailed(f"{name} resolves to {got}, not {entry_ip(n)}")
    lease = lab.dhcp()
    expected = {
        "ip": str(entry_ip(ENTRIES)),
        "router": str(GUEST_NET.ip),
        "dns": str(GUEST_NET.ip),
        "domain": DOMAIN,
        "subnet": str(GUEST_NET.netmask),
        "hostname": f"vm-{ENTRIES}",
    }
    if lease != expected:
        raise BenchFailed(f"the guest with {entry_mac(ENTRIES)} got {lease}, not {expected}")
    table = lab.in_ns(lab.vr, "nft", "list", "table", "ip", p.NFT_TABLE, check=False)
    if f"snat to {PUBLIC_NET.ip}" not in table:
        raise BenchFailed(f"the nft table does not SNAT to {PUBLIC_NET.ip}:\n{table}")
    if lab.in_ns(lab.vr, "cat", "/proc/sys/net/ipv4/ip_forward").strip() != "1":
        raise BenchFailed("ip_forward is off in the appliance")


def count_reloads(log: str) -> dict[str, int]:
    """What a slice of the agent's log says dnsmasq was made to do, and what it did."""
    return {
        "sighup": log.count("dnsmasq: entries changed; SIGHUP"),
        "started": len(re.findall(r"dnsmasq \d+ started", log)),
        # dnsmasq's own line for each read of the DHCP hosts file (at start and on SIGHUP).
        "reread": len(re.findall(r"read \S*dhcp-hosts", log)),
    }


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------


@dataclass
class Runs:
    answered: list[float] = field(default_factory=list)
    served: list[float] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    reloads: list[dict[str, int]] = field(default_factory=list)


async def measure(
    lab: Lab,
    vr: JsonHttpClient,
    runs: int,
    body: Callable[[JsonHttpClient], Awaitable[dict[str, Any]]],
    label: str,
) -> Runs:
    result = Runs()
    for i in range(runs):
        await reset(vr)
        log_start = len(lab.log())
        t0 = time.perf_counter()
        calls = await body(vr)
        answered = time.perf_counter() - t0
        await wait_served(lab)
        served = time.perf_counter() - t0
        reloads = count_reloads(lab.log()[log_start:])
        await asyncio.to_thread(verify, lab)
        result.answered.append(answered)
        result.served.append(served)
        result.calls.append(calls)
        result.reloads.append(reloads)
        print(
            f"  {label} run {i + 1}/{runs}: answered {answered:.3f} s, served {served:.3f} s, "
            f"dnsmasq SIGHUPs {reloads['sighup']}, starts {reloads['started']}, "
            f"reads of dhcp-hosts {reloads['reread']}; verified",
            flush=True,
        )
    return result


def median_calls(calls: list[dict[str, Any]], key: str) -> float:
    return statistics.median(c[key] for c in calls)


def verdict(holds: bool) -> str:
    return "HOLDS" if holds else "MISSED"


async def bench(lab: Lab) -> None:
    vr = await lab.start_agent()
    try:
        await ok(vr, p.INIT, {"uuid": "bench-vr"})
        # Warm up (imports, first dnsmasq start, first nft run) and check the lab works.
        await full_resync(vr)
        await wait_served(lab)
        await asyncio.to_thread(verify, lab)

        print(f"(a) full re-sync, {FULL_RUNS} runs", flush=True)
        full = await measure(lab, vr, FULL_RUNS, full_resync, "full")
        # The re-sync again on an agent that already serves exactly that (the core
        # reconnecting to an agent that did not restart): nothing to rewrite or reload.
        unchanged = []
        for _ in range(FULL_RUNS):
            t0 = time.perf_counter()
            await full_resync(vr)
            unchanged.append(time.perf_counter() - t0)
        await asyncio.to_thread(verify, lab)
        print(f"(b) per entry, {PER_ENTRY_RUNS} runs", flush=True)
        each = await measure(lab, vr, PER_ENTRY_RUNS, per_entry, "per-entry")
    finally:
        await vr.close()
        lab.stop_agent()

    full_med, each_med = statistics.median(full.answered), statistics.median(each.answered)
    full_served, each_served = statistics.median(full.served), statistics.median(each.served)
    ratio = each_med / full_med
    adds = [t for c in each.calls for t in c["adddhcp"]]
    adds.sort()
    print()
    header = f"{'way':<40} {'runs':>4} {'answered s':>11} {'served s':>9} {'min s':>7} {'max s':>7}"
    print(f"median of the runs; {ENTRIES} DHCP/DNS entries + 1 SNAT entry, from an empty agent")
    print(header)
    print("-" * len(header))
    for label, r in (
        ("(a) full re-sync: 3 calls", full),
        (f"(b) per entry: {ENTRIES + 2} calls, {ENTRIES} reloads", each),
    ):
        print(
            f"{label:<40} {len(r.answered):>4} {statistics.median(r.answered):>11.3f} "
            f"{statistics.median(r.served):>9.3f} {min(r.answered):>7.3f} {max(r.answered):>7.3f}"
        )
    print(
        f"{'full re-sync again, nothing changed':<40} {len(unchanged):>4} "
        f"{statistics.median(unchanged):>11.3f} {'':>9} {min(unchanged):>7.3f} "
        f"{max(unchanged):>7.3f}"
    )
    print()
    print(
        "(a) per call, median ms: "
        f"/adddhcp rebuild {median_calls(full.calls, 'adddhcp') * 1e3:.1f}, "
        f"/setdns {median_calls(full.calls, 'setdns') * 1e3:.1f}, "
        f"/syncsnat {median_calls(full.calls, 'syncsnat') * 1e3:.1f}; dnsmasq starts "
        f"{full.reloads[-1]['started']} times (/adddhcp starts it, /setdns restarts it: the "
        "upstream servers are in its conf)"
    )
    print(
        f"(b) per call, ms: /adddhcp of one entry p50 {adds[len(adds) // 2] * 1e3:.1f}, "
        f"p99 {adds[int(len(adds) * 0.99)] * 1e3:.1f}, max {adds[-1] * 1e3:.1f} "
        f"(first {statistics.median(c['adddhcp'][0] for c in each.calls) * 1e3:.1f}, "
        f"last {statistics.median(c['adddhcp'][-1] for c in each.calls) * 1e3:.1f}); "
        f"/setdns {median_calls(each.calls, 'setdns') * 1e3:.1f}, "
        f"/setsnat {median_calls(each.calls, 'setsnat') * 1e3:.1f}"
    )
    reloads = each.reloads[-1]
    print(
        f"(b) each /adddhcp rewrote the host files and reloaded dnsmasq: in the last run "
        f"{reloads['sighup']} SIGHUPs and {reloads['started']} starts (/setdns starts it, the "
        "first /adddhcp restarts it: its dhcp-range is in the conf); dnsmasq logged "
        f"{reloads['reread']} reads of dhcp-hosts (at a start and on each SIGHUP)"
    )
    print(
        f"ratio per entry / full re-sync: {ratio:.1f}x answered, "
        f"{each_served / full_served:.1f}x served"
    )
    print()
    print(
        f"target: full re-sync of {ENTRIES} entries + SNAT < {FULL_TARGET_S:g} s: "
        f"{verdict(full_med < FULL_TARGET_S)} ({full_med:.3f} s)"
    )
    print(
        f"target: per entry / full re-sync >= {RATIO_TARGET:.0f}x: "
        f"{verdict(ratio >= RATIO_TARGET)} ({ratio:.1f}x)"
    )


def _why_not() -> str:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in TOOLS:
        if not os.path.exists(tool):
            return f"{tool} is missing (make system-deps)"
    return ""


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    if reason := _why_not():
        print(f"vr_resync: {reason}", file=sys.stderr)
        return 1
    dnsmasq = run("/usr/sbin/dnsmasq", "--version").splitlines()[0]
    nft = run("/usr/sbin/nft", "--version").strip()
    print(
        f"Virtual-router re-sync benchmark: Python {platform.python_version()}, "
        f"{dnsmasq.split('  ')[0]}, {nft.split(' (')[0]}, {os.cpu_count()} CPUs"
    )
    print(
        f"the real agent in a namespace; {ENTRIES} static leases on {GUEST_NET.network}, "
        f"names in {DOMAIN}, SNAT to {PUBLIC_NET.ip}; JsonHttpClient, a connection per call"
    )
    print()
    return in_lab("vr_resync", bench)


def in_lab(name: str, body: Callable[[Lab], Awaitable[None]]) -> int:
    """Run ``body`` on a fresh lab, removed afterwards whatever happens; the exit status
    (a failed check or an interruption is reported under ``name``)."""
    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix=f"zsl-bench-{name}-"))
    lab = Lab(workdir)
    try:
        lab.create()
        asyncio.run(body(lab))
    except BenchFailed as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    finally:
        lab.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

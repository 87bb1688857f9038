"""Port forwarding and EIPs in the router: 500 port-forwarding rules and 100 EIPs (on 150
VIPs) synced to one router, one nft transaction per kind, against the same rules and EIPs
applied one per call.

Run (as root): ``.venv/bin/python bench/vip_nat.py`` (or ``make bench-vip-nat``).

The real router agent, with the VIP plugin, runs in an appliance namespace (the lab of
bench/vr_resync.py: a public veth 203.0.113.10/24, a guest veth 10.201.0.1/22), driven
over its Unix socket by core.kernel.http.JsonHttpClient, a connection per call, as the core
drives it.  Each run starts from an empty agent (no VIP, rule or EIP):

(a) sync, what the router's post-create flows send when it is made or reconnects:
    ``/vip/sync`` (150 VIPs), ``/portforwarding/sync`` (500 rules), ``/eip/sync``
    (100 EIPs): three calls, each one nft transaction (and the VIPs' addresses);
(b) one per call, what attaching them one by one sends: ``/vip/sync`` once, then 500
    ``/portforwarding/apply`` and 100 ``/eip/apply`` of one entry each; each call
    replaces the table whole in one transaction, so a call costs more as the table
    grows.

After each run the table must hold every rule (by its ``pf=``/``eip=`` comment) and the
public interface every VIP; the run stops otherwise.  Targets are printed, never
asserted.  Everything made is removed at the end, whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from ipaddress import IPv4Address
from typing import Any

from vr_resync import PUBLIC_NET, VR_PUBLIC_MAC, BenchFailed, Lab, in_lab, ok, run, verdict
from zsl_vip import contract as c

from core.kernel.http import JsonHttpClient

RULES, EIPS, RULES_PER_VIP = 500, 100, 10
SYNC_RUNS, EACH_RUNS = 5, 2
SYNC_TARGET_S, RATIO_TARGET = 1.0, 20.0
PF_VIPS = [IPv4Address("203.0.113.100") + i for i in range(RULES // RULES_PER_VIP)]
EIP_VIPS = [IPv4Address("203.0.113.150") + i for i in range(EIPS)]
GUEST = IPv4Address("10.201.0.2")


def uid(kind: int, n: int) -> str:
    return uuid.UUID(int=(kind << 64) + n).hex


VIPS = [{"vipUuid": uid(1, i), "ip": str(ip)} for i, ip in enumerate(PF_VIPS + EIP_VIPS)]
PF = [
    {
        "uuid": uid(2, n),
        "vipIp": str(PF_VIPS[n // RULES_PER_VIP]),
        "vipPortStart": 1000 + n % RULES_PER_VIP,
        "vipPortEnd": 1000 + n % RULES_PER_VIP,
        "privateIp": str(GUEST + n % 250),
        "privatePortStart": 22,
        "privatePortEnd": 22,
        "protocolType": "TCP",
        **({"allowedCidr": "192.0.2.0/24"} if n % 5 == 0 else {}),
    }
    for n in range(RULES)
]
EIP = [
    {"uuid": uid(3, n), "vipIp": str(EIP_VIPS[n]), "guestIp": str(GUEST + 300 + n),
     "publicMac": VR_PUBLIC_MAC}
    for n in range(EIPS)
]  # fmt: skip


async def empty(vr: JsonHttpClient) -> None:
    await ok(vr, c.PF_SYNC, {"rules": []})
    await ok(vr, c.EIP_SYNC, {"eips": []})
    await ok(vr, c.VIP_SYNC, {"publicMac": VR_PUBLIC_MAC, "vips": []})


async def sync(vr: JsonHttpClient) -> None:
    await ok(vr, c.VIP_SYNC, {"publicMac": VR_PUBLIC_MAC, "vips": VIPS})
    await ok(vr, c.PF_SYNC, {"rules": PF})
    await ok(vr, c.EIP_SYNC, {"eips": EIP})


async def each(vr: JsonHttpClient) -> None:
    await ok(vr, c.VIP_SYNC, {"publicMac": VR_PUBLIC_MAC, "vips": VIPS})
    for rule in PF:
        await ok(vr, c.PF_APPLY, {"rules": [rule]})
    for eip in EIP:
        await ok(vr, c.EIP_APPLY, {"eips": [eip]})


def verify(lab: Lab) -> None:
    out = lab.in_ns(lab.vr, "nft", "-j", "list", "table", "ip", c.NFT_TABLE)
    comments = [i["rule"].get("comment", "") for i in json.loads(out)["nftables"] if "rule" in i]
    pf = {x for x in comments if x.startswith("pf=")}
    eip = [x for x in comments if x.startswith("eip=")]
    if len(pf) != RULES or len(eip) != 2 * EIPS:
        raise BenchFailed(f"the table has {len(pf)} rules and {len(eip)} EIP rules")
    addresses = lab.in_ns(lab.vr, "ip", "-4", "-o", "addr", "show", "dev", "zslbp0")
    if addresses.count("/32 ") != len(VIPS):
        raise BenchFailed(f"the public interface holds {addresses.count('/32 ')} VIPs")


async def measure(lab: Lab, vr: JsonHttpClient, runs: int, body: Any, label: str) -> list[float]:
    times = []
    for i in range(runs):
        await empty(vr)
        t0 = time.perf_counter()
        await body(vr)
        times.append(time.perf_counter() - t0)
        await asyncio.to_thread(verify, lab)
        print(f"  {label} run {i + 1}/{runs}: {times[-1]:.3f} s; verified", flush=True)
    return times


async def bench(lab: Lab) -> None:
    vr = await lab.start_agent()
    try:
        await ok(vr, "/init", {"uuid": "bench-vr"})
        await sync(vr)  # warm-up, and the lab works
        await asyncio.to_thread(verify, lab)
        print(f"(a) sync, {SYNC_RUNS} runs", flush=True)
        synced = await measure(lab, vr, SYNC_RUNS, sync, "sync")
        print(f"(b) one per call, {EACH_RUNS} runs", flush=True)
        one_by_one = await measure(lab, vr, EACH_RUNS, each, "per-call")
        await empty(vr)
    finally:
        await vr.close()
        lab.stop_agent()
    a, b = statistics.median(synced), statistics.median(one_by_one)
    print()
    print(f"median of the runs; {RULES} port-forwarding rules + {EIPS} EIPs on {len(VIPS)} VIPs")
    print(f"(a) sync: 3 calls, 3 nft transactions   {a:.3f} s (min {min(synced):.3f})")
    print(
        f"(b) one per call: {RULES + EIPS + 1} calls             {b:.3f} s "
        f"(min {min(one_by_one):.3f}; {b / (RULES + EIPS) * 1e3:.1f} ms a call)"
    )
    print(f"ratio one per call / sync: {b / a:.1f}x")
    print(f"target: sync < {SYNC_TARGET_S:g} s: {verdict(a < SYNC_TARGET_S)} ({a:.3f} s)")
    print(f"target: one per call / sync >= {RATIO_TARGET:.0f}x: {verdict(b / a >= RATIO_TARGET)}")


def main() -> int:
    if os.geteuid() != 0:
        print("vip_nat: needs root (network namespaces)", file=sys.stderr)
        return 1
    nft = run("/usr/sbin/nft", "--version").strip()
    print(
        f"VIP NAT benchmark: Python {platform.python_version()}, {nft.split(' (')[0]}, "
        f"{os.cpu_count()} CPUs; the real router agent in a namespace, public {PUBLIC_NET}"
    )
    print()
    return in_lab("vip_nat", bench)


if __name__ == "__main__":
    sys.exit(main())

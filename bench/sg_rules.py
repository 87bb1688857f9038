"""Security groups on one host: 1,000 rules over 50 NICs applied as the agent applies them
(one rendered ``nft -f`` transaction), against one ``nft`` call per rule line, the way a
rule-at-a-time agent (ZStack's iptables one) would apply them.

Run (as root): ``.venv/bin/python bench/sg_rules.py``.

10 groups of 100 rules each (half Ingress, half Egress; TCP and UDP port ranges, CIDRs,
and a remote group in every tenth rule), 50 NICs, 5 per group.  Everything runs in a
throwaway network namespace (its own ruleset; removed at the end, whatever happens), so
the host's ruleset is never touched.  The per-line side is timed over its first
``SAMPLE`` lines and extrapolated (it would take minutes); the target (the whole apply
under 1 s) is printed, never asserted.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from zsl_securitygroup.contract import ApplyCmd, GroupTO, RuleTO, SgNicTO
from zsl_securitygroup.render import render

from agentkit import nft

LAB = "zsl" + "be" * 5
GROUPS, RULES_PER_GROUP, NICS = 10, 100, 50
RUNS, SAMPLE = 5, 200
TARGET = 1.0


def state() -> ApplyCmd:
    groups = []
    for g in range(GROUPS):
        rules = []
        for r in range(RULES_PER_GROUP):
            port = 1000 + r
            rules.append(
                RuleTO(
                    uuid=f"{g:04d}{r:028d}",
                    type="Ingress" if r % 2 else "Egress",
                    protocol="TCP" if r % 3 else "UDP",
                    start_port=port,
                    end_port=port + r % 5,
                    allowed_cidr="" if r % 10 == 0 else f"10.{g}.{r}.0/24",
                    remote_group_uuid=f"{(g + 1) % GROUPS:032d}" if r % 10 == 0 else "",
                )
            )
        groups.append(GroupTO(uuid=f"{g:032d}", rules=rules))
    nics = [
        SgNicTO(uuid=f"nic{n}", tap=f"zslt{n:09x}0", mac=f"fa:00:00:00:00:{n:02x}",
                ip=f"10.200.0.{n + 10}", gateway="10.200.0.1",
                group_uuids=[f"{n % GROUPS:032d}"])
        for n in range(NICS)
    ]  # fmt: skip
    members = {
        g.uuid: [n.ip for n in nics if g.uuid in n.group_uuids] for g in groups
    }  # every group is some rule's remote group
    return ApplyCmd(nics=nics, groups=groups, remote_members=members, egress_policy="drop")


def split(script: str) -> tuple[str, list[str]]:
    """The script without the rules of the NICs' chains, and those rules as the ``add
    rule`` commands a rule-at-a-time agent would run once the chains exist."""
    skeleton, rules, chain = [], [], ""
    for line in script.splitlines():
        text = line.strip()
        if text.startswith("chain "):
            chain = text.split()[1]
        elif text == "}":
            chain = ""
        elif chain.startswith(("o_", "i_")):
            rules.append(f"add rule bridge zsl_sg_{LAB} {chain} {text}")
            continue
        skeleton.append(line)
    return "\n".join(skeleton) + "\n", rules


async def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root: it needs a network namespace")
    netns = f"zslbench-sg-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    with tempfile.TemporaryDirectory(prefix="zslbench-sg-") as tmp:
        binary = Path(tmp) / "nft"
        binary.write_text(f'#!/bin/sh\nexec ip netns exec {netns} nft "$@"\n')
        binary.chmod(0o755)
        try:
            await bench(str(binary))
        finally:
            subprocess.run(["ip", "netns", "del", netns], check=False)


async def bench(binary: str) -> None:
    cmd = state()
    renders, applies = [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        script = render(LAB, cmd)
        rendered = time.perf_counter()
        await nft.apply_ruleset(script, "bench", binary=binary)
        renders.append(rendered - started)
        applies.append(time.perf_counter() - rendered)
        await nft.apply_ruleset(render(LAB, ApplyCmd()), "bench", binary=binary)
    skeleton, lines = split(script)
    await nft.apply_ruleset(skeleton, "bench", binary=binary)
    started = time.perf_counter()
    for line in lines[:SAMPLE]:
        nft.nft(["-f", "-"], line + "\n", binary=binary)
    per_line = (time.perf_counter() - started) / SAMPLE
    await nft.apply_ruleset(render(LAB, ApplyCmd()), "bench", binary=binary)

    total = statistics.median(r + a for r, a in zip(renders, applies, strict=True))
    naive = per_line * len(lines)
    apply_ms = statistics.median(applies) * 1000
    met = "met" if total < TARGET else "MISSED"
    print(f"security groups: {GROUPS * RULES_PER_GROUP} rules over {NICS} NICs")
    print(f"  {len(lines)} rule lines in the NICs' chains, {len(script.splitlines())} in all")
    print(f"  one transaction: render {statistics.median(renders) * 1000:.0f} ms + nft -f "
          f"{apply_ms:.0f} ms = {total * 1000:.0f} ms (median of {RUNS}; target < {TARGET:g} s: "
          f"{met})")  # fmt: skip
    print(f"  one nft call per rule line: {per_line * 1000:.1f} ms each, {naive:.1f} s for all "
          f"(extrapolated from {SAMPLE})")  # fmt: skip
    print(f"  ratio: {naive / total:.0f}x")


if __name__ == "__main__":
    asyncio.run(main())

"""The router agent's VIP commands (--simulate, over the real socket), the ruleset they
render (golden, and accepted by the real nft in a throwaway namespace), and the
gratuitous ARP frame."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from zsl_vip import contract as c
from zsl_vip.addresses import garp_frame
from zsl_vip.nat import EipRule, render_ruleset
from zsl_vip.vr_agent import SIMULATED_RULESET

from tests.virtual_router.helpers import VrClient
from virtual_router.app import VrAgent

PUB = "02:00:00:00:00:aa"
U1, U2, U3 = (uuid.UUID(int=i).hex for i in (1, 2, 3))


def rule(uuid_: str = U1, **kw: Any) -> dict[str, Any]:
    return {
        "uuid": uuid_,
        "vipIp": "203.0.113.10",
        "vipPortStart": 2222,
        "vipPortEnd": 2222,
        "privateIp": "10.0.0.5",
        "privatePortStart": 22,
        "privatePortEnd": 22,
        "protocolType": "TCP",
        **kw,
    }


def eip(uuid_: str = U3, **kw: Any) -> dict[str, Any]:
    return {"uuid": uuid_, "vipIp": "203.0.113.20", "guestIp": "10.0.0.6", "publicMac": PUB, **kw}


@pytest.fixture
async def vr(short_dir: Path) -> AsyncIterator[tuple[VrClient, Path]]:
    agent = VrAgent(short_dir / "data", short_dir / "token", simulate=True)
    await agent.start(str(short_dir / "vr.sock"))
    client = VrClient(str(short_dir / "vr.sock"), agent.token)
    try:
        yield client, short_dir / "data" / SIMULATED_RULESET
    finally:
        await client.close()
        await agent.stop()


async def test_sync_apply_revoke_and_refusals_that_change_nothing(
    vr: tuple[VrClient, Path],
) -> None:
    client, ruleset = vr
    await client.ok(c.VIP_SYNC, {"publicMac": PUB, "vips": [{"vipUuid": U1, "ip": "203.0.113.10"}]})
    await client.ok(c.PF_SYNC, {"rules": [rule()]})
    await client.ok(c.EIP_APPLY, {"eips": [eip()]})
    text = ruleset.read_text()
    assert f'dnat to 10.0.0.5:22 comment "pf={U1}"' in text
    assert f'snat to 203.0.113.20 comment "eip={U3}"' in text
    for path, body, words in (
        (c.PF_APPLY, {"rules": [rule(U2, vipPortStart=2222, vipPortEnd=2222)]}, "forwards already"),
        (c.PF_APPLY, {"rules": [rule(U2, vipIp="203.0.113.20")]}, "the address of EIP"),
        (c.PF_APPLY, {"rules": [rule(U2, privatePortEnd=23)]}, "of one size"),
        (c.PF_APPLY, {"rules": [rule(U2, protocolType="SCTP")]}, "protocolType"),
        (c.PF_APPLY, {"rules": [rule("x; drop")]}, "uuid"),
        (c.PF_APPLY, {"rules": [rule(U2, privateIp="10.0.0.5\nflush ruleset")]}, "privateIp"),
        (c.EIP_APPLY, {"eips": [eip(U2, vipIp="203.0.113.21")]}, "same guest"),
        (c.VIP_SYNC, {"publicMac": "nope", "vips": []}, "publicMac"),
        (c.PF_SYNC, {"rules": [rule(), rule()]}, "twice"),
    ):
        assert words in await client.fails(path, body), (path, body)
    assert ruleset.read_text() == text
    await client.ok(c.PF_REVOKE, {"uuids": [U1, U2]})
    await client.ok(c.EIP_REVOKE, {"uuids": [U3]})
    await client.ok(c.VIP_SYNC, {"publicMac": PUB, "vips": []})
    assert ruleset.read_text() == f"table ip {c.NFT_TABLE}\ndelete table ip {c.NFT_TABLE}\n"


def test_the_rendered_ruleset() -> None:
    rules = [
        c.PortForwardingRuleTO.model_validate(rule()),
        c.PortForwardingRuleTO.model_validate(
            rule(
                U2,
                vipPortStart=8000,
                vipPortEnd=8002,
                privatePortStart=9000,
                privatePortEnd=9002,
                protocolType="UDP",
                allowedCidr="192.0.2.0/24",
            )
        ),
    ]
    eips = [EipRule(c.EipTO.model_validate(eip()), "zslv0pub")]
    vips = [IPv4Address("203.0.113.10"), IPv4Address("203.0.113.20")]
    shifted = (
        "ip daddr 203.0.113.10 ip saddr 192.0.2.0/24 udp dport 8000-8002 dnat ip to udp dport "
        "map { 8000 : 10.0.0.5 . 9000, 8001 : 10.0.0.5 . 9001, 8002 : 10.0.0.5 . 9002 } "
        f'comment "pf={U2}"'
    )
    assert (
        render_ruleset(vips, rules, eips)
        == f"""table ip zsl_vr_vip
delete table ip zsl_vr_vip
table ip zsl_vr_vip {{
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 203.0.113.10 tcp dport 2222 dnat to 10.0.0.5:22 comment "pf={U1}"
\t\t{shifted}
\t\tip daddr 203.0.113.20 dnat to 10.0.0.6 comment "eip={U3}"
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat - 10; policy accept;
\t\toifname "zslv0pub" ip saddr 10.0.0.6 snat to 203.0.113.20 comment "eip={U3}"
\t}}
\tchain input {{
\t\ttype filter hook input priority filter; policy accept;
\t\tip daddr {{ 203.0.113.10, 203.0.113.20 }} meta l4proto tcp reject with tcp reset comment "vip"
\t\tip daddr {{ 203.0.113.10, 203.0.113.20 }} meta l4proto != icmp reject comment "vip"
\t}}
}}
"""
    )
    assert IPv4Network("192.0.2.0/24") == rules[1].allowed_cidr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a namespace")
def test_the_kernel_takes_the_ruleset() -> None:
    ns = f"zsltest-vip-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        rules = [c.PortForwardingRuleTO.model_validate(rule())]
        text = render_ruleset(
            [IPv4Address("203.0.113.10")], rules, [EipRule(c.EipTO.model_validate(eip()), "lo")]
        )
        for script in (text, text, render_ruleset((), (), ())):  # twice: replaces; then gone
            subprocess.run(
                ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, text=True, check=True
            )
        tables = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "list", "tables"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert tables == ""
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_a_gratuitous_arp_frame() -> None:
    frame = garp_frame(PUB, IPv4Address("203.0.113.10"))
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == bytes.fromhex("0200000000aa")
    assert frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01"  # ARP request
    assert frame[28:32] == frame[38:42] == bytes([203, 0, 113, 10])  # sender == target

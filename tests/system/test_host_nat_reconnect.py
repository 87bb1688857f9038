"""Host NAT on the real host across a host reconnect: the default public network's gateway
address and its lab's nft rules, removed by hand, are back once ReconnectHost says
Connected; other labs' rules in the shared table are never touched."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.network import host_nat
from contracts.names import lab_id
from tests.conftest import ok
from tests.system.net_lab import running_node, sh

pytestmark = pytest.mark.system


def table_rules() -> list[dict[str, Any]]:
    out = sh("nft", "-j", "-a", "list", "table", host_nat.FAMILY, host_nat.TABLE, check=False)
    return [i["rule"] for i in json.loads(out)["nftables"] if "rule" in i] if out else []


def lab_rules(lab: str, mine: bool = True) -> list[dict[str, Any]]:
    """``lab``'s rules (the other rules when not ``mine``)."""
    return [r for r in table_rules() if (f" lab={lab} " in r.get("comment", "")) == mine]


def shape(rules: list[dict[str, Any]]) -> list[str]:
    """The rules without their handles, comparable across rewrites."""
    return sorted(json.dumps({k: v for k, v in r.items() if k != "handle"}) for r in rules)


async def test_host_nat_is_back_after_a_reconnect() -> None:
    async with running_node("hostnat") as lab:
        node = lab.node
        tags = await ok(node, "QuerySystemTag", conditions=["tag=hostNat"])
        [public] = await ok(node, "QueryL3Network", conditions=[f"uuid={tags[0]['resourceUuid']}"])
        [l2] = await ok(node, "QueryL2Network", conditions=[f"uuid={public['l2NetworkUuid']}"])
        [ip_range] = await ok(node, "QueryIpRange", conditions=[f"l3NetworkUuid={public['uuid']}"])
        bridge = l2["bridgeName"]
        gateway = f"{ip_range['gateway']}/{ip_range['networkCidr'].split('/')[1]}"
        me = lab_id(node.data_dir)

        def addresses() -> str:
            return sh("ip", "-o", "-4", "addr", "show", "dev", bridge)

        assert f"inet {gateway} " in addresses()
        before = lab_rules(me)
        assert {r["chain"] for r in before} == {"forward", "postrouting", "input"}
        others = shape(lab_rules(me, mine=False))  # other labs' (other sessions' tests)

        # By hand: the address goes, and the lab's input and postrouting rules.
        sh("ip", "addr", "del", gateway, "dev", bridge)
        for rule in before:
            if rule["chain"] in ("input", "postrouting"):
                sh(
                    "nft", "delete", "rule", host_nat.FAMILY, host_nat.TABLE, rule["chain"],
                    "handle", str(rule["handle"]),
                )  # fmt: skip
        assert f"inet {gateway} " not in addresses()

        host = await ok(node, "ReconnectHost", uuid=lab.host_uuid)
        assert host["status"] == "Connected"
        assert f"inet {gateway} " in addresses()
        assert shape(lab_rules(me)) == shape(before)
        assert shape(lab_rules(me, mine=False)) == others

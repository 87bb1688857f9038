"""The host's ruleset: golden text for a fixed state, every value checked before it
reaches the script, and (as root) the kernel accepting it in a throwaway namespace."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from zsl_securitygroup.agent_plugin import SecurityGroupCommands, check_bridge_netfilter
from zsl_securitygroup.contract import ApplyCmd, GroupTO, RuleTO, SgNicTO, ShowRsp
from zsl_securitygroup.render import render

from agentkit import nft as nftkit
from agentkit.errors import AgentError, ArgumentError
from tests.agentkit.test_nft import in_netns  # noqa: F401  (the fixture)
from tests.plugins.securitygroup.conftest import AgentCtx

GOLDEN = Path(__file__).parent / "golden"
LAB = "zsl0123456789"
G_WEB, G_CLIENTS = "a" * 32, "b" * 32


def state(**changes: Any) -> ApplyCmd:
    """Two NICs: web (ingress TCP 80 from clients, ICMP, 10.0.0.0/24; egress UDP to
    10.1.0.0/16) and web + clients."""
    web = GroupTO(
        uuid=G_WEB,
        rules=[
            RuleTO(uuid="r1", type="Ingress", protocol="TCP", start_port=80, end_port=80,
                   remote_group_uuid=G_CLIENTS),
            RuleTO(uuid="r2", type="Ingress", protocol="ICMP"),
            RuleTO(uuid="r3", type="Egress", protocol="UDP", start_port=1000, end_port=2000,
                   allowed_cidr="10.1.0.0/16"),
            RuleTO(uuid="r4", type="Ingress", protocol="ALL", allowed_cidr="10.0.0.0/24"),
        ],
    )  # fmt: skip
    cmd = ApplyCmd(
        nics=[
            SgNicTO(uuid="n1", tap="zslt0123abcde0", mac="fa:00:00:00:00:01", ip="10.0.0.5",
                    gateway="10.0.0.1", group_uuids=[G_WEB]),
            SgNicTO(uuid="n2", tap="zslt0123abcdf0", mac="fa:00:00:00:00:02", ip="10.0.0.6",
                    gateway="10.0.0.1", group_uuids=[G_WEB, G_CLIENTS]),
        ],
        groups=[web, GroupTO(uuid=G_CLIENTS)],
        remote_members={G_CLIENTS: ["10.0.0.6"]},
    )  # fmt: skip
    return cmd.model_copy(update=changes)


def test_the_ruleset_of_two_nics_is_the_golden_one() -> None:
    assert render(LAB, state()) == (GOLDEN / "two_nics.nft").read_text()


def test_no_nic_removes_the_labs_tables_and_nothing_else() -> None:
    assert render(LAB, ApplyCmd()) == (
        f"table bridge zsl_sg_{LAB} {{}}\ndelete table bridge zsl_sg_{LAB}\n"
        f"table inet zsl_sgct_{LAB} {{}}\ndelete table inet zsl_sgct_{LAB}\n"
    )


def test_the_policies_end_the_chains() -> None:
    text = render(LAB, state(egress_policy="drop", ingress_policy="accept"))
    assert text.count('\t\tdrop comment "egress policy"') == 2
    assert text.count('\t\taccept comment "ingress policy"') == 2


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("tap", "zslt0 } flush ruleset"),
        ("tap", "eth0"),
        ("mac", "fa:00:00:00:00"),
        ("ip", "10.0.0.5; flush ruleset"),
        ("gateway", "10.0.0.256"),
    ],
)
def test_a_value_the_grammar_could_misread_is_refused_naming_it(field: str, bad: str) -> None:
    cmd = state()
    nic = cmd.nics[0].model_copy(update={field: bad})
    with pytest.raises(ArgumentError, match=r"security groups: .* is not valid"):
        render(LAB, cmd.model_copy(update={"nics": [nic]}))


def test_bad_rules_and_labs_are_refused() -> None:
    cmd = state()
    rule = RuleTO(uuid="r9", type="Ingress", protocol="TCP", start_port=90, end_port=80)
    groups = [GroupTO(uuid=G_WEB, rules=[rule]), GroupTO(uuid=G_CLIENTS)]
    with pytest.raises(ArgumentError, match="port range of rule r9"):
        render(LAB, cmd.model_copy(update={"groups": groups}))
    with pytest.raises(ArgumentError, match="lab id"):
        render("zsl_x; flush ruleset", cmd)
    with pytest.raises(ArgumentError, match="remote group of rule r1"):
        render(LAB, cmd.model_copy(update={"remote_members": {}}))


def test_without_br_netfilter_the_agent_says_what_to_do(tmp_path: Path) -> None:
    off = tmp_path / "bridge-nf-call-iptables"
    off.write_text("0\n")
    with pytest.raises(AgentError, match="load br_netfilter"):
        check_bridge_netfilter(off)
    with pytest.raises(AgentError, match="it is absent"):
        check_bridge_netfilter(tmp_path / "missing")


# -- the kernel's view (root) -------------------------------------------------------------------
root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a namespace")


@root
async def test_the_kernel_takes_the_ruleset_and_a_second_apply_replaces_it(
    in_netns: None,  # noqa: F811
) -> None:
    binary = nftkit.NFT
    await nftkit.apply_ruleset(render(LAB, state()), "test", binary=binary)
    listed = await nftkit.list_table("bridge", f"zsl_sg_{LAB}", binary=binary)
    assert 'comment "rule=r1"' in listed and "chain o_zslt0123abcdf0" in listed
    assert "ct state established,related" in await nftkit.list_table(
        "inet", f"zsl_sgct_{LAB}", binary=binary
    )
    one_nic = state(nics=state().nics[:1])
    await nftkit.apply_ruleset(render(LAB, one_nic), "test", binary=binary)
    listed = await nftkit.list_table("bridge", f"zsl_sg_{LAB}", binary=binary)
    assert "zslt0123abcdf0" not in listed and "chain o_zslt0123abcde0" in listed
    await nftkit.apply_ruleset(render(LAB, ApplyCmd()), "test", binary=binary)
    assert await nftkit.list_table("bridge", f"zsl_sg_{LAB}", binary=binary) == ""
    assert await nftkit.list_table("inet", f"zsl_sgct_{LAB}", binary=binary) == ""


@root
async def test_a_bridge_table_cannot_use_conntrack_on_this_kernel(
    in_netns: None,  # noqa: F811
) -> None:
    """Why the inet table marks established packets: the fact the design stands on."""
    script = (
        "table bridge zsl_t {\n\tchain c {\n\t\ttype filter hook forward priority -200;\n"
        "\t\tct state established,related accept\n\t}\n}\n"
    )
    with pytest.raises(AgentError, match=r"Protocol error|Operation not supported"):
        await nftkit.apply_ruleset(script, "test", binary=nftkit.NFT)


async def test_the_simulator_keeps_the_rendered_text() -> None:
    plugin = SecurityGroupCommands(AgentCtx("Simulator", LAB))  # type: ignore[arg-type]
    await plugin.apply(state().to_json(), None)  # type: ignore[arg-type]
    shown = await plugin.show({}, None)  # type: ignore[arg-type]
    assert shown == ShowRsp(ruleset=render(LAB, state()), taps=["zslt0123abcde0", "zslt0123abcdf0"])
    with pytest.raises(
        ArgumentError,
        match=r"field 'egressPolicy': Input should be 'accept' or 'drop' \(got 'reject'\)",
    ):
        await plugin.apply({**state().to_json(), "egressPolicy": "reject"}, None)  # type: ignore[arg-type]


@root
async def test_on_kvm_the_agent_applies_and_lists_the_tables(in_netns: None) -> None:  # noqa: F811
    plugin = SecurityGroupCommands(AgentCtx("KVM", LAB))  # type: ignore[arg-type]
    plugin.nft_binary = nftkit.NFT
    await plugin.apply(state().to_json(), None)  # type: ignore[arg-type]
    shown = await plugin.show({}, None)  # type: ignore[arg-type]
    assert shown.taps == ["zslt0123abcde0", "zslt0123abcdf0"]
    assert 'comment "rule=r3"' in shown.ruleset
    await plugin.apply(ApplyCmd().to_json(), None)  # type: ignore[arg-type]
    assert (await plugin.show({}, None)).ruleset == ""  # type: ignore[arg-type]

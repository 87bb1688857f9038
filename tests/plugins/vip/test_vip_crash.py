"""A node killed (SIGKILL) at any step of the VIP plugin's chains leaves the database and
the router agreeing: after the restart, an interrupted create or attach is rolled back
(no new row, nothing attached, nothing in the router), an interrupted detach is run on,
and the router holds exactly the rules and EIPs the database says are attached."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from zsl_vip import flows

from core.kernel.flow import FlowChainStatus
from tests import faults
from tests.conftest import ok, write_config
from tests.core.virtual_router.crash_lab import lab_node
from tests.plugins.vip import crash_lab

CHAINS = {
    flows.CREATE_PF: ("create-pf", flows.CREATE),
    flows.CREATE_EIP: ("create-eip", flows.CREATE),
    flows.ATTACH_PF: ("attach-pf", flows.ATTACH),
    flows.DETACH_PF: ("detach-pf", flows.DETACH),
}
CASES = [(chain, cut) for chain, (_, fl) in CHAINS.items() for cut in range(len(fl) + 1)]


def _run_node(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return faults.run_lab("tests.plugins.vip.crash_lab", config, *args)


@pytest.fixture(scope="module")
def lab_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = write_config(tmp_path_factory.mktemp("vip-crash"))
    made = _run_node(config, "setup")
    assert made.returncode == 0, made.stderr[-3000:]
    return config


@pytest.mark.parametrize("chain,cut", CASES, ids=[f"{c}-{cut}" for c, cut in CASES])
async def test_a_node_killed_in_a_vip_chain_leaves_db_and_router_agreeing(
    lab_config: Path, chain: str, cut: int
) -> None:
    action, flow_list = CHAINS[chain]
    faulty = [*flow_list[:cut], faults.KILL, *flow_list[cut:]]
    write_config(lab_config.parent, f"[chains]\n{chain} = {json.dumps(faulty)}\n")
    (lab_config.parent / "data" / faults.MARKER).unlink(missing_ok=True)
    killed = _run_node(lab_config, action)
    assert killed.returncode == -9, killed.stderr[-3000:]

    write_config(lab_config.parent)
    node = lab_node(lab_config)
    await node.start()
    try:
        statuses = {r.chain_name: r.status for r in node.recovered}
        if chain == flows.DETACH_PF:  # resumable: run on to its end
            assert statuses == {chain: FlowChainStatus.SUCCEEDED}, node.recovered
        elif cut == 0:  # killed before anything was done: nothing to recover
            assert statuses in ({}, {chain: FlowChainStatus.ROLLED_BACK}), node.recovered
        else:
            assert statuses == {chain: FlowChainStatus.ROLLED_BACK}, node.recovered
        lab, _nic = await crash_lab.lab_of(node, lab_config.parent / "lab")
        rules = await ok(node, "QueryPortForwardingRule")
        eips = await ok(node, "QueryEip")
        if chain in (flows.CREATE_PF, flows.CREATE_EIP):  # the row went with the rollback
            assert not [r for r in rules if r["vipPortStart"] == 80] and not eips
        attached = {r["uuid"] for r in [*rules, *eips] if r["vmNicUuid"]}
        assert not attached, "an interrupted attach was not undone, or a detach not finished"
        vips = await ok(node, "QueryVip")
        assert all((v["peerL3NetworkUuid"], v["useFor"] in ("", "PortForwarding")) == (None, True)
                   for v in vips), vips  # fmt: skip
        ruleset = await lab.ruleset()
        assert "pf=" not in ruleset and "eip=" not in ruleset, ruleset
        # Clean up for the next case: rules and EIPs, then their VIPs.
        for rule in rules:
            await ok(node, "DeletePortForwardingRule", uuid=rule["uuid"])
        for eip in eips:
            await ok(node, "DeleteEip", uuid=eip["uuid"])
        for vip in vips:
            await ok(node, "DeleteVip", uuid=vip["uuid"])
    finally:
        await node.stop()

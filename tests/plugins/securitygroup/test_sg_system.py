"""Issue 15's acceptance for security groups, on the real host (qemu:///system, the
host's bridge, nftables): three tiny guests A, B, C on one private network; A's group
admits TCP 80 from B's address, then from B's group: B gets A's answer, C does not;
egress deny; a forged source address from a guest is dropped; a rule change is effective
at once; a host reconnect brings back tables deleted by hand; destroying A removes its
chains, and the lab's tables go with the last NIC.

Only the guests, their router and the host's project bridge carry traffic (no upstream:
the router's public side is an isolated bridge)."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from contracts.names import lab_id, tap_name
from tests.conftest import ok
from tests.system.net_lab import GuestConsole, Lab, running_node

pytestmark = pytest.mark.system

PAGE = "ZSL-SG-PAGE"
SPOOFED = "10.77.0.250"


def tables(lab: Lab) -> dict[str, str]:
    """The lab's security-group tables on the host, as ``nft list`` prints them."""
    lab_name = lab_id(lab.node.data_dir)
    found = {}
    for family, prefix in (("bridge", "zsl_sg_"), ("inet", "zsl_sgct_")):
        done = subprocess.run(
            ["nft", "list", "table", family, prefix + lab_name],
            capture_output=True, text=True, timeout=15, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            found[family] = done.stdout
    return found


def remove_tables(lab: Lab) -> None:
    """Whatever a failed run left of the lab's tables."""
    lab_name = lab_id(lab.node.data_dir)
    for family, prefix in (("bridge", "zsl_sg_"), ("inet", "zsl_sgct_")):
        subprocess.run(["nft", "delete", "table", family, prefix + lab_name],
                       capture_output=True, timeout=15, check=False)  # fmt: skip


async def serve(console: GuestConsole) -> None:
    """A TCP server on port 80 that answers every connection with :data:`PAGE` (busybox
    nc: the static busybox's wget and httpd are not used, its wget crashes)."""
    rc, out = await console.run(
        f"(while true; do echo {PAGE} | nc -l -p 80; done) >/dev/null 2>&1 & true"
    )
    assert rc == 0, out


async def answer(console: GuestConsole, ip: str) -> tuple[bool, str]:
    """Whether the guest gets ``ip``'s answer on port 80 within 3 s; what it printed."""
    rc, out = await console.run(f"nc -w 3 {ip} 80 </dev/null", timeout=30)
    return rc == 0 and PAGE in out.split("</dev/null", 1)[-1], out


async def fetches(console: GuestConsole, ip: str) -> bool:
    return (await answer(console, ip))[0]


async def pings(console: GuestConsole, ip: str, source: str) -> bool:
    rc, _ = await console.run(f"ping -c 2 -W 2 -I {source} {ip}", timeout=30)
    return rc == 0


async def test_a_security_group_guards_a_guest_on_the_real_host() -> None:
    async with running_node("sg") as lab:
        try:
            await scenario(lab)
        finally:
            remove_tables(lab)


async def scenario(lab: Lab) -> None:
    node = lab.node
    await lab.make_networks()
    private = lab.networks["private"]
    guests: dict[str, tuple[dict[str, Any], GuestConsole]] = {}
    for name in ("a", "b", "c"):
        guests[name] = await lab.boot(name)
    (a, a_con), (b, b_con), (c, c_con) = guests["a"], guests["b"], guests["c"]
    for console in (a_con, c_con):
        await serve(console)
    for client in (b_con, c_con):
        got, out = await answer(client, a["nic"]["ip"])
        assert got, f"before any group, no answer from A:\n{out}"

    web = await ok(node, "CreateSecurityGroup", name="web")
    clients = await ok(node, "CreateSecurityGroup", name="clients")
    for group in (web, clients):
        await ok(node, "AttachSecurityGroupToL3Network", securityGroupUuid=group["uuid"],
                 l3NetworkUuid=private["uuid"])  # fmt: skip
    rule = {"securityGroupUuid": web["uuid"], "type": "Ingress", "protocol": "TCP",
            "startPort": 80, "endPort": 80, "allowedCidr": f"{b['nic']['ip']}/32"}  # fmt: skip
    admit_b = await ok(node, "AddSecurityGroupRule", **rule)
    await ok(node, "AddVmNicToSecurityGroup", securityGroupUuid=web["uuid"],
             vmNicUuids=[a["nic"]["uuid"]])  # fmt: skip
    await ok(node, "AddVmNicToSecurityGroup", securityGroupUuid=clients["uuid"],
             vmNicUuids=[b["nic"]["uuid"]])  # fmt: skip
    listed = tables(lab)
    assert f'comment "rule={admit_b["uuid"]}"' in listed["bridge"], listed
    assert f"chain o_{tap_name(a['uuid'], 0)}" in listed["bridge"]

    # B is admitted by its address; C, on the same L2, is not.
    assert await fetches(b_con, a["nic"]["ip"])
    assert not await fetches(c_con, a["nic"]["ip"])
    # A's egress is open by default; B, in a group, still gets DHCP from its router.
    assert await fetches(a_con, c["nic"]["ip"])
    rc, out = await b_con.run("udhcpc -q -n -f -i eth0 -t 4 -T 2 -s /bin/true", timeout=40)
    assert rc == 0 and f"lease of {b['nic']['ip']} obtained" in out, out

    # A forged source address from B is dropped (C filters nothing: only B's chain can).
    assert await pings(b_con, c["nic"]["ip"], b["nic"]["ip"])
    rc, out = await b_con.run(f"ip addr add {SPOOFED}/24 dev eth0")
    assert rc == 0, out
    assert not await pings(b_con, c["nic"]["ip"], SPOOFED)
    await b_con.run(f"ip addr del {SPOOFED}/24 dev eth0")

    # Egress deny: A reaches no one now; answers to B still leave (established).
    await ok(node, "UpdateGlobalConfig", category="securityGroup", name="egress.defaultPolicy",
             value="drop")  # fmt: skip
    assert not await fetches(a_con, c["nic"]["ip"])
    await ok(node, "UpdateGlobalConfig", category="securityGroup", name="egress.defaultPolicy",
             value="accept")  # fmt: skip
    assert await fetches(a_con, c["nic"]["ip"])

    # A rule change on a running VM is effective when the API replies (within a second).
    await ok(node, "DeleteSecurityGroupRule", ruleUuids=[admit_b["uuid"]])
    assert not await fetches(b_con, a["nic"]["ip"])
    started = time.monotonic()
    await ok(node, "AddSecurityGroupRule", **rule)
    assert time.monotonic() - started < 1.0
    assert await fetches(b_con, a["nic"]["ip"])

    # By B's group instead of its address: the core turns the group into its addresses.
    by_group = await ok(
        node, "AddSecurityGroupRule", securityGroupUuid=web["uuid"], type="Ingress",
        protocol="TCP", startPort=80, endPort=80, remoteSecurityGroupUuid=clients["uuid"],
    )  # fmt: skip
    await ok(node, "DeleteSecurityGroupRule",
             ruleUuids=[r["uuid"] for r in await ok(node, "QuerySecurityGroupRule")
                        if r["uuid"] != by_group["uuid"]])  # fmt: skip
    assert await fetches(b_con, a["nic"]["ip"])
    assert not await fetches(c_con, a["nic"]["ip"])

    # Tables removed by hand come back with the host's reconnect, and guard again.
    before = tables(lab)
    remove_tables(lab)
    assert tables(lab) == {}
    await ok(node, "ReconnectHost", uuid=lab.host_uuid)
    assert tables(lab) == before
    assert not await fetches(c_con, a["nic"]["ip"])

    # Destroying A removes its chains; the last NIC's going removes the lab's tables.
    await ok(node, "DestroyVmInstance", uuid=a["uuid"])
    listed = tables(lab)
    assert tap_name(a["uuid"], 0) not in listed["bridge"]
    assert tap_name(b["uuid"], 0) in listed["bridge"]
    await ok(node, "DestroyVmInstance", uuid=b["uuid"])
    assert tables(lab) == {}

"""User data through the API on a simulator host: the userData parameter and the tags it
becomes, what the router's metadata server is told (its simulated agent writes it down)
as VMs come and go and the router reconnects, the SMBIOS seed, and refusals that change
nothing."""

from __future__ import annotations

import base64
from typing import Any

from zsl_userdata.contract import SEED
from zsl_userdata.core_plugin import UserdataPlugin

from contracts import kvm
from core.kernel.errors import SysErrors
from core.kernel.local_api import describe_bus
from core.vm.spec import VmInstanceSpec
from tests.conftest import fails, ok
from tests.plugins.userdata.conftest import UserdataLab

ARG = SysErrors.INVALID_ARGUMENT
SCRIPT = b"#!/bin/sh\necho HELLO-$((6*7))\n"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7 alice@lab"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def nic_of(lab: UserdataLab, vm: dict[str, Any]) -> dict[str, Any]:
    [nic] = await ok(lab.node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    return nic


async def test_user_data_and_keys_reach_the_router_and_follow_the_vm(ud_lab: UserdataLab) -> None:
    node = ud_lab.node
    vm = await ud_lab.net.create_vm("Web 1", userData=b64(SCRIPT), systemTags=[f"sshkey::{KEY}"])
    tags = await ok(node, "QuerySystemTag", conditions=[f"resourceUuid={vm['uuid']}"])
    assert sorted(t["tag"] for t in tags) == sorted([f"userdata::{b64(SCRIPT)}", f"sshkey::{KEY}"])
    nic = await nic_of(ud_lab, vm)
    router = await ud_lab.net.router()
    assert router is not None
    [guest] = await ok(
        node, "QueryVmNic", conditions=[f"vmInstanceUuid={router['uuid']}", "ip=10.10.0.1"]
    )
    served = await ud_lab.served()
    assert served == {
        "guestMac": guest["mac"],
        "entries": {
            nic["ip"]: {
                "ip": nic["ip"],
                "mac": nic["mac"],
                "vmUuid": vm["uuid"],
                "hostname": "web-1",
                "userData": b64(SCRIPT),
                "sshKeys": [KEY],
            }
        },
    }
    plain = await ud_lab.net.create_vm("plain")
    plain_nic = await nic_of(ud_lab, plain)
    entries = (await ud_lab.served())["entries"]
    assert (entries[plain_nic["ip"]]["userData"], entries[plain_nic["ip"]]["sshKeys"]) == ("", [])

    await ok(node, "StopVmInstance", uuid=vm["uuid"])
    assert set((await ud_lab.served())["entries"]) == {plain_nic["ip"]}
    await ok(node, "StartVmInstance", uuid=vm["uuid"])
    assert set((await ud_lab.served())["entries"]) == {nic["ip"], plain_nic["ip"]}
    await ok(node, "DestroyVmInstance", uuid=plain["uuid"])
    assert set((await ud_lab.served())["entries"]) == {nic["ip"]}


async def test_a_reconnect_replays_every_entry(ud_lab: UserdataLab) -> None:
    vm = await ud_lab.net.create_vm("a", userData=b64(b"#cloud-config\n{}\n"))
    router = await ud_lab.net.router()
    assert router is not None
    before = await ud_lab.served()
    (ud_lab.net.router_dir(router) / "userdata.json").unlink()
    await ok(ud_lab.node, "ReconnectVirtualRouter", uuid=router["uuid"])
    assert await ud_lab.served() == before
    [served] = before["entries"].values()
    assert served["vmUuid"] == vm["uuid"]


async def test_bad_user_data_is_refused_and_makes_no_vm(ud_lab: UserdataLab) -> None:
    node, net = ud_lab.node, ud_lab.net
    base = {
        "name": "bad",
        "instanceOfferingUuid": net.lab.offering["uuid"],
        "imageUuid": net.lab.image_uuid,
        "l3NetworkUuids": [net.private_l3["uuid"]],
    }
    await ok(node, "UpdateGlobalConfig", category="userdata", name="maxSize", value="16")
    for params, words in (
        ({"userData": "not-base64!"}, "user data must be base64, got 'not-base64!'"),
        ({"userData": b64(b"x" * 17)}, "user data holds 17 bytes, more than userdata.maxSize"),
        (
            {"systemTags": [f"userdata::{b64(b'a')}", f"userdata::{b64(b'b')}"]},
            "a VM has at most one userdata tag, got 2",
        ),
        (
            {"userData": b64(b"a"), "systemTags": [f"userdata::{b64(b'b')}"]},
            "a VM has at most one userdata tag, got 2",
        ),
        ({"systemTags": ["userdata::%%%"]}, "user data must be base64"),
        ({"systemTags": ["sshkey::a\tb"]}, "an sshkey tag holds one line of printable ASCII"),
    ):
        assert words in await fails(node, "CreateVmInstance", ARG, **base, **params)
    assert await ok(node, "QueryVmInstance", conditions=["name=bad"]) == []
    # Wrapped base64 (as `base64` writes it) is one value.
    vm = await net.create_vm("wrapped", userData="aGVs\nbG8=")
    [tag] = await ok(node, "QuerySystemTag", conditions=[f"resourceUuid={vm['uuid']}"])
    assert tag["tag"] == "userdata::aGVsbG8="
    # Only CreateVmInstance takes the tags.
    refused = await fails(
        node,
        "CreateSystemTag",
        ARG,
        resourceType="VmInstanceVO",
        resourceUuid=vm["uuid"],
        tag=f"sshkey::{KEY}",
    )
    assert "cannot be created by users" in refused


async def test_vms_on_a_served_network_get_the_nocloud_seed(ud_lab: UserdataLab) -> None:
    plugin = ud_lab.node.plugin(UserdataPlugin)
    cmd = kvm.StartVmCmd(
        vm_uuid="v", cpu_num=1, memory_size=1, root_volume=kvm.VolumeTO(install_path="/r")
    )

    def spec(*l3s: str) -> VmInstanceSpec:
        return VmInstanceSpec(
            vm_uuid="v",
            name="v",
            cpu_num=1,
            memory_size=1,
            nics=[{"l3NetworkUuid": l3, "ip": "10.10.0.9"} for l3 in l3s],
        )

    private, public = ud_lab.net.private_l3["uuid"], ud_lab.net.public_l3["uuid"]
    assert (await plugin.before_start_vm(spec(public, private), cmd)).smbios_serial == SEED
    assert (await plugin.before_start_vm(spec(public), cmd)).smbios_serial == ""
    assert (await plugin.before_start_vm(spec(), cmd)).smbios_serial == ""
    assert SEED == "ds=nocloud-net;s=http://169.254.169.254/nocloud/"


async def test_zcli_help_lists_the_parameter(ud_lab: UserdataLab) -> None:
    assert ud_lab.node.bus is not None
    [create] = [a for a in describe_bus(ud_lab.node.bus) if a["name"] == "CreateVmInstance"]
    assert create["params"]["userData"].startswith("string: base64 of the VM's user data")


def test_zcli_help_without_a_node_lists_the_parameter() -> None:
    from core.kernel.local_api import describe_installed_apis

    apis = {a["name"]: a for a in describe_installed_apis(["*"], [])}
    assert "userData" in apis["CreateVmInstance"]["params"]
    without = {a["name"]: a for a in describe_installed_apis(["*"], ["userdata"])}
    assert "userData" not in without["CreateVmInstance"]["params"]

"""First start on a simulator host: the lab a user needs to create a VM with nothing but
an image, an offering and a network, made once, undone when a step fails."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from core.bootstrap.plugin import OPTIONAL_SERVICES
from core.host.plugin import HostPlugin
from core.kernel.api import ApiMessage
from core.kernel.errors import operr
from core.kernel.extensions import Plugin
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.kernel.service import GlobalApiInterceptor
from tests.conftest import load_props, make_node, ok, write_config

MiB = 1024**2
IMAGE_NAME = "tiny-guest"


def _plugin_services() -> list[str]:
    """The optional services installed plugins add to the virtual router."""
    added = {
        t
        for ep in entry_points(group="zstack_lite.plugins")
        if getattr(cls := ep.load(), "provider_type", None) == "VirtualRouter"
        for t in getattr(cls, "service_types", ())
    }
    return [t for t in OPTIONAL_SERVICES if t in added]


PLUGIN_SERVICES = _plugin_services()
DONE = {
    "bootstrap::simulator",
    "bootstrap::public-network",
    "bootstrap::private-network",
    *(f"bootstrap::private-network-{t}" for t in PLUGIN_SERVICES),
    "bootstrap::instance-offering",
    "bootstrap::image",
}
SNAPSHOT_QUERIES = (
    "QueryZone",
    "QueryCluster",
    "QueryHost",
    "QueryBackupStorage",
    "QueryPrimaryStorage",
    "QueryL2Network",
    "QueryL3Network",
    "QueryIpRange",
    "QueryNetworkServiceL3NetworkRef",
    "QueryVirtualRouterOffering",
    "QueryInstanceOffering",
    "QueryImage",
)


def lab_props(root: Path, image: str = f"{IMAGE_NAME}.qcow2") -> Properties:
    """A simulator bootstrap whose image is ``image`` (relative to the config file)."""
    return load_props(
        write_config(root, f'[bootstrap]\nlocal_host = "simulator"\nimage = "{image}"\n')
    )


def make_image(path: Path) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


async def snapshot(node: ManagementNode) -> dict[str, list[tuple[str, Any]]]:
    """(uuid, name) of everything the bootstrap may make, and its done tags."""
    found = {
        api: sorted((i["uuid"], i.get("name")) for i in await ok(node, api))
        for api in SNAPSHOT_QUERIES
    }
    found["done"] = sorted((t["uuid"], t["tag"]) for t in await done_tags(node))
    return found


async def done_tags(node: ManagementNode) -> list[dict[str, Any]]:
    return [
        t
        for t in await ok(node, "QuerySystemTag", conditions=["resourceType=ManagementNodeVO"])
        if t["tag"].startswith("bootstrap::")
    ]


async def connected(node: ManagementNode) -> None:
    """Wait for the host the node reconnects in the background at a restart (its status
    reads Connected, from the last run, before that)."""
    if reconnecting := set(node.plugin(HostPlugin)._reconnecting):
        await asyncio.wait(reconnecting, timeout=30)
    assert [h["status"] for h in await ok(node, "QueryHost")] == ["Connected"]


async def private_l3(node: ManagementNode) -> dict[str, Any] | None:
    found = await ok(node, "QueryL3Network", conditions=["category=Private"])
    assert len(found) <= 1
    return found[0] if found else None


async def test_first_start_makes_a_lab_once(tmp_path: Path) -> None:
    make_image(tmp_path / f"{IMAGE_NAME}.qcow2")
    props = lab_props(tmp_path)
    assert props["bootstrap.image"] == tmp_path / f"{IMAGE_NAME}.qcow2"
    async with ManagementNode(props, serve_socket=False) as node:
        [host] = await ok(node, "QueryHost")
        assert host["status"] == "Connected"
        [backup] = await ok(node, "QueryBackupStorage")
        [primary] = await ok(node, "QueryPrimaryStorage")
        assert backup["url"] == str(props.data_dir / "backup-storage")
        assert primary["url"] == str(props.data_dir / "primary-storage")
        assert (props.data_dir / "primary-storage").is_dir()
        # The default public network: the host is its gateway, with the zone's VR offering.
        [public] = await ok(node, "QueryL3Network", conditions=["category=Public"])
        [tag] = await ok(node, "QuerySystemTag", conditions=[f"resourceUuid={public['uuid']}"])
        assert tag["tag"] == "hostNat"
        ranges = {r["l3NetworkUuid"]: r for r in await ok(node, "QueryIpRange")}
        assert (ranges[public["uuid"]]["networkCidr"], ranges[public["uuid"]]["gateway"]) == (
            "192.168.253.0/24",
            "192.168.253.1",
        )
        [offering] = await ok(node, "QueryVirtualRouterOffering")
        assert offering["publicNetworkUuid"] == public["uuid"] and offering["isDefault"]
        # The default private network: its own isolated L2, DHCP, DNS and SNAT by the router.
        private = await private_l3(node)
        assert private is not None
        assert (private["name"], private["dnsDomain"]) == ("private", "lab.lan")
        assert (ranges[private["uuid"]]["networkCidr"], ranges[private["uuid"]]["gateway"]) == (
            "10.0.10.0/24",
            "10.0.10.1",
        )
        assert private["l2NetworkUuid"] != public["l2NetworkUuid"]
        [l2] = await ok(node, "QueryL2Network", conditions=[f"uuid={private['l2NetworkUuid']}"])
        assert l2["name"] == "private"
        [provider] = await ok(
            node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"]
        )
        refs = await ok(
            node, "QueryNetworkServiceL3NetworkRef", conditions=[f"l3NetworkUuid={private['uuid']}"]
        )
        assert {(r["networkServiceProviderUuid"], r["networkServiceType"]) for r in refs} == {
            (provider["uuid"], "DHCP"),
            (provider["uuid"], "DNS"),
            (provider["uuid"], "SNAT"),
            *((provider["uuid"], t) for t in PLUGIN_SERVICES),
        }
        [small] = await ok(node, "QueryInstanceOffering")
        assert (small["name"], small["cpuNum"], small["memorySize"]) == ("small", 1, 256 * MiB)
        [image] = await ok(node, "QueryImage")
        assert (image["name"], image["status"], image["format"]) == (IMAGE_NAME, "Ready", "qcow2")
        assert image["url"] == str(tmp_path / f"{IMAGE_NAME}.qcow2")
        # A real image: its copy is on the backup storage.
        copies = [p.name for p in (props.data_dir / "backup-storage").iterdir()]
        assert [c.split(".")[0] for c in copies] == [image["uuid"]]
        assert {t["tag"] for t in await done_tags(node)} == DONE
        before = await snapshot(node)
    async with ManagementNode(props, serve_socket=False) as node:
        assert await snapshot(node) == before  # a second start changes nothing
        await connected(node)
        # What the user deletes is not brought back.
        await ok(node, "DeleteInstanceOffering", uuid=small["uuid"])
        await ok(node, "DeleteImage", uuid=image["uuid"])
        await ok(node, "ExpungeImage", uuid=image["uuid"])
        await ok(node, "DeleteL3Network", uuid=private["uuid"])
        await ok(node, "DeleteL2Network", uuid=private["l2NetworkUuid"])
        await ok(node, "DeleteHost", uuid=host["uuid"])
    async with ManagementNode(props, serve_socket=False) as node:
        assert await ok(node, "QueryHost") == []
        assert len(await ok(node, "QueryZone")) == 1
        assert [n["uuid"] for n in await ok(node, "QueryL3Network")] == [public["uuid"]]
        assert await ok(node, "QueryInstanceOffering") == []
        assert await ok(node, "QueryImage") == []


async def test_a_vm_needs_only_the_image_the_offering_and_the_network(tmp_path: Path) -> None:
    make_image(tmp_path / f"{IMAGE_NAME}.qcow2")
    async with ManagementNode(lab_props(tmp_path), serve_socket=False) as node:
        [image] = await ok(node, "QueryImage", conditions=[f"name={IMAGE_NAME}"])
        [offering] = await ok(node, "QueryInstanceOffering", conditions=["name=small"])
        [network] = await ok(node, "QueryL3Network", conditions=["name=private"])
        vm = await ok(
            node,
            "CreateVmInstance",
            name="first",
            imageUuid=image["uuid"],
            instanceOfferingUuid=offering["uuid"],
            l3NetworkUuids=[network["uuid"]],
        )
        assert vm["state"] == "Running"
        [nic] = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
        assert (nic["ip"], nic["gateway"]) == ("10.0.10.2", "10.0.10.1")
        [router] = await ok(node, "QueryVirtualRouterVm")
        assert (router["state"], router["status"]) == ("Running", "Connected")
        hosts = Path(router["agentTokenFile"]).parent / "dhcp-hosts"
        assert f"{nic['mac']}," in hosts.read_text() and ",10.0.10.2" in hosts.read_text()


async def test_the_private_network_takes_the_first_free_candidate(tmp_path: Path) -> None:
    """10.0.10.0/24 is taken by a network the user made before the bootstrap ran."""
    make_image(tmp_path / f"{IMAGE_NAME}.qcow2")
    props = lab_props(tmp_path)
    none = load_props(write_config(tmp_path / "none", data_dir=props.data_dir))
    async with ManagementNode(none, serve_socket=False) as node:
        zone = await ok(node, "CreateZone", name="mine")
        l2 = await ok(node, "CreateL2NoVlanNetwork", name="mine", zoneUuid=zone["uuid"])
        l3 = await ok(node, "CreateL3Network", name="mine", l2NetworkUuid=l2["uuid"])
        await ok(
            node,
            "AddIpRangeByNetworkCidr",
            l3NetworkUuid=l3["uuid"],
            name="mine",
            networkCidr="10.0.10.0/24",
        )
    async with ManagementNode(props, serve_socket=False) as node:
        private = await ok(node, "QueryL3Network", conditions=["name=private"])
        [ip_range] = await ok(
            node, "QueryIpRange", conditions=[f"l3NetworkUuid={private[0]['uuid']}"]
        )
        assert ip_range["networkCidr"] == "172.30.10.0/24"
        assert {t["tag"] for t in await done_tags(node)} == DONE


def refusing(api: str, nth: int) -> type[Plugin]:
    """A plugin refusing the ``nth`` call of ``api`` and every later one."""

    class Refuse(Plugin, GlobalApiInterceptor):
        implements = (GlobalApiInterceptor,)
        seen = 0

        async def intercept(self, msg: ApiMessage) -> ApiMessage:
            if msg.api_name == api:
                type(self).seen += 1
                if type(self).seen >= nth:
                    raise operr(f"{api} refused by the test")
            return msg

    return Refuse


# (refused API, from its nth call, the step that fails): the public network's calls come
# first, so the private network's are the second ones.
FAULTS = [
    ("CreateL2NoVlanNetwork", 2, "private-network"),
    ("AttachL2NetworkToCluster", 2, "private-network"),
    ("CreateL3Network", 2, "private-network"),
    ("AddIpRangeByNetworkCidr", 2, "private-network"),
    ("AttachNetworkServiceToL3Network", 1, "private-network"),
    ("CreateInstanceOffering", 1, "instance-offering"),
    ("AddImage", 1, "image"),
]


@pytest.mark.parametrize(("api", "nth", "step"), FAULTS, ids=[f[0] for f in FAULTS])
async def test_a_failing_step_leaves_nothing_and_is_tried_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, api: str, nth: int, step: str
) -> None:
    make_image(tmp_path / f"{IMAGE_NAME}.qcow2")
    props = lab_props(tmp_path)
    caplog.set_level(logging.WARNING, logger="core.bootstrap.plugin")
    async with make_node(props, {"refuse": refusing(api, nth)}, serve_socket=False) as node:
        [host] = await ok(node, "QueryHost")
        assert host["status"] == "Connected"  # the node started all the same
        undone = {f"bootstrap::{step}"}
        if step == "private-network":  # and the plugins' services on it, after it
            undone |= {f"bootstrap::private-network-{t}" for t in PLUGIN_SERVICES}
        assert {t["tag"] for t in await done_tags(node)} == DONE - undone
        assert f"{api} refused by the test" in caplog.text
        # Nothing of the failed step is left; the other steps are done.
        if step == "private-network":
            for query in ("QueryL2Network", "QueryL3Network"):
                assert [n["name"] for n in await ok(node, query)] == ["public"]
            assert len(await ok(node, "QueryIpRange")) == 1
            assert await ok(node, "QueryNetworkServiceL3NetworkRef") == []
        else:
            assert await private_l3(node) is not None
        images = await ok(node, "QueryImage")
        offerings = await ok(node, "QueryInstanceOffering")
        assert len(images) == (step != "image") and len(offerings) == (step != "instance-offering")
        assert (props.data_dir / "backup-storage").is_dir()
        if step == "image":
            assert list((props.data_dir / "backup-storage").iterdir()) == []
    async with ManagementNode(props, serve_socket=False) as node:
        assert {t["tag"] for t in await done_tags(node)} == DONE
        assert await private_l3(node) is not None
        assert (
            len(await ok(node, "QueryImage")) == len(await ok(node, "QueryInstanceOffering")) == 1
        )


async def test_a_missing_image_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    props = lab_props(tmp_path, image="build/missing.qcow2")
    missing = tmp_path / "build" / "missing.qcow2"
    assert props["bootstrap.image"] == missing
    caplog.set_level(logging.INFO, logger="core.bootstrap.plugin")
    async with ManagementNode(props, serve_socket=False) as node:
        assert await ok(node, "QueryImage") == []
        assert {t["tag"] for t in await done_tags(node)} == DONE - {"bootstrap::image"}
        assert await private_l3(node) is not None
    [warning] = [
        r
        for r in caplog.records
        if r.name == "core.bootstrap.plugin" and r.levelno >= logging.WARNING
    ]
    assert str(missing) in warning.getMessage() and "make guest-image" in warning.getMessage()
    # Built later: the next start adds it.
    missing.parent.mkdir()
    make_image(missing)
    async with ManagementNode(props, serve_socket=False) as node:
        [image] = await ok(node, "QueryImage")
        assert (image["name"], image["status"]) == ("missing", "Ready")
        assert {t["tag"] for t in await done_tags(node)} == DONE


async def test_no_image_property_no_image(tmp_path: Path) -> None:
    """Without ``bootstrap.image`` (e.g. every other test's node) no image is added."""
    props = load_props(write_config(tmp_path, '[bootstrap]\nlocal_host = "simulator"\n'))
    assert props["bootstrap.image"] is None
    async with ManagementNode(props, serve_socket=False) as node:
        assert await ok(node, "QueryImage") == []
        assert {t["tag"] for t in await done_tags(node)} == DONE - {"bootstrap::image"}

"""The reconciler on the real host: a domain, a tap and a namespace made by hand with this
lab's names and no owner in the database are kept with ``Never``, then removed once the
grace period has passed; the same objects of another lab are never touched."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from contracts.names import lab_alias, lab_id
from core.kernel.db import new_uuid
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.reconcile.models import HostOrphanVO
from core.reconcile.plugin import ReconcilePlugin
from tests.conftest import make_node, ok
from tests.system.net_lab import sh, virsh
from tests.system.test_kvm_host import add_local_host, kvm_props  # noqa: F401 (a fixture)

pytestmark = pytest.mark.system

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>"""


@dataclass
class HandMade:
    """A domain, a bridge with a tap on it, and a router namespace with its veth, carrying
    the identity of the lab whose data dir is ``lab_dir``."""

    lab_dir: Path
    domain: str
    bridge: str
    tap: str
    namespace: str
    veth: str

    @classmethod
    def make(cls, lab_dir: Path, workdir: Path) -> HandMade:
        vm, short, l2 = new_uuid(), secrets.token_hex(5)[:9], secrets.token_hex(5)[:9]
        made = cls(
            lab_dir, f"zsl-{vm}", f"zslbr-{l2}", f"zslt{vm[:9]}0", f"zsl-vr-{short}",
            f"zslv{short}0",
        )  # fmt: skip
        alias = lab_alias(lab_id(lab_dir))
        xml = workdir / f"{made.domain}.xml"
        xml.write_text(
            DOMAIN_XML.format(name=made.domain, disk=lab_dir / f"ps/rootvolumes/vm-{vm}/r.qcow2")
        )
        assert "defined" in virsh("define", str(xml))
        sh("ip", "link", "add", made.bridge, "type", "bridge")
        sh("ip", "link", "set", made.bridge, "alias", alias)
        sh("ip", "tuntap", "add", "dev", made.tap, "mode", "tap")
        sh("ip", "link", "set", made.tap, "master", made.bridge)  # as libvirt does: no alias
        sh("ip", "netns", "add", made.namespace)
        sh("ip", "link", "add", made.veth, "type", "veth", "peer", "name", f"zslp{short}")
        sh("ip", "link", "set", made.veth, "alias", alias)
        sh("ip", "link", "set", f"zslp{short}", "netns", made.namespace)
        return made

    def present(self) -> dict[str, bool]:
        links = sh("ip", "-o", "link", "show")
        return {
            "domain": self.domain in virsh("list", "--all", "--name").split(),
            "tap": f" {self.tap}:" in links or f" {self.tap}@" in links,
            "bridge": f" {self.bridge}:" in links,
            "namespace": self.namespace in sh("ip", "netns", "list"),
            "veth": f" {self.veth}@" in links or f" {self.veth}:" in links,
        }

    def remove(self) -> None:
        virsh("undefine", self.domain)
        for link in (self.tap, self.veth, self.bridge):
            sh("ip", "link", "del", link, check=False)
        sh("ip", "netns", "del", self.namespace, check=False)


@pytest.fixture
def hand_made(kvm_props: Properties, tmp_path: Path) -> Iterator[tuple[HandMade, HandMade]]:  # noqa: F811
    ours = HandMade.make(kvm_props.data_dir, tmp_path)
    other = HandMade.make(tmp_path / "other-lab", tmp_path)
    try:
        yield ours, other
    finally:
        ours.remove()
        other.remove()


@pytest.fixture
async def node(kvm_props: Properties) -> AsyncIterator[ManagementNode]:  # noqa: F811
    node = make_node(kvm_props, {"reconcile": ReconcilePlugin}, serve_socket=False)
    await node.start()
    try:
        await add_local_host(node, kvm_props)
        yield node
    finally:
        await node.stop()


async def reconcile(node: ManagementNode) -> Any:
    [run] = (await node.plugin(ReconcilePlugin).reconcile_all()).values()
    return run


async def test_hand_made_orphans_are_kept_with_never_then_removed_after_the_grace_period(
    hand_made: tuple[HandMade, HandMade], node: ManagementNode
) -> None:
    ours, other = hand_made
    everything = dict.fromkeys(("domain", "tap", "bridge", "namespace", "veth"), True)
    assert ours.present() == everything and other.present() == everything

    await ok(node, "UpdateGlobalConfig", category="reconcile", name="orphanGracePeriod",
             value="Never")  # fmt: skip
    for _ in range(2):
        run = await reconcile(node)
        assert run.removed == []
    found = {(o["kind"], o["name"]) for o in await ok(node, "QueryHostOrphan")}
    assert found == {
        ("domain", ours.domain), ("tap", ours.tap), ("bridge", ours.bridge),
        ("namespace", ours.namespace), ("veth", ours.veth),
    }  # fmt: skip
    assert ours.present() == everything

    await ok(node, "UpdateGlobalConfig", category="reconcile", name="orphanGracePeriod",
             value="600")  # fmt: skip
    run = await reconcile(node)
    assert run.removed == [] and ours.present() == everything

    def age(session: Any) -> None:  # as if first seen 20 minutes ago
        for row in session.scalars(select(HostOrphanVO)):
            row.first_seen -= timedelta(minutes=20)

    await node.db.run(age)
    run = await reconcile(node)
    assert {(o.kind, o.name) for o in run.removed} >= {
        ("domain", ours.domain), ("namespace", ours.namespace), ("bridge", ours.bridge)
    }  # fmt: skip
    assert ours.present() == dict.fromkeys(everything, False)
    assert await ok(node, "QueryHostOrphan") == []
    # another lab's objects, with the same kinds of names, are never touched
    assert other.present() == everything
    assert not {o.name for o in run.objects} & {other.domain, other.tap, other.namespace}

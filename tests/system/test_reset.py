"""``zstack-lite reset --yes`` on the real host: a kvm lab with two tiny VMs on the default
private network (so a virtual router, its namespace, veths and dnsmasq, two bridges, host
NAT rules, two domains) leaves links, namespaces, nft tables and rules, domains,
processes and files exactly as they were before its first start; so does a reset after
the node was killed and the data dir deleted by hand; and the reset of one lab leaves
another lab's objects as they were.

Other sessions make and remove project objects on this host meanwhile, so a snapshot is
compared through the lab's identifiers: its lab id, its directory, the uuids of its VMs
and routers, the names of its bridges (:meth:`Snapshot.naming`).  Before the first start
nothing names them; each kind of object is checked to be there (named so) while the lab
runs, so the comparison after the reset is not vacuous."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.guest_image import build as guest_image
from agent.lab_cleanup import LIBVIRT_LOG_DIR, PROGRAMS
from agentkit.procs import cmdline
from contracts.names import lab_id, short_id, tap_name
from tests.service_lab import ServiceLab, service_lab
from tests.system.net_lab import sh, virsh

pytestmark = pytest.mark.system
REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "build" / "tiny-guest.qcow2"
RUN_DIR = Path("/run/zstack-lite")
KINDS = ("link", "netns", "nft-rule", "domain", "process", "file")


def _files(root: Path, pattern: str = "**/*") -> set[str]:
    return {f"file {p}" for p in root.glob(pattern)} if root.is_dir() else set()


def _processes() -> set[str]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = cmdline(int(entry))
        text = " ".join(argv)
        if any(a.endswith(p) for a in argv[:3] for p in PROGRAMS) or (
            "qemu" in (argv[:1] or [""])[0] and "zsl-" in text
        ):
            found.add(f"process {entry} {text}")
    return found


def _nft() -> set[str]:
    found = set()
    for item in json.loads(sh("nft", "-j", "list", "ruleset")).get("nftables", []):
        if "table" in item:
            found.add(f"nft-table {item['table']['family']} {item['table']['name']}")
        if "rule" in item:
            rule = {k: v for k, v in item["rule"].items() if k != "handle"}
            found.add(f"nft-rule {json.dumps(rule, sort_keys=True)}")
    return found


@dataclass(frozen=True)
class Snapshot:
    """Every project-looking object on the host, one descriptive line each."""

    objects: frozenset[str]

    @classmethod
    def now(cls, roots: Iterable[Path] = ()) -> Snapshot:
        links = {
            f"link {link['ifname']} alias={link.get('ifalias', '')} master={link.get('master', '')}"
            for link in json.loads(sh("ip", "-j", "link", "show"))
            if link["ifname"].startswith("zsl") or link.get("ifalias", "").startswith("zstack")
        }
        namespaces = {f"netns {line.split()[0]}" for line in sh("ip", "netns", "list").splitlines()}
        domains = {
            f"domain {name}"
            for name in virsh("list", "--all", "--name").split()
            if name.startswith("zsl-")
        }
        files = _files(RUN_DIR) | _files(LIBVIRT_LOG_DIR, "zsl-*")
        for root in roots:  # the labs' directories: the data dir's parent
            files |= _files(root) | {f"file {root}"}
        return cls(frozenset(links | namespaces | _nft() | domains | _processes() | files))

    def naming(self, ids: Iterable[str]) -> set[str]:
        ids = [i for i in ids if i]
        return {o for o in self.objects if any(i in o for i in ids)}


@dataclass
class KvmLab:
    lab: ServiceLab
    root: Path

    @property
    def data_dir(self) -> Path:
        return self.lab.data_dir

    def start(self) -> None:
        res = self.lab.service("start")
        assert res.rc == 0, res.out + res.err

    def image_uuid(self) -> str:
        deadline = time.monotonic() + 120
        while True:
            ready = [i for i in self.lab.ok("QueryImage") if i["status"] == "Ready"]
            if ready:
                return str(ready[0]["uuid"])
            assert time.monotonic() < deadline, "the bootstrap's image is not Ready"
            time.sleep(0.5)

    def create_vms(self, *names: str) -> None:
        image = self.image_uuid()
        [offering] = self.lab.ok("QueryInstanceOffering", "name=small")
        [l3] = self.lab.ok("QueryL3Network", "name=private")
        for name in names:
            vm = self.lab.ok(
                "CreateVmInstance",
                f"name={name}",
                f"instanceOfferingUuid={offering['uuid']}",
                f"imageUuid={image}",
                f"l3NetworkUuids={l3['uuid']}",
            )
            assert vm["state"] == "Running", vm

    def identifiers(self) -> set[str]:
        """What names this lab's objects on the host (asked of its node)."""
        ids = {lab_id(self.data_dir), str(self.root)}
        for vm in self.lab.ok("QueryVmInstance"):
            ids |= {vm["uuid"], tap_name(vm["uuid"], 0)[:-1]}
        for router in self.lab.ok("QueryVirtualRouterVm"):
            ids |= {router["uuid"], short_id(router["uuid"])}
        ids |= {l2["bridgeName"] for l2 in self.lab.ok("QueryL2Network")}
        return ids

    def reset(self) -> str:
        res = self.lab.reset()
        assert res.rc == 0, res.out + res.err
        return res.out


def kinds(objects: Iterable[str]) -> set[str]:
    return {o.split(" ", 1)[0] for o in objects}


def running(labs: Iterable[KvmLab], roots: Iterable[Path]) -> Snapshot:
    """The host while the labs run, each lab's host NAT rules in place: other sessions'
    tests delete the shared nft table to see it repaired, and a reconnect repairs it."""
    labs, roots = list(labs), list(roots)
    snapshot = Snapshot.now(roots)
    for lab in labs:
        if "nft-rule" not in kinds(snapshot.naming({lab_id(lab.data_dir)})):
            [host] = lab.lab.ok("QueryHost")
            lab.lab.ok("ReconnectHost", f"uuid={host['uuid']}")
            snapshot = Snapshot.now(roots)
    return snapshot


@pytest.fixture
def make_lab() -> Iterator[Any]:
    """Labs under /var/tmp (QEMU reaches their storage), reset and removed at the end
    whatever happened."""
    guest_image.main(["--output", str(IMAGE)])  # builds only if missing or stale
    made: list[KvmLab] = []

    def make() -> KvmLab:
        root = Path(tempfile.mkdtemp(prefix="zsl-test-reset-", dir="/var/tmp"))
        root.chmod(0o755)
        body = f'[agent]\nport = 0\n[bootstrap]\nlocal_host = "kvm"\nimage = "{IMAGE}"\n'
        made.append(KvmLab(service_lab(root, body), root))
        return made[-1]

    try:
        yield make
    finally:
        for kvm_lab in made:
            try:
                kvm_lab.lab.reset()
            finally:
                kvm_lab.lab.stop()
                shutil.rmtree(kvm_lab.root, ignore_errors=True)


def test_reset_leaves_the_host_as_before_the_first_start(make_lab: Any) -> None:
    lab = make_lab()
    before = Snapshot.now([lab.root])
    lab.start()
    lab.create_vms("web1", "web2")
    ids = lab.identifiers()
    found = running([lab], [lab.root]).naming(ids)
    assert kinds(found) >= set(KINDS), sorted(found)
    out = lab.reset()
    for line in (
        "destroying VM web1 ... done",
        "destroying VM web2 ... done",
        "deleting L3 network private ... done",
        "deleting L2 network public ... done",
        f"removed the data dir {lab.data_dir}",
    ):
        assert line in out.splitlines(), out
    after = Snapshot.now([lab.root])
    assert after.naming(ids) == before.naming(ids), out
    again = lab.reset()
    assert again.splitlines()[-1] == f"nothing of the lab on {lab.data_dir} was left on this host"


def test_reset_after_the_data_dir_was_deleted_by_hand(make_lab: Any) -> None:
    lab = make_lab()
    before = Snapshot.now([lab.root])
    lab.start()
    lab.create_vms("web1", "web2")
    ids = lab.identifiers()
    found = running([lab], [lab.root]).naming(ids)
    assert kinds(found) >= set(KINDS), sorted(found)
    lab.lab.kill_node()
    shutil.rmtree(lab.data_dir)
    out = lab.reset()
    assert f"{lab.data_dir} does not exist: sweeping what the lab left on this host" in out
    for what in ("libvirt domain zsl-", "namespace zsl-vr-", "bridge zslbr-", "host NAT of "):
        assert f"removed {what}" in out, out
    after = Snapshot.now([lab.root])
    assert after.naming(ids) == before.naming(ids), out
    again = lab.reset()
    assert again.splitlines()[-1] == f"nothing of the lab on {lab.data_dir} was left on this host"


def test_reset_of_one_lab_leaves_another_intact(make_lab: Any) -> None:
    first, other = make_lab(), make_lab()
    before = Snapshot.now([first.root, other.root])
    first.start()
    other.start()
    first.create_vms("a1")
    other.create_vms("b1")
    ids_first, ids_other = first.identifiers(), other.identifiers()
    assert not ids_first & ids_other
    found = running([first, other], [first.root, other.root])
    others = {o for o in found.naming(ids_other) if not o.startswith(f"file {other.root}")}
    assert kinds(others) >= set(KINDS), sorted(others)
    first.reset()
    after = Snapshot.now([first.root, other.root])
    assert after.naming(ids_first) == before.naming(ids_first)
    assert {o for o in after.naming(ids_other) if not o.startswith(f"file {other.root}")} == (
        others
    )
    [vm] = other.lab.ok("QueryVmInstance")
    assert vm["state"] == "Running"
    [router] = other.lab.ok("QueryVirtualRouterVm")
    assert router["status"] == "Connected"
    other.reset()
    assert Snapshot.now([other.root]).naming(ids_other) == before.naming(ids_other)

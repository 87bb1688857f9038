"""Who owns what: the rules lean to keeping (any state of a VM or router owns what names
it; an object whose owner cannot be told is kept)."""

from __future__ import annotations

from contracts import kvm
from core.reconcile.owners import Owners, orphans
from core.reconcile.tracking import Orphan, due

VM = "0123456789abcdef0123456789abcdef"
ROUTER = "fedcba9876543210fedcba9876543210"
HOST = "11111111111111111111111111111111"
VOLUME = "22222222222222222222222222222222"


def owners() -> Owners:
    return Owners(
        vms={VM},
        routers={ROUTER},
        hosts={HOST: "Simulator"},
        taps={"zsltnamed0"},
        bridges={"zslbr-aaaaaaaaa"},
        host_nat={"zslbr-aaaaaaaaa 10.0.0.1/24"},
        volumes={f"/ps/rootvolumes/vm-{VM}/root.qcow2"},
        volume_uuids={VOLUME},
        images={"image1"},
        image_caches={"/ps/imagecache/cached.qcow2"},
    ).index()


def obj(kind: str, name: str, ref: str = "", detail: str = "") -> kvm.HostObjectTO:
    return kvm.HostObjectTO(kind=kind, name=name, ref=ref, detail=detail)


def test_what_the_database_owns() -> None:
    o = owners()
    owned = [
        obj("domain", f"zsl-{VM}", VM),
        obj("domain", f"zsl-{ROUTER}", ROUTER),
        obj("namespace", f"zsl-vr-{ROUTER[:9]}", ROUTER[:9]),
        obj("veth", f"zslv{ROUTER[:9]}0", ROUTER[:9]),
        obj("tap", "zsltnamed0", "zsltnamed0"),
        obj("tap", f"zslt{VM[:9]}3", f"zslt{VM[:9]}3"),  # names a VM
        obj("bridge", "zslbr-aaaaaaaaa", "zslbr-aaaaaaaaa"),
        obj("hostNat", "zslbr-aaaaaaaaa 10.0.0.1/24", "zslbr-aaaaaaaaa"),
        obj("process", "12", ROUTER, "dnsmasq: ..."),
        obj("process", "13", f"simulators/{HOST}", "agent: ..."),
        obj("process", "14", "", "dnsmasq: owner unknown"),
        obj("file", f"/ps/rootvolumes/vm-{VM}", VM, "volumes"),
        obj("file", f"/ps/consoles/{VM}.log.0", VM, "log"),
        obj("file", "/ps/imagecache/image1.qcow2", "image1", "image cache"),
        obj("file", "/ps/imagecache/cached.qcow2", "cached", "image cache"),
        obj("file", "/ps/rootvolumes/vm-x", "", "volumes"),
        obj("file", f"/ps/datavolumes/vol-{VOLUME}", VOLUME, "data volume"),
        obj("unknownKind", "x", "x"),
    ]
    assert orphans(owned, o) == []


def test_what_nothing_owns() -> None:
    o = owners()
    other = "99999999999999999999999999999999"
    unowned = [
        obj("domain", f"zsl-{other}", other),
        obj("namespace", "zsl-vr-999999999", "999999999"),
        obj("veth", "zslv9999999990", "999999999"),
        obj("tap", "zslt9999999990", "zslt9999999990"),
        obj("bridge", "zslbr-bbbbbbbbb", "zslbr-bbbbbbbbb"),
        obj("hostNat", "zslbr-aaaaaaaaa 10.0.1.1/24", "zslbr-aaaaaaaaa"),  # not this gateway
        obj("process", "12", other, "router: ..."),
        obj("process", "13", f"simulators/{other}", "agent: ..."),
        obj("process", "14", "agent", "agent: no KVM host"),
        obj("file", f"/ps/rootvolumes/vm-{other}", other, "volumes"),
        obj("file", f"/ps/consoles/{other}.log", other, "log"),
        obj("file", "/ps/imagecache/gone.qcow2", "gone", "image cache"),
        obj("file", f"/ps/datavolumes/vol-{other}", other, "data volume"),
    ]
    assert orphans(unowned, o) == unowned


def test_never_means_never_due() -> None:
    from datetime import datetime

    now = datetime(2026, 1, 1)
    tracked = [Orphan(kind="tap", name="t", first_seen=datetime(2020, 1, 1))]
    assert due(tracked, now, None) == []
    assert due(tracked, now, 60) == tracked
    assert due([tracked[0].model_copy(update={"first_seen": now})], now, 60) == []

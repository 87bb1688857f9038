"""Property: however allocations and releases interleave across concurrent writers
(separate connections and threads on one database, as several node workers or a
PostgreSQL deployment would be), IPAM never hands one address out twice, and every
address it hands out is in the range."""

from __future__ import annotations

import ipaddress
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from core.kernel.db import Database
from core.kernel.errors import OperationError
from core.network.l2.models import L2NetworkVO
from core.network.l3.ipam import IP_EXHAUSTED, allocate_ip, release_ip
from core.network.l3.models import IpRangeVO, L3NetworkVO, UsedIpVO
from core.zone.models import ZoneVO

WRITERS = 4
RANGE = ("10.0.0.10", "10.0.0.29")  # 20 addresses: exhaustion happens often


def make_network(db: Database) -> str:
    def make(session):  # type: ignore[no-untyped-def]
        zone = ZoneVO(name="z")
        session.add(zone)
        session.flush()
        l2 = L2NetworkVO(
            name="l2",
            zone_uuid=zone.uuid,
            type="L2NoVlanNetwork",
            bridge_name=f"zslbr-{zone.uuid[:9]}",
        )
        session.add(l2)
        session.flush()
        l3 = L3NetworkVO(name="l3", zone_uuid=zone.uuid, l2_network_uuid=l2.uuid)
        session.add(l3)
        session.flush()
        session.add(
            IpRangeVO(
                name="r",
                l3_network_uuid=l3.uuid,
                start_ip=RANGE[0],
                end_ip=RANGE[1],
                netmask="255.255.255.0",
                gateway="10.0.0.1",
                network_cidr="10.0.0.0/24",
                prefix_len=24,
            )
        )
        return l3.uuid

    return db.run_sync(make)


# Each writer's script: True = allocate, False = release the oldest address it holds.
scripts = st.lists(
    st.lists(st.booleans(), min_size=1, max_size=12), min_size=WRITERS, max_size=WRITERS
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scripts=scripts)
def test_no_address_is_ever_held_twice(tmp_path: Path, scripts: list[list[bool]]) -> None:
    path = tmp_path / f"ipam-{threading.get_ident()}-{id(scripts)}.db"
    path.unlink(missing_ok=True)
    first = Database(f"sqlite:///{path}")
    first.migrate()
    l3 = make_network(first)
    writers = [Database(f"sqlite:///{path}") for _ in range(WRITERS)]
    held: list[list[dict]] = [[] for _ in range(WRITERS)]
    start = threading.Barrier(WRITERS)

    def run(i: int) -> None:
        start.wait()
        for allocate in scripts[i]:
            if allocate:
                try:
                    held[i].append(writers[i].run_sync(lambda s: allocate_ip(s, l3, f"w{i}")))
                except OperationError as exc:
                    assert exc.error.code == IP_EXHAUSTED
            elif held[i]:
                gone = held[i].pop(0)
                writers[i].run_sync(lambda s, u=gone["uuid"]: release_ip(s, u))

    try:
        with ThreadPoolExecutor(WRITERS) as pool:
            list(pool.map(run, range(WRITERS)))
        ips = [used["ip"] for mine in held for used in mine]
        assert len(ips) == len(set(ips)), "an address was handed out twice"
        low, high = (int(ipaddress.IPv4Address(a)) for a in RANGE)
        assert all(low <= int(ipaddress.IPv4Address(ip)) <= high for ip in ips)
        in_db = first.run_sync(lambda s: sorted(s.scalars(select(UsedIpVO.ip))))
        assert in_db == sorted(ips)
    finally:
        for db in (first, *writers):
            db.close()

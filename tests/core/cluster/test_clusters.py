from __future__ import annotations

from sqlalchemy.orm import Session

from core.host.models import HostVO
from core.kernel.errors import SysErrors
from core.kernel.node import ManagementNode
from tests.conftest import fails, ok


async def test_cluster_in_a_zone(node: ManagementNode) -> None:
    zone = await ok(node, "CreateZone", name="z")
    cluster = await ok(
        node, "CreateCluster", name="c", zoneUuid=zone["uuid"], hypervisorType="Simulator"
    )
    assert cluster["zoneUuid"] == zone["uuid"] and cluster["hypervisorType"] == "Simulator"
    assert [
        c["uuid"] for c in await ok(node, "QueryCluster", conditions=["hypervisorType=Simulator"])
    ] == [cluster["uuid"]]


async def test_cluster_needs_an_existing_zone_and_a_known_type(node: ManagementNode) -> None:
    text = await fails(
        node, "CreateCluster", SysErrors.RESOURCE_NOT_FOUND, name="c", zoneUuid="0" * 32
    )
    assert "ZoneVO" in text
    zone = await ok(node, "CreateZone", name="z")
    text = await fails(
        node,
        "CreateCluster",
        SysErrors.INVALID_ARGUMENT,
        name="c",
        zoneUuid=zone["uuid"],
        hypervisorType="Xen",
    )
    assert "KVM, Simulator" in text
    assert await ok(node, "QueryCluster") == []


async def test_a_cluster_with_hosts_is_not_deleted(node: ManagementNode) -> None:
    zone = await ok(node, "CreateZone", name="z")
    cluster = await ok(node, "CreateCluster", name="c", zoneUuid=zone["uuid"])

    def add_host(session: Session) -> None:
        session.add(
            HostVO(
                name="h",
                zone_uuid=zone["uuid"],
                cluster_uuid=cluster["uuid"],
                management_ip="192.0.2.1",
                agent_port=7070,
                hypervisor_type="KVM",
            )
        )

    await node.db.run(add_host)  # type: ignore[union-attr]
    text = await fails(node, "DeleteCluster", SysErrors.OPERATION_ERROR, uuid=cluster["uuid"])
    assert "still holds 1 host" in text
    assert len(await ok(node, "QueryCluster")) == 1

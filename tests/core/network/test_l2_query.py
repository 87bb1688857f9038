"""QueryL2Network says which clusters each L2 network is attached to (no host needed:
attaching to a cluster without hosts realises nothing)."""

from __future__ import annotations

from core.kernel.node import ManagementNode
from tests.conftest import ok


async def test_query_l2_network_lists_attached_clusters(node: ManagementNode) -> None:
    zone = await ok(node, "CreateZone", name="z")
    clusters = [
        await ok(node, "CreateCluster", name=name, zoneUuid=zone["uuid"], hypervisorType="KVM")
        for name in ("c1", "c2")
    ]
    lan = await ok(node, "CreateL2NoVlanNetwork", name="lan", zoneUuid=zone["uuid"])
    await ok(node, "CreateL2NoVlanNetwork", name="lone", zoneUuid=zone["uuid"])
    for cluster in clusters:
        await ok(
            node, "AttachL2NetworkToCluster", l2NetworkUuid=lan["uuid"], clusterUuid=cluster["uuid"]
        )

    found = {l2["name"]: l2 for l2 in await ok(node, "QueryL2Network")}
    assert found["lan"]["attachedClusterUuids"] == sorted(c["uuid"] for c in clusters)
    assert found["lone"]["attachedClusterUuids"] == []
    [only] = await ok(node, "QueryL2Network", conditions=["name=lan"], limit=1)
    assert len(only["attachedClusterUuids"]) == 2
    reply = await node.bus.call_by_name("QueryL2Network", {"count": True})
    assert reply.success and reply.total == 2

    await ok(
        node,
        "DetachL2NetworkFromCluster",
        l2NetworkUuid=lan["uuid"],
        clusterUuid=clusters[0]["uuid"],
    )
    [lan] = await ok(node, "QueryL2Network", conditions=["name=lan"])
    assert lan["attachedClusterUuids"] == [clusters[1]["uuid"]]

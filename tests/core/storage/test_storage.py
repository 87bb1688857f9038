"""Local backup and primary storage, prepared by a simulator host's agent (real directories)."""

from __future__ import annotations

from pathlib import Path

from core.kernel.errors import SysErrors
from core.kernel.node import ManagementNode
from tests.conftest import fails, ok


async def lab(node: ManagementNode) -> tuple[str, str]:
    zone = await ok(node, "CreateZone", name="z")
    cluster = await ok(
        node, "CreateCluster", name="c", zoneUuid=zone["uuid"], hypervisorType="Simulator"
    )
    await ok(node, "AddSimulatorHost", name="sim", clusterUuid=cluster["uuid"])
    return zone["uuid"], cluster["uuid"]


async def test_local_storage_is_made_measured_and_attached(
    node: ManagementNode, tmp_path: Path
) -> None:
    zone, cluster = await lab(node)
    bs = await ok(node, "AddLocalBackupStorage", name="bs", zoneUuid=zone, url=str(tmp_path / "bs"))
    ps = await ok(
        node, "AddLocalPrimaryStorage", name="ps", zoneUuid=zone, url=str(tmp_path / "ps") + "/"
    )
    assert (tmp_path / "bs").is_dir() and (tmp_path / "ps").is_dir()
    assert ps["url"] == str(tmp_path / "ps")  # no trailing slash kept
    for storage in (bs, ps):
        assert 0 < storage["availableCapacity"] <= storage["totalCapacity"]
    attached = await ok(
        node, "AttachPrimaryStorageToCluster", primaryStorageUuid=ps["uuid"], clusterUuid=cluster
    )
    assert attached["attachedClusterUuids"] == [cluster]
    again = await ok(
        node, "AttachPrimaryStorageToCluster", primaryStorageUuid=ps["uuid"], clusterUuid=cluster
    )
    assert again["attachedClusterUuids"] == [cluster]
    await ok(node, "DeletePrimaryStorage", uuid=ps["uuid"])
    await ok(node, "DeleteBackupStorage", uuid=bs["uuid"])
    assert await ok(node, "QueryPrimaryStorage") == []


async def test_storage_without_a_local_host_is_refused(
    node: ManagementNode, tmp_path: Path
) -> None:
    zone = await ok(node, "CreateZone", name="empty")
    text = await fails(
        node,
        "AddLocalBackupStorage",
        SysErrors.OPERATION_ERROR,
        name="bs",
        zoneUuid=zone["uuid"],
        url=str(tmp_path / "bs"),
    )
    assert "add this machine as a host first" in text
    assert not (tmp_path / "bs").exists()
    assert await ok(node, "QueryBackupStorage") == []


async def test_bad_urls_are_refused_and_change_nothing(
    node: ManagementNode, tmp_path: Path
) -> None:
    zone, _ = await lab(node)
    text = await fails(
        node,
        "AddLocalPrimaryStorage",
        SysErrors.INVALID_ARGUMENT,
        name="ps",
        zoneUuid=zone,
        url="relative/dir",
    )
    assert "url" in text
    a_file = tmp_path / "file"
    a_file.write_text("x")
    reply = await node.call(
        "AddLocalPrimaryStorage", {"name": "ps", "zoneUuid": zone, "url": str(a_file)}
    )
    assert not reply.success and "not a directory" in str(reply.error)
    await ok(node, "AddLocalPrimaryStorage", name="ps", zoneUuid=zone, url=str(tmp_path / "ps"))
    text = await fails(
        node,
        "AddLocalBackupStorage",
        SysErrors.INVALID_ARGUMENT,
        name="bs",
        zoneUuid=zone,
        url=str(tmp_path / "ps"),
    )
    assert "already used by PrimaryStorageVO ps" in text
    assert len(await ok(node, "QueryPrimaryStorage")) == 1
    assert await ok(node, "QueryBackupStorage") == []

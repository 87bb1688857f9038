from __future__ import annotations

from core.kernel.errors import SysErrors
from core.kernel.node import ManagementNode
from tests.conftest import fails, ok

MiB = 1024**2


async def test_create_query_delete_offering(node: ManagementNode) -> None:
    offering = await ok(
        node,
        "CreateInstanceOffering",
        name="small",
        cpuNum=2,
        memorySize=512 * MiB,
        userTags=["lab"],
    )
    assert (offering["cpuNum"], offering["memorySize"]) == (2, 512 * MiB)
    found = await ok(node, "QueryInstanceOffering", conditions=["cpuNum>=2"])
    assert [o["uuid"] for o in found] == [offering["uuid"]]
    assert await ok(node, "QueryUserTag", conditions=[f"resourceUuid={offering['uuid']}"])
    await ok(node, "DeleteInstanceOffering", uuid=offering["uuid"])
    assert await ok(node, "QueryInstanceOffering") == []
    assert await ok(node, "QueryUserTag") == []


async def test_bad_offerings_are_refused_and_change_nothing(node: ManagementNode) -> None:
    text = await fails(
        node,
        "CreateInstanceOffering",
        SysErrors.INVALID_ARGUMENT,
        name="x",
        cpuNum=0,
        memorySize=512 * MiB,
    )
    assert "cpuNum" in text and "[1, 1024]" in text
    text = await fails(
        node,
        "CreateInstanceOffering",
        SysErrors.INVALID_ARGUMENT,
        name="x",
        cpuNum=1,
        memorySize=1024,
    )
    assert "memorySize" in text
    await fails(
        node, "CreateInstanceOffering", SysErrors.INVALID_ARGUMENT, cpuNum=1, memorySize=512 * MiB
    )
    assert await ok(node, "QueryInstanceOffering") == []

"""vm.expungePeriod and image.expungePeriod: Destroyed VMs and Deleted images go for good."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from core.image.models import ImageVO
from core.kernel.db import utcnow
from core.vm.models import VmInstanceVO
from core.vm.plugin import VmPlugin
from tests.conftest import ok
from tests.core.vm.conftest import Lab


async def age(lab: Lab, model: Any, uuid: str, seconds: int) -> None:
    await lab.node.db.run(
        lambda s: s.execute(  # type: ignore[union-attr]
            update(model)
            .where(model.uuid == uuid)
            .values(last_op_date=utcnow() - timedelta(seconds=seconds))
        )
    )


async def wait_until(check: Any, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_destroyed_vms_are_expunged_after_the_period(lab: Lab) -> None:
    node = lab.node
    vm = await ok(
        node,
        "CreateVmInstance",
        name="old",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )
    young = await ok(
        node,
        "CreateVmInstance",
        name="young",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )
    for v in (vm, young):
        await ok(node, "DestroyVmInstance", uuid=v["uuid"])
    await age(lab, VmInstanceVO, vm["uuid"], 3600)
    await ok(node, "UpdateGlobalConfig", category="vm", name="expungePeriod", value="600")
    await ok(node, "UpdateGlobalConfig", category="vm", name="expungeInterval", value="1")

    async def only_young_left() -> bool:
        return [v["name"] for v in await ok(node, "QueryVmInstance")] == ["young"]

    await wait_until(only_young_left)
    assert not list((lab.primary_url / "rootvolumes" / f"vm-{vm['uuid']}").glob("*"))


async def test_never_policy_keeps_destroyed_vms(lab: Lab) -> None:
    node = lab.node
    await ok(node, "UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Never")
    vm = await ok(
        node,
        "CreateVmInstance",
        name="kept",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )
    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    await age(lab, VmInstanceVO, vm["uuid"], 10**7)
    await node.plugin(VmPlugin).expunge_expired()
    [kept] = await ok(node, "QueryVmInstance")
    assert kept["state"] == "Destroyed"


async def test_deleted_images_are_expunged_after_the_period(lab: Lab) -> None:
    node = lab.node
    await ok(node, "DeleteImage", uuid=lab.image_uuid)
    [image] = await ok(node, "QueryImage")
    assert image["status"] == "Deleted"
    await age(lab, ImageVO, lab.image_uuid, 10**6)
    await ok(node, "UpdateGlobalConfig", category="image", name="expungeInterval", value="1")

    async def gone() -> bool:
        return await ok(node, "QueryImage") == []

    await wait_until(gone)
    assert not (lab.primary_url.parent / "bs" / "base.qcow2").exists()

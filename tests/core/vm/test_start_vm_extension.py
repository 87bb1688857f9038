"""KVMStartVmExtensionPoint: a plugin sees (and completes) every StartVmCmd, at create and
at start, and a plugin that raises fails the start, which rolls back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts import kvm
from core.kernel.api import ApiReply
from core.kernel.extensions import Plugin
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.kvm.extension_points import KVMStartVmExtensionPoint
from core.vm.spec import VmInstanceSpec
from tests.conftest import make_node, ok
from tests.core.vm.conftest import Lab, make_lab

SEEN: list[tuple[str, str, str]] = []
REFUSE: set[str] = set()


class SerialPlugin(Plugin, KVMStartVmExtensionPoint):
    implements = (KVMStartVmExtensionPoint,)

    async def before_start_vm(self, spec: VmInstanceSpec, cmd: kvm.StartVmCmd) -> kvm.StartVmCmd:
        SEEN.append((spec.vm_uuid, cmd.vm_uuid, cmd.smbios_serial))
        if spec.name in REFUSE:
            raise RuntimeError(f"refused {spec.name}")
        return cmd.model_copy(update={"smbios_serial": f"serial-{spec.name}"})


class SecondPlugin(Plugin, KVMStartVmExtensionPoint):
    """Runs after SerialPlugin (lower order) and sees what it set."""

    implements = (KVMStartVmExtensionPoint,)
    order = -1

    async def before_start_vm(self, spec: VmInstanceSpec, cmd: kvm.StartVmCmd) -> kvm.StartVmCmd:
        SEEN.append(("second", cmd.vm_uuid, cmd.smbios_serial))
        return cmd


@pytest.fixture
async def lab(props: Properties, tmp_path: Path) -> AsyncIterator[Lab]:
    SEEN.clear()
    REFUSE.clear()
    node: ManagementNode = make_node(props, {"serial": SerialPlugin, "second": SecondPlugin})
    await node.start()
    try:
        yield await make_lab(node, tmp_path)
    finally:
        await node.stop()


async def create(lab: Lab, name: str) -> ApiReply:
    return await lab.node.call(
        "CreateVmInstance",
        {"name": name, "instanceOfferingUuid": lab.offering["uuid"], "imageUuid": lab.image_uuid},
    )


async def test_every_start_command_passes_the_extensions_in_order(lab: Lab) -> None:
    reply = await create(lab, "vm1")
    assert reply.inventory is not None
    uuid = reply.inventory["uuid"]
    assert [(uuid, uuid, ""), ("second", uuid, "serial-vm1")] == SEEN
    await ok(lab.node, "StopVmInstance", uuid=uuid)
    SEEN.clear()
    await ok(lab.node, "StartVmInstance", uuid=uuid)
    assert [(uuid, uuid, ""), ("second", uuid, "serial-vm1")] == SEEN


async def test_an_extension_that_raises_fails_the_create_and_leaves_no_vm(lab: Lab) -> None:
    REFUSE.add("bad")
    reply = await create(lab, "bad")
    assert reply.error is not None and reply.error.cause is not None
    assert "refused bad" in reply.error.cause.description
    assert await ok(lab.node, "QueryVmInstance", conditions=["name=bad"]) == []

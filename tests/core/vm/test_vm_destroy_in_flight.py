"""A destroy never reports success while the VM's domain may still come up (issue 13,
point 5): a VM whose create is still running (its domain about to be started) cannot be
destroyed; the destroy fails, changes nothing, and works once the create ended.

The create is held just before it starts the domain by a flow the test inserts into the
declared chain, the way a plugin inserts one (the product has no test switch).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from contracts import kvm
from core.host.plugin import HostPlugin
from core.kernel.errors import SysErrors
from core.kernel.flow import NoRollbackFlow
from core.vm.create_flows import DEFAULT_FLOWS as CREATE_FLOWS
from tests.conftest import fails, ok
from tests.core.vm.conftest import Lab

HOLD = f"{__name__}.HoldCreate"


class HoldCreate(NoRollbackFlow):
    """Waits (in the create chain) until the test lets the create go on."""

    reached: asyncio.Event
    release: asyncio.Event

    async def run(self, data: Any) -> None:
        HoldCreate.reached.set()
        await HoldCreate.release.wait()


@pytest.mark.parametrize("policy", ["Direct", "Delay", "Never"])
async def test_a_vm_being_created_is_not_destroyed(lab: Lab, policy: str) -> None:
    node = lab.node
    await ok(node, "UpdateGlobalConfig", category="vm", name="deletionPolicy", value=policy)
    HoldCreate.reached, HoldCreate.release = asyncio.Event(), asyncio.Event()
    at = next(i for i, f in enumerate(CREATE_FLOWS) if f.endswith(".VmCreateOnHypervisorFlow"))
    node.chains.build_all({"createVm": [*CREATE_FLOWS[:at], HOLD, *CREATE_FLOWS[at:]]}, [])
    create = asyncio.ensure_future(
        node.call(
            "CreateVmInstance",
            {
                "name": "in-flight",
                "instanceOfferingUuid": lab.offering["uuid"],
                "imageUuid": lab.image_uuid,
            },
        )
    )
    try:
        await asyncio.wait_for(HoldCreate.reached.wait(), 30)
        [vm] = await ok(node, "QueryVmInstance")
        assert vm["state"] == "Starting" and vm["hostUuid"] == lab.host["uuid"]
        error = await fails(node, "DestroyVmInstance", SysErrors.INVALID_STATE, uuid=vm["uuid"])
        assert "being created" in error, error
        [same] = await ok(node, "QueryVmInstance")
        assert same == vm
    finally:
        HoldCreate.release.set()
        created = await create
    assert created.success, created.error
    assert created.inventory["state"] == "Running"
    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    if policy != "Direct":
        await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])
    assert await ok(node, "QueryVmInstance") == []
    agent = node.plugin(HostPlugin)._agents[lab.host["uuid"]]
    assert (await agent.call(kvm.VM_SYNC, {}))["states"] == {}

"""The operation log in a node: past operations of a VM, retention, running operations, and
writes that never hold up or fail an operation."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from core.kernel.api import ApiMessage, param
from core.kernel.errors import SysErrors
from core.kernel.extensions import Plugin
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.kernel.service import Service, handles
from core.operation_log import plugin as log_plugin
from tests.conftest import fails, make_node, ok
from tests.core.vm.conftest import make_lab
from tests.core.vm.test_vm_faults import FAIL


class Hold(ApiMessage):
    """Wait until the test lets go (touches no database)."""

    target: str = param(default="", max_length=32)


class HoldPlugin(Plugin, Service):
    implements = (Service,)
    service_id = "hold"
    entered: ClassVar[asyncio.Event]
    release: ClassVar[asyncio.Event]

    @handles(Hold)
    async def hold(self, msg: Hold) -> dict[str, Any]:
        self.entered.set()
        await self.release.wait()
        return {"uuid": msg.target} if msg.target else {}


@pytest.fixture
async def held(props: Properties) -> Any:
    HoldPlugin.entered = asyncio.Event()
    HoldPlugin.release = asyncio.Event()
    node = make_node(props, {"hold": HoldPlugin})
    await node.start()
    try:
        yield node
    finally:
        HoldPlugin.release.set()
        await node.stop()


async def test_past_operations_of_a_vm(node: ManagementNode, tmp_path: Path) -> None:
    lab = await make_lab(node, tmp_path)
    create = {"instanceOfferingUuid": lab.offering["uuid"], "imageUuid": lab.image_uuid}
    vm = await ok(node, "CreateVmInstance", name="vm1", **create)
    other = await ok(node, "CreateVmInstance", name="vm2", **create)
    await ok(node, "StopVmInstance", uuid=vm["uuid"])
    await ok(node, "StopVmInstance", uuid=other["uuid"])
    await fails(node, "PauseVmInstance", SysErrors.INVALID_STATE, uuid=vm["uuid"])
    await ok(node, "QueryVmInstance")  # read-only: no operation

    past = await ok(
        node, "QueryOperationLog", conditions=[f"resourceUuid={vm['uuid']}"], sortBy="createDate"
    )
    assert [(p["apiName"], p["status"]) for p in past] == [
        ("CreateVmInstance", "Succeeded"),
        ("StopVmInstance", "Succeeded"),
        ("PauseVmInstance", "Failed"),
    ]
    created = past[0]
    assert created["params"]["name"] == "vm1"
    assert created["resourceUuid"] == vm["uuid"]
    assert "createVm" in [c["name"] for c in created["chains"]]
    assert all(s["state"] in ("SUCCESS", "SKIPPED") for c in created["chains"] for s in c["steps"])
    assert past[2]["error"]["code"] == SysErrors.INVALID_STATE
    assert created["createDate"] < past[1]["createDate"] < past[2]["createDate"]
    assert not await ok(node, "QueryOperationLog", conditions=["apiName=QueryVmInstance"])
    assert await ok(node, "GetRunningOperations") == []


async def test_a_create_refused_for_capacity_names_the_vm_it_tried_to_make(
    node: ManagementNode, tmp_path: Path
) -> None:
    lab = await make_lab(node, tmp_path)
    big = await ok(node, "CreateInstanceOffering", name="big", cpuNum=64, memorySize=1 << 29)
    reply = await node.call(
        "CreateVmInstance",
        {"name": "web9", "instanceOfferingUuid": big["uuid"], "imageUuid": lab.image_uuid},
    )
    assert not reply.success
    [record] = await ok(node, "QueryOperationLog", conditions=["apiName=CreateVmInstance"])
    assert record["resourceName"] == "web9"
    assert record["resourceUuid"] not in (big["uuid"], lab.image_uuid)
    assert len(record["resourceUuid"]) == 32
    # The uuid the VM had while it was tried: its rows are gone, the record stays.
    assert await ok(node, "QueryVmInstance") == []
    past = await ok(
        node, "QueryOperationLog", conditions=[f"resourceUuid={record['resourceUuid']}"]
    )
    assert [p["uuid"] for p in past] == [record["uuid"]]
    # A success names its resource too.
    vm = await ok(
        node,
        "CreateVmInstance",
        name="web1",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )
    [done] = await ok(node, "QueryOperationLog", conditions=[f"resourceUuid={vm['uuid']}"])
    assert done["resourceName"] == "web1"


async def test_a_failed_create_is_rolled_back_with_its_error_chain(
    node: ManagementNode, tmp_path: Path
) -> None:
    lab = await make_lab(node, tmp_path)
    node.chains.build_all({"createVm": [*node.chains.flows("createVm"), FAIL]}, [])
    reply = await node.call(
        "CreateVmInstance",
        {"name": "bad", "instanceOfferingUuid": lab.offering["uuid"], "imageUuid": lab.image_uuid},
    )
    assert not reply.success and reply.error is not None
    [record] = await ok(node, "QueryOperationLog", conditions=["apiName=CreateVmInstance"])
    assert record["status"] == "RolledBack"
    assert record["error"] == reply.error.to_dict()
    assert record["error"]["cause"]["description"] == "unexpected RuntimeError: injected fault"
    create = next(c for c in record["chains"] if c["name"] == "createVm")
    assert create["status"] == "RolledBack"
    assert create["steps"][-1]["name"] == "InjectedFault"
    assert {s["state"] for s in create["steps"]} <= {"REVERTED", "SKIPPED"}


async def test_only_the_newest_are_kept(node: ManagementNode) -> None:
    await ok(node, "UpdateGlobalConfig", category="operationLog", name="retention", value="3")
    for i in range(5):
        await ok(node, "CreateZone", name=f"z{i}")
    kept = await ok(node, "QueryOperationLog", sortBy="createDate")
    assert [k["params"]["name"] for k in kept] == ["z2", "z3", "z4"]
    assert (await node.call("QueryOperationLog", {"count": True})).total == 3


async def test_operations_under_way(held: ManagementNode) -> None:
    call = asyncio.create_task(held.call("Hold", {"target": "t" * 32}))
    await asyncio.wait_for(HoldPlugin.entered.wait(), 10)
    [running] = await ok(held, "GetRunningOperations")
    assert (running["apiName"], running["status"], running["duration"]) == ("Hold", "Running", None)
    assert await ok(held, "GetRunningOperations", resourceUuid="t" * 32) == []  # not known yet
    assert await ok(held, "QueryOperationLog", conditions=["apiName=Hold"]) == []
    HoldPlugin.release.set()
    assert (await call).success
    assert await ok(held, "GetRunningOperations") == []
    [done] = await ok(held, "QueryOperationLog", conditions=["apiName=Hold"])
    assert done["uuid"] == running["uuid"] and done["resourceUuid"] == "t" * 32


async def test_a_slow_journal_never_holds_up_an_operation(
    held: ManagementNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    HoldPlugin.release.set()
    unblock = threading.Event()
    real = log_plugin.insert_and_prune

    def slow(*args: Any, **kwargs: Any) -> None:
        assert unblock.wait(10)
        real(*args, **kwargs)

    monkeypatch.setattr(log_plugin, "insert_and_prune", slow)
    for _ in range(3):  # each answered while the journal's write waits
        assert (await asyncio.wait_for(held.call("Hold", {}), 5)).success
    query = asyncio.create_task(held.call("QueryOperationLog", {"conditions": ["apiName=Hold"]}))
    await asyncio.sleep(0.05)
    assert not query.done()  # it waits for the writes of the operations before it
    unblock.set()
    reply = await asyncio.wait_for(query, 10)
    assert len(reply.inventories or []) == 3


async def test_a_failed_write_is_logged_and_fails_nothing(
    held: ManagementNode, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    HoldPlugin.release.set()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(log_plugin, "insert_and_prune", broken)
    with caplog.at_level(logging.ERROR, logger=log_plugin.__name__):
        assert (await held.call("Hold", {})).success
        assert await ok(held, "QueryOperationLog", conditions=["apiName=Hold"]) == []
    assert "cannot write 1 operation(s) to the operation log" in caplog.text
    monkeypatch.undo()
    assert (await held.call("Hold", {})).success
    assert len(await ok(held, "QueryOperationLog", conditions=["apiName=Hold"])) == 1


async def test_stopping_writes_what_finished(props: Properties) -> None:
    node = ManagementNode(props)
    await node.start()
    await ok(node, "CreateZone", name="last")
    await node.stop()  # at once: the write may not have started yet
    async with ManagementNode(props) as again:
        [record] = await ok(again, "QueryOperationLog", conditions=["apiName=CreateZone"])
        assert record["params"]["name"] == "last"

"""The canonical events' typed payloads (contracts.events): every publish site in core/
builds its model, and what subscribers get is what they got before the models existed."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from contracts import events as ev
from core.kernel.event_json import EventQueue, to_json
from core.kernel.flow import FLOW_TRACE_PATH
from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.vm.conftest import make_lab

CORE = Path(__file__).resolve().parents[2] / "core"


def _publish_calls() -> list[tuple[Path, ast.Call]]:
    """Every ``<...>.events.publish(path, data)`` / ``publish(path, data)`` call in core/."""
    found = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or len(node.args) != 2:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "publish":
                found.append((path, node))
    return found


def _module(path: Path) -> Any:
    rel = path.relative_to(CORE.parent).with_suffix("")
    return importlib.import_module(".".join(rel.parts))


def test_every_publish_site_in_core_publishes_a_models_json() -> None:
    calls = _publish_calls()
    assert len(calls) >= 25, "the walk no longer finds the publish sites"
    paths = set()
    for file, call in calls:
        where = f"{file.relative_to(CORE.parent)}:{call.lineno}"
        first, data = call.args
        if isinstance(first, ast.Name) and first.id == "FLOW_TRACE_PATH":
            continue  # the kernel's trace dataclasses (see contracts.events)
        assert (
            isinstance(data, ast.Call)
            and isinstance(data.func, ast.Attribute)
            and data.func.attr == "to_json"
        ), f"{where}: publishes something else than a model's to_json()"
        if isinstance(first, ast.Name):  # a path constant: it must be a model's path
            path = getattr(_module(file), first.id)
            assert ev.model_for(path) is not None, f"{where}: no model for {path}"
            paths.add(path)
        else:  # event.PATH, Model.PATH, event.path()
            assert ast.unparse(first).endswith((".PATH", ".path()")), where
    assert len(paths) >= 8


def test_the_registry_names_each_path_once_and_aliases_are_camel_case() -> None:
    assert len({m.PATH for m in ev.EVENTS}) == len(ev.EVENTS)
    for model in ev.EVENTS:
        assert model.__doc__, model.__name__
        assert ev.model_for(model.PATH) is model
        for name, info in model.model_fields.items():
            assert info.alias == to_camel(name), (model.__name__, name)
    assert ev.model_for("/globalConfig/update/kvm/reservedMemory") is ev.GlobalConfigUpdated
    assert ev.model_for("/globalConfig/update/kvm") is None
    assert ev.model_for("/nothing") is None
    unrealizable = ev.L2NetworkUnrealizable(
        l2_network_uuid="u", l2_network_name="n", host_uuid="h", reason="r"
    )
    assert unrealizable.to_json() == {
        "l2NetworkUuid": "u",
        "l2NetworkName": "n",
        "hostUuid": "h",
        "reason": "r",
    }


def test_an_optional_part_left_out_is_absent_and_unknown_keys_are_refused() -> None:
    destroyed = ev.ApplianceVmStatusChanged(
        appliance_vm_uuid="a", old_status="Connected", new_status="Destroyed"
    )
    assert destroyed.to_json() == {
        "applianceVmUuid": "a",
        "oldStatus": "Connected",
        "newStatus": "Destroyed",
    }
    job = ev.GcJobUpdated(uuid="j", name="n", old_status=None, new_status="Idle", inventory=None)
    assert job.to_json() == {
        "uuid": "j",
        "name": "n",
        "oldStatus": None,
        "newStatus": "Idle",
        "inventory": None,
    }
    with pytest.raises(ValidationError):
        ev.VmDeleted.model_validate({"vmUuid": "v", "extra": 1})
    with pytest.raises(ValidationError):
        ev.VmDeleted.model_validate({"vmUuid": 7})
    config = ev.GlobalConfigUpdated(category="kvm", name="a.b", old_value="1", new_value="2")
    assert config.path() == "/globalConfig/update/kvm/a.b"


async def test_a_lab_publishes_payloads_their_models_take_unchanged(
    node: ManagementNode, tmp_path: Path
) -> None:
    """Every event a simulator lab publishes, as an in-process subscriber and a client get
    it, is its model's JSON; a VM state change and a host status change are exactly the
    dicts the core published before the models."""
    seen: list[tuple[str, Any]] = []
    for model in ev.EVENTS:
        node.events.subscribe(model.PATH, lambda e: seen.append((e.path, e.data)))
    queue = EventQueue(node.events, [m.PATH for m in ev.EVENTS])

    lab = await make_lab(node, tmp_path)
    vm = await ok(
        node,
        "CreateVmInstance",
        name="vm1",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )
    stopped = await ok(node, "StopVmInstance", uuid=vm["uuid"])
    await ok(node, "UpdateGlobalConfig", category="kvm", name="vm.migrationQuantity", value="5")
    await ok(node, "DestroyVmInstance", uuid=vm["uuid"])
    await ok(node, "ExpungeVmInstance", uuid=vm["uuid"])

    kinds: set[type[ev.Event]] = set()
    for path, data in seen:
        model = ev.model_for(path)
        assert model is not None, path
        kinds.add(model)
        payload = to_json(data) if path == FLOW_TRACE_PATH else data
        assert type(payload) is dict, path
        assert model.model_validate(payload).to_json() == payload, path
    assert {
        ev.HostStatusChanged,
        ev.VmStateChanged,
        ev.VmDeleted,
        ev.GlobalConfigUpdated,
        ev.ApiCallStarted,
        ev.ApiCallDone,
        ev.FlowTrace,
        ev.OperationUpdate,
    } <= kinds

    # what a client gets over the socket is the same JSON
    client = [queue.get_nowait() for _ in range(queue.ready())]
    assert [(e.path, e.data) for e in client if e is not None] == [
        (path, to_json(data)) for path, data in seen
    ]

    host = [data for path, data in seen if path == "/host/status/change"]
    assert host == [
        {
            "hostUuid": lab.host["uuid"],
            "oldStatus": "Connecting",
            "newStatus": "Connected",
            "inventory": host[0]["inventory"],
        }
    ]
    assert host[0]["inventory"]["uuid"] == lab.host["uuid"]
    assert host[0]["inventory"]["status"] == "Connected"

    states = [data for path, data in seen if path == "/vm/state/change"]
    stop = next(d for d in states if d["newState"] == "Stopped")
    assert stop == {
        "vmUuid": vm["uuid"],
        "oldState": "Stopping",
        "newState": "Stopped",
        "inventory": stopped,
    }
    assert [(d["oldState"], d["newState"]) for d in states] == [
        ("Created", "Starting"),
        ("Starting", "Running"),
        ("Running", "Stopping"),
        ("Stopping", "Stopped"),
        ("Stopped", "Destroying"),
        ("Destroying", "Destroyed"),
    ]
    for data in states:
        assert list(data) == ["vmUuid", "oldState", "newState", "inventory"]
        assert data["inventory"]["state"] == data["newState"]
    assert ("/vm/deleted", {"vmUuid": vm["uuid"]}) in seen
    assert (
        "/globalConfig/update/kvm/vm.migrationQuantity",
        {"category": "kvm", "name": "vm.migrationQuantity", "oldValue": "2", "newValue": "5"},
    ) in seen

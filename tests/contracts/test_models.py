"""The typed contracts match the paths they describe and the agents that serve them: every
command has one request model, its reply model is what the serving handler returns, and
ASYNC says what the agent's registry says."""

from __future__ import annotations

import importlib
import typing
from pathlib import Path
from types import ModuleType

import pytest

from agent.app import Agent
from agent.simulator_backend import SIM_SET_VM_STATE, SimulatorBackend
from agentkit.server import AgentServer
from contracts import envelope, kvm
from contracts import virtual_router as vr
from contracts.base import Request, Wire
from virtual_router.app import VrAgent

CONTRACTS = (envelope, kvm, vr)


def requests(module: ModuleType) -> dict[str, type[Request]]:  # type: ignore[type-arg]
    found: dict[str, type[Request]] = {}  # type: ignore[type-arg]
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Request) and value.PATH:
            assert value.PATH not in found, f"{value.PATH} has two models"
            found[value.PATH] = value
    return found


@pytest.mark.parametrize("module", CONTRACTS, ids=lambda m: m.__name__)
def test_every_command_has_one_request_model(module: ModuleType) -> None:
    assert set(requests(module)) == envelope.command_paths(module) | (
        {envelope.TASK_STATUS, envelope.TASK_CANCEL} if module is envelope else set()
    )


def _served_replies(server: AgentServer) -> dict[str, tuple[object, bool]]:
    """Path -> (the handler's return annotation, is_async) for each registered command."""
    served = {}
    for path in server.registry.paths():
        command = server.registry.get(path)
        assert command is not None
        served[path] = (typing.get_type_hints(command.handler)["return"], command.is_async)
    return served


def _plugin_contracts(server: AgentServer) -> dict[str, type[Request]]:  # type: ignore[type-arg]
    """The request models of the paths that plugins under plugins/ serve: each plugin's
    package (``zsl_<name>``) has its ``contract`` module."""
    found = {}
    for path in server.registry.paths():
        command = server.registry.get(path)
        package = str(getattr(getattr(command, "handler", None), "__module__", "")).split(".")[0]
        if package.startswith("zsl_"):
            found.update(requests(importlib.import_module(f"{package}.contract")))
    return found


async def test_the_host_agent_answers_each_command_with_its_contract_reply(tmp_path: Path) -> None:
    agent = Agent(SimulatorBackend(), tmp_path / "agent")
    await agent.start("127.0.0.1", 0)
    try:
        assert agent.server is not None
        served = _served_replies(agent.server)
        plugins = _plugin_contracts(agent.server)
    finally:
        await agent.stop()
    served.pop(SIM_SET_VM_STATE)
    models = requests(kvm) | plugins
    assert set(served) == set(models)
    for path, (returns, is_async) in served.items():
        assert (returns, is_async) == (models[path].REPLY, models[path].ASYNC), path


async def test_the_router_agent_answers_each_command_with_its_contract_reply(
    short_dir: Path,
) -> None:
    agent = VrAgent(short_dir / "data", short_dir / "token", simulate=True)
    await agent.start(str(short_dir / "vr.sock"))
    try:
        assert agent.server is not None
        served = _served_replies(agent.server)
        plugins = _plugin_contracts(agent.server)
    finally:
        await agent.stop()
    models = requests(vr) | plugins
    assert {path: returns for path, (returns, _) in served.items()} == {
        path: model.REPLY for path, model in models.items()
    }


def test_a_request_is_sent_in_camel_case_and_refuses_an_unknown_field() -> None:
    cmd = kvm.StartVmCmd(
        vm_uuid="vm-1",
        cpu_num=1,
        memory_size=64 << 20,
        root_volume=kvm.VolumeTO(install_path="/v/root.qcow2"),
        nics=[kvm.NicTO(mac="fa:00:00:00:00:01", bridge_name="zslbr-1", device_name="zslt1")],
    )
    sent = cmd.to_json()
    assert sent["rootVolume"] == {"installPath": "/v/root.qcow2", "format": "qcow2"}
    assert sent["nics"] == [  # every field: a plain NIC is a Linux bridge port, untagged
        {
            "mac": "fa:00:00:00:00:01",
            "bridgeName": "zslbr-1",
            "deviceName": "zslt1",
            "virtualPortType": "",
            "vlanId": None,
        }
    ]
    assert kvm.StartVmCmd.model_validate(sent) == cmd
    with pytest.raises(ValueError, match="cpuNumber"):
        kvm.StartVmCmd.model_validate({**sent, "cpuNumber": 2})


def test_a_reply_ignores_what_it_does_not_know_and_names_what_is_missing() -> None:
    cmd = kvm.ImageInfoCmd(install_path="/i")
    reply = cmd.reply({"success": True, "error": "", "format": "raw", "size": 1, "actualSize": 1})
    assert reply == kvm.ImageInfoRsp(format="raw", size=1, actual_size=1)
    with pytest.raises(ValueError, match="actualSize"):
        cmd.reply({"format": "raw", "size": 1})


def test_wire_names_are_the_documented_ones() -> None:
    """camelCase from snake_case, except where ZStack's name is not (``md5sum``)."""
    answer = kvm.DownloadImageRsp(
        install_path="/i", format="raw", size=1, actual_size=1, md5sum="0" * 32
    ).to_json()
    assert set(answer) == {"installPath", "format", "size", "actualSize", "md5sum"}
    every = [
        v
        for m in CONTRACTS
        for v in vars(m).values()
        if isinstance(v, type) and issubclass(v, Wire)
    ]
    for model in every:
        for name, field in model.model_fields.items():
            assert field.alias is not None and field.alias.replace("_", "") == field.alias, (
                model,
                name,
            )

"""Virtual ports (contracts.kvm.NicTO / ApplianceNicTO ``virtualPortType`` and ``vlanId``):
the agent's checks of the fields, and an appliance's veths plugged by the
:class:`agent.extension_points.PortPlugger` an agent plugin registers at its start, on a
simulator host (the real host's side is in test_appliance.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.app import PLUGIN_GROUP, Agent
from agent.backend import NicSpec
from agent.context import HostAgentContext
from agent.fields import Fields
from agent.network.base import ApplianceNic, ApplianceSpec
from agent.plugins.appliance import appliance_spec
from agent.plugins.vm import vm_spec
from agent.simulator_backend import SimulatorBackend
from agentkit.errors import AgentError, ArgumentError
from agentkit.plugins import AgentPlugin, discover
from agentkit.procs import alive
from contracts.names import veth_name
from tests.agent.helpers import AgentCaller
from tests.agent.net_helpers import VR_MAIN, RecordingPlugger
from tests.agent.test_network_simulator import BR1, UUID, simulator_agent
from tests.agent.test_network_simulator import appliance_body as simulator_appliance_body

BR = BR1
SWITCH = "zslovs-a1"
MAC = "52:54:00:12:34:56"
NO_PLUGGER = "no agent plugin plugs virtual ports of type openvswitch"


# -- VM NICs ------------------------------------------------------------------------------
def vm_body(root: str = "/var/lib/zsl/root.qcow2", **nic: Any) -> dict[str, Any]:
    return {
        "vmUuid": "vm-1",
        "cpuNum": 1,
        "memorySize": 64 * 1024**2,
        "rootVolume": {"installPath": root},
        "nics": [{"mac": MAC, "bridgeName": BR, "deviceName": "zslt0123456780", **nic}],
    }


OVS: dict[str, Any] = {"virtualPortType": "openvswitch", "bridgeName": SWITCH}


@pytest.mark.parametrize(
    ("nic", "error"),
    [
        (
            {"virtualPortType": "ovs"},
            "field 'nics[0].virtualPortType' must be one of '', 'openvswitch', not 'ovs'",
        ),
        ({"virtualPortType": 1}, "field 'nics[0].virtualPortType' must be a string"),
        (
            {"vlanId": 100},
            "field 'nics[0].vlanId' needs a virtualPortType: a port of a Linux bridge cannot "
            "be tagged",
        ),
        (
            {**OVS, "vlanId": 0},
            "field 'nics[0].vlanId' must be a VLAN id, an integer from 1 to 4094: 0",
        ),
        ({**OVS, "vlanId": 4095}, "field 'nics[0].vlanId' must be a VLAN id"),
        ({**OVS, "vlanId": "100"}, "field 'nics[0].vlanId' must be a VLAN id"),
        ({**OVS, "vlanId": True}, "field 'nics[0].vlanId' must be a VLAN id"),
        (
            {**OVS, "bridgeName": "br-int"},
            "field 'nics[0].bridgeName' is not a project switch name",
        ),
        (
            {**OVS, "bridgeName": "zslovs-0123456789"},  # 17 characters
            "field 'nics[0].bridgeName' is not a project switch name",
        ),
        ({**OVS, "bridgeName": "zslOVS"}, "field 'nics[0].bridgeName' is not a project switch"),
        # A Linux bridge port keeps the bridge rule: zslbr-…
        ({"bridgeName": SWITCH}, "field 'nics[0].bridgeName' is not a project bridge name"),
    ],
)
def test_vm_nic_port_fields_are_checked(nic: dict[str, Any], error: str) -> None:
    with pytest.raises(ArgumentError) as raised:
        vm_spec(Fields(vm_body(**nic)))
    assert str(raised.value).startswith(error), str(raised.value)


async def test_vm_nic_port_fields_reach_the_simulator(tmp_path: Path) -> None:
    root = tmp_path / "root.qcow2"
    root.write_bytes(b"")
    tagged = vm_spec(Fields(vm_body(str(root), **OVS, vlanId=4094)))
    assert tagged.nics == (NicSpec(MAC, SWITCH, "zslt0123456780", "openvswitch", 4094),)
    untagged = vm_spec(Fields(vm_body(str(root), virtualPortType="openvswitch", vlanId=None)))
    assert untagged.nics == (NicSpec(MAC, BR, "zslt0123456780", "openvswitch", None),)
    plain = vm_spec(Fields(vm_body(str(root), virtualPortType="")))
    assert plain.nics == (NicSpec(MAC, BR, "zslt0123456780"),)

    backend = SimulatorBackend(data_dir=tmp_path / "agent")
    try:
        assert await backend.vm_start(tagged) == "Running"
        assert backend.domains["vm-1"].spec.nics == tagged.nics
    finally:
        await backend.close()


# -- appliance NICs -----------------------------------------------------------------------
def appliance_body(**public: Any) -> dict[str, Any]:
    """test_network_simulator's appliance, its public NIC on an Open vSwitch access port."""
    body = simulator_appliance_body()
    body["nics"][1] |= {
        "bridgeName": SWITCH,
        "virtualPortType": "openvswitch",
        "vlanId": 100,
        **public,
    }
    return body


@pytest.mark.parametrize(
    ("public", "pluggable", "error"),
    [
        ({}, (), f"field 'nics[1].virtualPortType': {NO_PLUGGER}"),
        ({}, ("vxlan",), f"field 'nics[1].virtualPortType': {NO_PLUGGER}"),
        (
            {"virtualPortType": "vxlan"},
            ("openvswitch", "vxlan"),
            "field 'nics[1].virtualPortType' must be one of '', 'openvswitch', not 'vxlan'",
        ),
        (
            {"virtualPortType": "", "bridgeName": BR},
            ("openvswitch",),
            "field 'nics[1].vlanId' needs a virtualPortType",
        ),
        ({"vlanId": 5000}, ("openvswitch",), "field 'nics[1].vlanId' must be a VLAN id"),
        (
            {"bridgeName": "ovsbr0"},
            ("openvswitch",),
            "field 'nics[1].bridgeName' is not a project switch name",
        ),
    ],
)
def test_appliance_nic_port_fields_are_checked(
    public: dict[str, Any], pluggable: tuple[str, ...], error: str
) -> None:
    with pytest.raises(ArgumentError) as raised:
        appliance_spec(Fields(appliance_body(**public)), pluggable)
    assert str(raised.value).startswith(error), str(raised.value)


def test_appliance_nic_port_fields() -> None:
    spec = appliance_spec(Fields(appliance_body()), {"openvswitch": RecordingPlugger()})
    assert spec.nics == (
        ApplianceNic(BR, "52:54:00:aa:00:01", "10.0.0.1", 24),  # the MAC in lower case
        ApplianceNic(SWITCH, "52:54:00:aa:00:02", "192.0.2.10", 24, "public", "openvswitch", 100),
    )
    untagged = appliance_spec(Fields(appliance_body(vlanId=None)), ("openvswitch",))
    assert untagged.nics[1].vlan_id is None


# -- a simulator host with a plugger ------------------------------------------------------
def plugger_plugin(plugger: RecordingPlugger) -> type[AgentPlugin[HostAgentContext]]:
    class TestPluggerPlugin(AgentPlugin[HostAgentContext]):
        """What an Open vSwitch plugin's agent side does: register its plugger at start."""

        async def start(self) -> None:
            self.ctx.port_pluggers[plugger.virtual_port_type] = plugger

    return TestPluggerPlugin


@asynccontextmanager
async def sim_agent(
    short_dir: Path, *extra: type[AgentPlugin[HostAgentContext]]
) -> AsyncIterator[tuple[Agent, AgentCaller]]:
    """A simulator agent with the installed plugins and ``extra``."""
    installed: list[type[AgentPlugin[HostAgentContext]]] = discover(PLUGIN_GROUP)  # type: ignore[assignment]
    async with simulator_agent(short_dir, [*installed, *extra]) as agent_and_caller:
        yield agent_and_caller


@pytest.mark.skipif(not VR_MAIN.exists(), reason=f"{VR_MAIN} is not written yet")
async def test_a_plugin_plugger_plugs_an_appliance_veth_on_a_simulator_host(
    short_dir: Path,
) -> None:
    plugger = RecordingPlugger()
    async with sim_agent(short_dir, plugger_plugin(plugger)) as (agent, caller):
        assert agent.backend.network.port_pluggers == {"openvswitch": plugger}
        await caller.ok("/network/bridge/create", {"bridgeName": BR})
        veth = veth_name(UUID, 1)

        answer = await caller.ok("/appliance/create", appliance_body())
        assert plugger.calls == [("plug", SWITCH, veth, 100)]  # the Linux bridge port: none
        status = await caller.ok("/appliance/check", {"applianceUuid": UUID})
        assert (status["agentRunning"], status["missingNics"]) == (True, [])

        plugger.ports[veth] = (SWITCH, 200)  # the tag drifted: the NIC is missing
        status = await caller.ok("/appliance/check", {"applianceUuid": UUID})
        assert status["missingNics"] == ["52:54:00:aa:00:02"]
        again = await caller.ok("/appliance/create", appliance_body())  # a repair
        assert again["agentPid"] == answer["agentPid"]
        assert plugger.calls[1:] == [("plug", SWITCH, veth, 100)]
        status = await caller.ok("/appliance/check", {"applianceUuid": UUID})
        assert status["missingNics"] == []

        plugger.calls.clear()
        await caller.ok("/appliance/destroy", {"applianceUuid": UUID})
        assert veth in plugger.unplugged()
        assert [c for c in plugger.calls if c[0] != "unplug"] == []
        assert plugger.ports == {}
        assert not alive(answer["agentPid"])
        await caller.ok("/appliance/destroy", {"applianceUuid": UUID})  # idempotent


async def test_without_a_plugger_a_virtual_port_is_refused_before_anything_is_made(
    short_dir: Path,
) -> None:
    async with sim_agent(short_dir) as (agent, caller):
        assert agent.backend.network.port_pluggers == {}
        await caller.ok("/network/bridge/create", {"bridgeName": BR})
        answer = await caller.call("/appliance/create", appliance_body())
        assert answer["success"] is False
        assert answer["error"] == f"field 'nics[1].virtualPortType': {NO_PLUGGER}"
        assert not agent.backend.network.appliance_dir(UUID).exists()

        # The driver refuses too, whoever calls it.
        spec = ApplianceSpec(
            UUID,
            (ApplianceNic(SWITCH, "52:54:00:aa:00:02", "10.0.0.1", 24, "guest", "openvswitch"),),
        )
        with pytest.raises(AgentError, match=NO_PLUGGER):
            await agent.backend.network.appliance_create(spec)
        assert not agent.backend.network.appliance_dir(UUID).exists()

"""The host agent's side: OVS bridges through OVSDB, router veths plugged as OVS ports
(the agent's PortPlugger extension point), and whether ovs-vswitchd runs.  VM NICs need
nothing here: libvirt adds a tap with ``<virtualport type='openvswitch'/>`` itself."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from agent.context import HostAgentContext
from agent.extension_points import PortPlugger
from agent.fields import Fields
from agentkit.errors import ArgumentError
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts.base import Ack
from zsl_openvswitch import contract
from zsl_openvswitch.ovsdb import Ovsdb, vswitchd_version


class OvsPortPlugger:
    """Router veths as OVS ports (blocking; the appliance driver calls it in its thread)."""

    virtual_port_type = contract.VIRTUAL_PORT_TYPE

    def __init__(self, ovsdb: Ovsdb) -> None:
        self.ovsdb = ovsdb

    def plug(self, bridge: str, port: str, vlan_id: int | None) -> None:
        self.ovsdb.plug(bridge, port, vlan_id)

    def unplug(self, port: str) -> None:
        running, _why = vswitchd_version()
        if running:  # nothing to unplug from a switch that does not run: its ports stay
            self.ovsdb.unplug(port)

    def plugged(self, bridge: str, port: str, vlan_id: int | None) -> bool:
        return port in self.ovsdb.ports(bridge) and self.ovsdb.tag(port) == vlan_id


_BRIDGE = re.compile(re.escape(contract.BRIDGE_PREFIX) + r"[a-z0-9]{1,10}")


def _bridge(f: Fields) -> str:
    name = f.text("bridgeName")
    if not _BRIDGE.fullmatch(name):
        raise ArgumentError(
            f"field 'bridgeName' is not an Open vSwitch bridge of the project "
            f"({contract.BRIDGE_PREFIX} and lower-case letters or digits): {name!r}"
        )
    return name


class OpenvSwitchCommands(AgentPlugin[HostAgentContext]):
    def __init__(self, ctx: HostAgentContext) -> None:
        super().__init__(ctx)
        self.ovsdb = Ovsdb()

    def applies(self) -> bool:
        """KVM hosts only: the simulator has no switch to drive."""
        return self.ctx.backend.hypervisor_type == "KVM"

    def commands(self, registry: CommandRegistry) -> None:
        registry.add(contract.BRIDGE_CREATE, self.bridge_create)
        registry.add(contract.BRIDGE_DELETE, self.bridge_delete)
        registry.add(contract.CHECK, self.check)

    async def start(self) -> None:
        plugger: PortPlugger = OvsPortPlugger(self.ovsdb)
        self.ctx.port_pluggers[contract.VIRTUAL_PORT_TYPE] = plugger

    async def bridge_create(
        self, body: dict[str, Any], _ctx: CommandContext
    ) -> contract.CreateBridgeRsp:
        f = Fields(body)
        bridge, uplink = _bridge(f), f.interface_name()
        async with self.ctx.host_network_lock:
            await asyncio.to_thread(self.ovsdb.add_bridge, bridge, uplink)
        return contract.CreateBridgeRsp(bridge_name=bridge)

    async def bridge_delete(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        bridge = _bridge(Fields(body))
        async with self.ctx.host_network_lock:
            await asyncio.to_thread(self.ovsdb.delete_bridge, bridge)
        return Ack()

    async def check(self, _body: dict[str, Any], _ctx: CommandContext) -> contract.CheckRsp:
        running, said = await asyncio.to_thread(vswitchd_version)
        return contract.CheckRsp(
            vswitchd_running=running,
            version=said if running else "",
            error="" if running else said,
        )

"""Appliances: the virtual router's network namespace, its veths and its agent.
Operations on one appliance are serialised."""

from __future__ import annotations

import ipaddress
from collections.abc import Container
from typing import Any

from agent.context import HostAgentContext
from agent.extension_points import no_plugger
from agent.fields import Fields, unique
from agent.network.base import ROLES, ApplianceNic, ApplianceSpec
from agentkit.errors import ArgumentError
from agentkit.locks import KeyedLocks
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts import kvm
from contracts.base import Ack
from contracts.names import MAX_APPLIANCE_NICS


def appliance_spec(f: Fields, pluggable: Container[str] = ()) -> ApplianceSpec:
    """``pluggable``: the virtual port types an agent plugin plugs
    (``HostAgentContext.port_pluggers``); a NIC of another one is refused here, before
    anything is made."""
    nics = []
    for nic in f.objects("nics"):
        port, mac = nic.nic_port(), nic.mac()
        if port.virtual_port_type and port.virtual_port_type not in pluggable:
            raise ArgumentError(
                f"field {nic._name('virtualPortType')!r}: {no_plugger(port.virtual_port_type)}"
            )
        iface = nic.ipv4_interface_of("ip", "prefixLength")
        role = nic.text("role", "guest")
        if role not in ROLES:
            raise ArgumentError(f"field {nic._name('role')!r} must be one of {', '.join(ROLES)}")
        nics.append(
            ApplianceNic(
                port.bridge_name,
                mac,
                str(iface.ip),
                iface.network.prefixlen,
                role,
                port.virtual_port_type,
                port.vlan_id,
            )
        )
    if not nics:
        raise ArgumentError("field 'nics' needs at least one NIC")
    if len(nics) > MAX_APPLIANCE_NICS:
        raise ArgumentError(f"field 'nics' has more than {MAX_APPLIANCE_NICS} NICs")
    unique([n.mac for n in nics], "nics[].mac")
    gateway = f.text("defaultGateway", "")
    if gateway:
        try:
            address = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise ArgumentError(
                f"field 'defaultGateway' is not an IPv4 address: {gateway!r}"
            ) from None
        if not any(n.role == "public" and address in n.interface.network for n in nics):
            raise ArgumentError(f"field 'defaultGateway' {gateway} is in no public NIC's network")
    return ApplianceSpec(f.appliance_uuid(), tuple(nics), gateway)


class ApplianceCommands(AgentPlugin[HostAgentContext]):
    def __init__(self, ctx: HostAgentContext) -> None:
        super().__init__(ctx)
        self.appliance_locks = KeyedLocks()

    def commands(self, registry: CommandRegistry) -> None:
        registry.add(kvm.APPLIANCE_CREATE, self.appliance_create)
        registry.add(kvm.APPLIANCE_DESTROY, self.appliance_destroy)
        registry.add(kvm.APPLIANCE_CHECK, self.appliance_check)

    async def appliance_create(
        self, body: dict[str, Any], _ctx: CommandContext
    ) -> kvm.CreateApplianceRsp:
        spec = appliance_spec(Fields(body), self.ctx.port_pluggers)
        async with self.appliance_locks.hold(spec.appliance_uuid):
            info = await self.ctx.backend.network.appliance_create(spec)
        return kvm.CreateApplianceRsp(
            namespace=info.namespace,
            socket_path=info.socket_path,
            token_file=info.token_file,
            agent_pid=info.agent_pid,
        )

    async def appliance_destroy(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        appliance_uuid = Fields(body).appliance_uuid()
        async with self.appliance_locks.hold(appliance_uuid):
            await self.ctx.backend.network.appliance_destroy(appliance_uuid)
        return Ack()

    async def appliance_check(
        self, body: dict[str, Any], _ctx: CommandContext
    ) -> kvm.CheckApplianceRsp:
        appliance_uuid = Fields(body).appliance_uuid()
        async with self.appliance_locks.hold(appliance_uuid):
            status = await self.ctx.backend.network.appliance_check(appliance_uuid)
        return kvm.CheckApplianceRsp(
            namespace=status.namespace,
            agent_running=status.agent_running,
            missing_nics=list(status.missing_nics),
        )

"""Host networking: bridges, host NAT and the host's routes.  Commands changing links or
the NAT table hold the host-wide network lock (:class:`agent.context.HostAgentContext`)."""

from __future__ import annotations

from typing import Any

from agent.context import HostAgentContext
from agent.fields import Fields
from agent.network import names
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts import kvm
from contracts.base import Ack


class NetworkCommands(AgentPlugin[HostAgentContext]):
    def commands(self, registry: CommandRegistry) -> None:
        registry.add(kvm.BRIDGE_CREATE, self.bridge_create)
        registry.add(kvm.BRIDGE_DELETE, self.bridge_delete)
        registry.add(kvm.BRIDGE_CHECK, self.bridge_check)
        registry.add(kvm.HOSTNAT_SET, self.hostnat_set)
        registry.add(kvm.HOSTNAT_REMOVE, self.hostnat_remove)
        registry.add(kvm.HOST_ROUTES, self.host_routes)

    async def bridge_create(
        self, body: dict[str, Any], _ctx: CommandContext
    ) -> kvm.CreateBridgeRsp:
        f = Fields(body)
        bridge = f.bridge_name()
        physical = f.interface_name()
        allow = f.boolean("allowDefaultRouteInterface")
        async with self.ctx.host_network_lock:
            await self.ctx.backend.network.bridge_create(bridge, physical, allow)
        return kvm.CreateBridgeRsp(bridge_name=bridge)

    async def bridge_delete(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        bridge = Fields(body).bridge_name()
        async with self.ctx.host_network_lock:
            await self.ctx.backend.network.bridge_delete(bridge)
        return Ack()

    async def bridge_check(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.CheckBridgeRsp:
        f = Fields(body)
        bridges = f.texts("bridgeNames")
        for i, name in enumerate(bridges):
            names.check_bridge_name(name, f"bridgeNames[{i}]")
        return kvm.CheckBridgeRsp(missing=await self.ctx.backend.network.bridge_check(bridges))

    async def hostnat_set(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        f = Fields(body)
        bridge, gateway = f.bridge_name(), f.ipv4_interface("gatewayCidr")
        async with self.ctx.host_network_lock:
            await self.ctx.backend.network.hostnat_set(bridge, gateway)
        return Ack()

    async def hostnat_remove(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        f = Fields(body)
        bridge, gateway = f.bridge_name(), f.ipv4_interface("gatewayCidr")
        async with self.ctx.host_network_lock:
            await self.ctx.backend.network.hostnat_remove(bridge, gateway)
        return Ack()

    async def host_routes(self, _body: dict[str, Any], _ctx: CommandContext) -> kvm.HostRoutesRsp:
        routes = await self.ctx.backend.network.host_routes()
        return kvm.HostRoutesRsp(
            routes=[
                kvm.RouteTO(destination=r.destination, interface=r.interface, gateway=r.gateway)
                for r in routes
            ]
        )

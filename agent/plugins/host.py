"""The host itself: connect (the facts the core records), ping, capacity."""

from __future__ import annotations

from typing import Any

from agent.context import HostAgentContext
from agent.fields import Fields
from agentkit.errors import ArgumentError
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts import kvm


class HostCommands(AgentPlugin[HostAgentContext]):
    def commands(self, registry: CommandRegistry) -> None:
        registry.add(kvm.HOST_CONNECT, self.host_connect)
        registry.add(kvm.HOST_PING, self.host_ping)
        registry.add(kvm.HOST_CAPACITY, self.host_capacity)

    async def host_connect(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.HostFactsRsp:
        f = Fields(body)
        host_uuid = f.text("hostUuid")
        report_url = f.text("reportUrl", "")
        if report_url and not report_url.startswith(("http://", "https://")):
            raise ArgumentError(f"field 'reportUrl' must be an http(s) URL: {report_url!r}")
        facts = await self.ctx.backend.connect(host_uuid, report_url)
        self.ctx.reporter.configure(host_uuid, report_url)
        return kvm.HostFactsRsp(
            host_uuid=host_uuid,
            hostname=facts.hostname,
            libvirt_version=facts.libvirt_version,
            qemu_img_version=facts.qemu_img_version,
            cpu_num=facts.cpu_num,
            cpu_sockets=facts.cpu_sockets,
            cpu_model_name=facts.cpu_model_name,
            cpu_flags=list(facts.cpu_flags),
            total_memory=facts.total_memory,
            acceleration=facts.acceleration,
            hypervisor_type=facts.hypervisor_type,
        )

    async def host_ping(self, _body: dict[str, Any], _ctx: CommandContext) -> kvm.PingRsp:
        await self.ctx.backend.ping()
        return kvm.PingRsp(host_uuid=self.ctx.reporter.host_uuid)

    async def host_capacity(
        self, _body: dict[str, Any], _ctx: CommandContext
    ) -> kvm.HostCapacityRsp:
        c = await self.ctx.backend.capacity()
        return kvm.HostCapacityRsp(
            cpu_num=c.cpu_num,
            total_memory=c.total_memory,
            used_memory=c.used_memory,
            free_memory=c.free_memory,
        )

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

    async def host_connect(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        host_uuid = f.text("hostUuid")
        report_url = f.text("reportUrl", "")
        if report_url and not report_url.startswith(("http://", "https://")):
            raise ArgumentError(f"field 'reportUrl' must be an http(s) URL: {report_url!r}")
        facts = await self.ctx.backend.connect(host_uuid, report_url)
        self.ctx.reporter.configure(host_uuid, report_url)
        return {
            "hostUuid": host_uuid,
            "hostname": facts.hostname,
            "libvirtVersion": facts.libvirt_version,
            "qemuImgVersion": facts.qemu_img_version,
            "cpuNum": facts.cpu_num,
            "cpuSockets": facts.cpu_sockets,
            "cpuModelName": facts.cpu_model_name,
            "cpuFlags": list(facts.cpu_flags),
            "totalMemory": facts.total_memory,
            "acceleration": facts.acceleration,
            "hypervisorType": facts.hypervisor_type,
        }

    async def host_ping(self, _body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        await self.ctx.backend.ping()
        return {"hostUuid": self.ctx.reporter.host_uuid}

    async def host_capacity(self, _body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        c = await self.ctx.backend.capacity()
        return {
            "cpuNum": c.cpu_num,
            "totalMemory": c.total_memory,
            "usedMemory": c.used_memory,
            "freeMemory": c.free_memory,
        }

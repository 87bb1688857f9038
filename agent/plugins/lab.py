"""Reconciliation: list what of this agent's lab is on the host, and remove orphans."""

from __future__ import annotations

from typing import Any

from agent.context import HostAgentContext
from agent.fields import Fields, absolute_path
from agent.lab_inventory import KINDS
from agentkit.errors import ArgumentError
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts import kvm


def storage_paths(f: Fields) -> list[str]:
    paths = f.texts("storagePaths")
    for i, path in enumerate(paths):
        absolute_path(Fields({"path": path}, f"storagePaths[{i}]."), "path")
    return paths


class LabCommands(AgentPlugin[HostAgentContext]):
    def commands(self, registry: CommandRegistry) -> None:
        registry.add(kvm.LAB_INVENTORY, self.lab_inventory)
        registry.add(kvm.LAB_REMOVE, self.lab_remove)

    async def lab_inventory(
        self, body: dict[str, Any], _ctx: CommandContext
    ) -> kvm.LabInventoryRsp:
        paths = storage_paths(Fields(body))
        objects = await self.ctx.backend.lab_inventory(paths)
        return kvm.LabInventoryRsp(
            lab=self.ctx.backend.network.lab, objects=[o.to_contract() for o in objects]
        )

    async def lab_remove(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.LabRemoveRsp:
        f = Fields(body)
        paths = storage_paths(f)
        wanted = []
        for obj in f.objects("objects"):
            kind = obj.text("kind")
            if kind not in KINDS:
                raise ArgumentError(
                    f"field {obj._name('kind')!r} must be one of {', '.join(KINDS)}"
                )
            wanted.append((kind, obj.text("name")))
        # Links and host NAT are one host-wide state: no bridge or NAT command meanwhile.
        async with self.ctx.host_network_lock:
            result = await self.ctx.backend.lab_remove(wanted, paths)
        return kvm.LabRemoveRsp(
            removed=[o.to_contract() for o in result.removed],
            refused=[
                kvm.RefusedObjectTO(kind=o.kind, name=o.name, error=e) for o, e in result.refused
            ],
            failures=[
                kvm.RefusedObjectTO(kind=o.kind, name=o.name, error=e) for o, e in result.failures
            ],
        )

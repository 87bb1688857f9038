"""The simulator backend's own command: change a VM's state as if from outside the agent
(what ``virsh destroy`` is on a real host).  Served only by a simulator agent."""

from __future__ import annotations

from typing import Any

from agent.context import HostAgentContext
from agent.simulator_backend import SIM_SET_VM_STATE, SimulatorBackend
from agentkit.errors import ArgumentError
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts.kvm import VM_STATES, VmStateRsp


class SimulatorCommands(AgentPlugin[HostAgentContext]):
    def applies(self) -> bool:
        return isinstance(self.ctx.backend, SimulatorBackend)

    def commands(self, registry: CommandRegistry) -> None:
        registry.add(SIM_SET_VM_STATE, self.set_vm_state)

    async def set_vm_state(self, body: dict[str, Any], _ctx: CommandContext) -> VmStateRsp:
        vm_uuid = body.get("vmUuid")
        state = body.get("state")
        if not isinstance(vm_uuid, str) or state not in VM_STATES:
            raise ArgumentError(f"need vmUuid and state (one of {', '.join(VM_STATES)})")
        backend = self.ctx.backend
        assert isinstance(backend, SimulatorBackend)
        backend.set_state(vm_uuid, state)
        return VmStateRsp(vm_uuid=vm_uuid, state=state)

"""The host connect chain (ZStack's KVMHost connect flows), declared as ``hostConnect``.

It runs over :class:`HostConnectData`.  Nothing here undoes a host row: adding a host
deletes it when the chain fails, reconnecting marks it Disconnected (the host plugin
does both around the chain).

The chain is declared with its data class, but no run of it is ever in the flow
journal: every step (these, and those the L2, L3 and VM plugins insert) is an
idempotent NoRollbackFlow that makes the host agree with the database, and the engine
writes a run down only before a step with something to undo.  Rolling back an
interrupted connect would mean nothing: at every start the node reconnects every host
(``HostPlugin._revive``, before the journal is taken up), which runs this chain again
from the start and settles the host Connected or Disconnected.  A flow inserted here
must be of the same kind; one with a rollback would be rolled back at the next start
*after* that reconnect redid it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from contracts import kvm
from core.host.capacity import cpu_ratio, refresh_capacity, reserved_capacity
from core.host.extension_points import HostConnectContext, KVMHostConnectExtensionPoint
from core.host.models import HostVO
from core.kernel.errors import not_found, operr
from core.kernel.flow import NoRollbackFlow
from core.kernel.flow_data import FlowData
from core.kernel.rest import AgentClient
from core.kvm import system_tags as kvm_tags
from core.tag.plugin import TagPlugin

CHAIN = "hostConnect"
HVM_FLAGS = ("vmx", "svm")


class HostConnectData(FlowData):
    """What the host connect flows share."""

    host_uuid: str
    new_host: bool
    """True while the host is being added (not a reconnect)."""
    hypervisor_type: str
    """The host row's (the agent's facts must agree)."""
    facts: kvm.HostFactsRsp | None = None
    """What the agent answered to /host/connect (ConnectAgentFlow)."""

    def host_facts(self) -> kvm.HostFactsRsp:
        """The agent's facts, for a flow after ConnectAgentFlow."""
        if self.facts is None:
            raise RuntimeError("the host's agent has not answered /host/connect yet")
        return self.facts

    async def agent(self) -> AgentClient:
        """The client of the host's agent (the host plugin's: not data)."""
        from core.host.plugin import HostPlugin

        return await self.node.plugin(HostPlugin).agent_of(self.host_uuid)


class ConnectAgentFlow(NoRollbackFlow):
    """Send /host/connect: the agent learns its host uuid and our report URL."""

    async def run(self, data: HostConnectData) -> None:  # type: ignore[override]
        node = data.node
        agent = await data.agent()
        data.facts = await agent.send(
            kvm.ConnectCmd(host_uuid=data.host_uuid, report_url=node.rest.base_url),
            timeout=120,  # the first connect runs the agent's acceleration probe
        )


class HostConnectExtensionPointFlow(NoRollbackFlow):
    """Call every KVMHostConnectExtensionPoint; one that raises stops the connect."""

    def skip(self, data: HostConnectData) -> bool:  # type: ignore[override]
        return data.host_facts().hypervisor_type != "KVM"

    async def run(self, data: HostConnectData) -> None:  # type: ignore[override]
        node, host_uuid = data.node, data.host_uuid
        host = await node.db.run(lambda s: _host(s, host_uuid).to_inventory())
        context = HostConnectContext(
            host_uuid,
            host["name"],
            host["clusterUuid"],
            host["hypervisorType"],
            data.host_facts(),
            await data.agent(),
            data.new_host,
        )
        # extensions() takes type[T]: mypy refuses an abstract class there (core.kernel.extensions)
        for ext in node.registry.extensions(KVMHostConnectExtensionPoint):
            await ext.kvm_host_connected(context)


class RecordHostFactsFlow(NoRollbackFlow):
    """Write the host's facts as inherent system tags and columns."""

    async def run(self, data: HostConnectData) -> None:  # type: ignore[override]
        node, facts = data.node, data.host_facts()
        tags = node.plugin(TagPlugin)
        if facts.hypervisor_type != data.hypervisor_type:
            raise operr(
                f"the agent is a {facts.hypervisor_type} agent, but the host is "
                f"a {data.hypervisor_type} host"
            )

        def record(session: Session) -> None:
            host = _host(session, data.host_uuid)
            host.acceleration = facts.acceleration
            for definition, value in (
                (kvm_tags.QEMU_IMG_VERSION, facts.qemu_img_version),
                (kvm_tags.LIBVIRT_VERSION, facts.libvirt_version),
            ):
                if value:
                    tags.create_system_tag(
                        session,
                        HostVO.resource_type,
                        host.uuid,
                        definition.instantiate(version=value),
                        inherent=True,
                        recreate=True,
                    )
            flags = [f for f in facts.cpu_flags if f in HVM_FLAGS]
            tags.delete_system_tags(session, host.uuid, kvm_tags.HVM_CPU_FLAG)
            for flag in flags:
                tags.create_system_tag(
                    session,
                    HostVO.resource_type,
                    host.uuid,
                    kvm_tags.HVM_CPU_FLAG.instantiate(flag=flag),
                    inherent=True,
                )

        await node.db.run(record)


class UpdateHostCapacityFlow(NoRollbackFlow):
    """Totals from the facts less reserved capacity; availability from the VMs."""

    async def run(self, data: HostConnectData) -> None:  # type: ignore[override]
        node, facts = data.node, data.host_facts()
        ratio = cpu_ratio(node)
        reserved = reserved_capacity(node, data.hypervisor_type)

        def update(session: Session) -> None:
            refresh_capacity(
                session,
                _host(session, data.host_uuid),
                facts.cpu_num,
                facts.cpu_sockets,
                facts.total_memory,
                ratio,
                reserved,
            )

        await node.db.run(update)


DEFAULT_FLOWS = [
    f"{__name__}.{cls.__name__}"
    for cls in (
        ConnectAgentFlow,
        HostConnectExtensionPointFlow,
        RecordHostFactsFlow,
        UpdateHostCapacityFlow,
    )
]


def _host(session: Session, uuid: str) -> HostVO:
    host = session.get(HostVO, uuid)
    if host is None:
        raise not_found("HostVO", uuid)
    return host

"""Virtual-router chains: create, reconnect and destroy an appliance, and the post-create
flows (declared in config.toml as ``virtualRouterPostCreate``, ZStack's
VirtualRouterManager postCreateFlows), run after the appliance is made and again at
every reconnect, nested over the same data.

They run over :class:`RouterData` and are durable (see :mod:`core.kernel.flow_journal`);
the appliance's state changes are steps of the chains, so a crash never leaves a router
``Creating`` or ``Connecting``:

* ``createVirtualRouter`` starts from the row the caller made (``Creating``): its first
  flow's rollback forgets the row, its last flow makes it ``Running``/``Connected``;
  interrupted, it is rolled back (NICs, namespace and agent, row).
* ``reconnectVirtualRouter`` sets ``Connecting`` first (rolled back: ``Disconnected``)
  and ``Connected`` last; its steps make what is missing and replay the rest, so an
  interrupted run is run on (resumable).
* ``destroyVirtualRouter`` sets ``Destroying`` (rolled back: the old state), destroys on
  the host, releases the NICs and forgets the row last; interrupted, it is run on.

The agent's client is not data (it cannot be written down): it lives on the data as a
private attribute, opened by VirtualRouterDeployAgentFlow (or again when missing), and
handed to the plugin by the last flow.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr
from sqlalchemy.orm import Session

from contracts import virtual_router as vr
from contracts.events import ApplianceVmStatusChanged
from core.appliance.flows import (
    ApplianceData,
    ApplianceVmAllocateNicFlow,
    ApplianceVmCreateOnHostFlow,
    ApplianceVmDestroyOnHostFlow,
    ApplianceVmEnsureOnHostFlow,
    ApplianceVmReleaseNicFlow,
    ApplianceVmRowFlow,
    forget_appliance,
    nics_by_role,
)
from core.kernel.errors import OperationError
from core.kernel.flow import Flow, NoRollbackFlow
from core.kernel.rest import AgentClient
from core.network.service.plugin import services_of
from core.virtual_router.api import VIRTUAL_ROUTER
from core.virtual_router.client import open_client
from core.virtual_router.sync import GUEST, all_dhcp_entries, dns_infos, snats

if TYPE_CHECKING:
    from core.virtual_router.plugin import VirtualRouterPlugin

CREATE_CHAIN = "createVirtualRouter"
POST_CREATE_CHAIN = "virtualRouterPostCreate"
RECONNECT_CHAIN = "reconnectVirtualRouter"
DESTROY_CHAIN = "destroyVirtualRouter"
AGENT_WAIT = 20.0
"""Seconds a new or restarted agent has to answer its first ping."""


class RouterData(ApplianceData):
    """What the virtual-router chains share (the appliance flows' data, and more)."""

    guest_l3: str
    """The uuid of the L3 network the router serves."""

    _client: AgentClient | None = PrivateAttr(default=None)

    def client(self) -> AgentClient:
        """The client of the router's agent (opened from the row's socket if none is)."""
        if self._client is None:
            self._client = open_client(self.node, self.appliance)
        return self._client

    async def close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


def _plugin(data: RouterData) -> VirtualRouterPlugin:
    from core.virtual_router.plugin import VirtualRouterPlugin

    return data.node.plugin(VirtualRouterPlugin)


class VirtualRouterPostCreateFlow(Flow):
    """Runs the post-create chain (what it sets up goes with the appliance itself); the
    rollback closes the agent's client the chain opened."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        # FlowChain.run is typed for dict data; it runs over any chain data alike.
        await data.node.chain(POST_CREATE_CHAIN).run(data)  # type: ignore[arg-type]

    async def rollback(self, data: RouterData) -> None:  # type: ignore[override]
        await data.close_client()


class VirtualRouterDeployAgentFlow(NoRollbackFlow):
    """The agent the host agent started answers, and /init gives it its signature (the
    appliance's uuid), which every ping returns until the agent restarts."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        await data.close_client()  # a client of an agent an earlier run saw
        client = data.client()
        deadline = asyncio.get_running_loop().time() + AGENT_WAIT
        while True:
            try:
                await client.send(vr.PingCmd(), timeout=5)
                break
            except OperationError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await client.send(vr.InitCmd(uuid=data.appliance["uuid"]))


async def _state(data: RouterData) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    uuid, l3 = data.appliance["uuid"], data.guest_l3

    def read(session: Session) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        return services_of(session, l3), nics_by_role(session, uuid)

    return await data.node.db.run(read)


def _ours(services: dict[str, str], service_type: str) -> bool:
    return services.get(service_type) == VIRTUAL_ROUTER


class VirtualRouterSyncDnsOnStartFlow(NoRollbackFlow):
    """The upstream DNS servers of the guest network (none without the DNS service)."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        services, nics = await _state(data)
        dns: list[vr.DnsInfoTO] = []
        if _ours(services, "DNS"):
            dns = await data.node.db.run(lambda s: dns_infos(s, data.guest_l3, nics[GUEST]))
        await data.client().send(vr.SetDnsCmd(dns=dns))


class VirtualRouterSyncDHCPOnStartFlow(NoRollbackFlow):
    """Every DHCP entry of the guest network, in one rebuild."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        services, nics = await _state(data)
        entries: list[vr.DhcpEntryTO] = []
        if _ours(services, "DHCP"):
            entries = await data.node.db.run(
                lambda s: all_dhcp_entries(s, data.guest_l3, nics[GUEST])
            )
        await data.client().send(vr.AddDhcpCmd(rebuild=True, dhcp_entry_list=entries), timeout=60)


class VirtualRouterSyncSNATOnStartFlow(NoRollbackFlow):
    """Source NAT of the guest network through the public NIC, replacing the table."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        services, nics = await _state(data)
        await data.client().send(
            vr.SyncSnatCmd(snats=snats(nics) if _ours(services, "SNAT") else [])
        )


class VirtualRouterConnectingFlow(Flow):
    """Reconnect, first: the router is ``Connecting``; the rollback (the chain failed)
    makes it ``Disconnected``, for the ping tracker to try again."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        changed = await _plugin(data).update_appliance(data.appliance["uuid"], status="Connecting")
        assert changed is not None
        data.appliance = changed

    async def rollback(self, data: RouterData) -> None:  # type: ignore[override]
        await data.close_client()
        changed = await _plugin(data).update_appliance(
            data.appliance["uuid"], missing_ok=True, status="Disconnected"
        )
        if changed is not None:
            data.appliance = changed


class VirtualRouterConnectedFlow(Flow):
    """Create and reconnect, last: the router is ``Running`` and ``Connected``, and the
    plugin keeps the agent's client.  The rollback (only a flow inserted after this one
    can fail) takes the client back from the plugin."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        plugin = _plugin(data)
        client = data.client()
        changed = await plugin.update_appliance(
            data.appliance["uuid"], state="Running", status="Connected"
        )
        assert changed is not None
        data.appliance = changed
        await plugin.keep_client(changed["uuid"], client)

    async def rollback(self, data: RouterData) -> None:  # type: ignore[override]
        await _plugin(data).drop_client(data.appliance["uuid"])


class VirtualRouterDestroyingFlow(Flow):
    """Destroy, first: the router is ``Destroying`` (the ping tracker leaves it alone); a
    failed destroy puts back the state it had."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        await _plugin(data).update_appliance(data.appliance["uuid"], state="Destroying")

    async def rollback(self, data: RouterData) -> None:  # type: ignore[override]
        await _plugin(data).update_appliance(
            data.appliance["uuid"], missing_ok=True, state=data.appliance["state"]
        )


class VirtualRouterForgetFlow(NoRollbackFlow):
    """Destroy, last: the plugin closes the agent's client, the row and tags go, and
    ``/appliance-vm/status/change`` says ``Destroyed``."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        uuid = data.appliance["uuid"]
        await _plugin(data).drop_client(uuid)
        if await data.node.db.run(lambda s: forget_appliance(s, uuid)):
            event = ApplianceVmStatusChanged(
                appliance_vm_uuid=uuid, old_status=data.appliance["status"], new_status="Destroyed"
            )
            data.node.events.publish(event.PATH, event.to_json())


def _paths(*classes: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__name__}" for cls in classes]


CHAINS: dict[str, list[str]] = {
    CREATE_CHAIN: _paths(
        ApplianceVmRowFlow,
        ApplianceVmAllocateNicFlow,
        ApplianceVmCreateOnHostFlow,
        VirtualRouterPostCreateFlow,
        VirtualRouterConnectedFlow,
    ),
    POST_CREATE_CHAIN: _paths(
        VirtualRouterDeployAgentFlow,
        VirtualRouterSyncDnsOnStartFlow,
        VirtualRouterSyncDHCPOnStartFlow,
        VirtualRouterSyncSNATOnStartFlow,
    ),
    RECONNECT_CHAIN: _paths(
        VirtualRouterConnectingFlow,
        ApplianceVmEnsureOnHostFlow,
        VirtualRouterPostCreateFlow,
        VirtualRouterConnectedFlow,
    ),
    DESTROY_CHAIN: _paths(
        VirtualRouterDestroyingFlow,
        ApplianceVmDestroyOnHostFlow,
        ApplianceVmReleaseNicFlow,
        VirtualRouterForgetFlow,
    ),
}
RESUMABLE = frozenset({RECONNECT_CHAIN, DESTROY_CHAIN})
"""Chains run on, not rolled back, after a crash (see the module's docstring)."""

"""Virtual-router flows: the post-create flows (declared in config.toml as
``virtualRouterPostCreate``, ZStack's VirtualRouterManager postCreateFlows), run after
the appliance is made and again at every reconnect, and the chains around them.

Data keys (besides the appliance flows' own): ``guest_l3`` (the served L3 network's
uuid), ``client`` (the agent's client, from VirtualRouterDeployAgentFlow on).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.orm import Session

from core.appliance.flows import (
    ApplianceVmAllocateNicFlow,
    ApplianceVmCreateOnHostFlow,
    ApplianceVmDestroyOnHostFlow,
    ApplianceVmEnsureOnHostFlow,
    ApplianceVmReleaseNicFlow,
    nics_by_role,
)
from core.kernel.errors import OperationError
from core.kernel.flow import NoRollbackFlow
from core.network.service.plugin import services_of
from core.virtual_router.api import VIRTUAL_ROUTER
from core.virtual_router.client import open_client
from core.virtual_router.sync import (
    GUEST,
    all_dhcp_entries,
    dns_body,
    snat_body,
)
from virtual_router import protocol as vr

CREATE_CHAIN = "createVirtualRouter"
POST_CREATE_CHAIN = "virtualRouterPostCreate"
RECONNECT_CHAIN = "reconnectVirtualRouter"
DESTROY_CHAIN = "destroyVirtualRouter"
AGENT_WAIT = 20.0
"""Seconds a new or restarted agent has to answer its first ping."""


class VirtualRouterPostCreateFlow(NoRollbackFlow):
    """Runs the post-create chain (what it sets up goes with the appliance itself)."""

    async def run(self, data: dict[str, Any]) -> None:
        await data["node"].chain(POST_CREATE_CHAIN).run(data)


class VirtualRouterDeployAgentFlow(NoRollbackFlow):
    """The agent the host agent started answers, and /init gives it its signature (the
    appliance's uuid), which every ping returns until the agent restarts."""

    async def run(self, data: dict[str, Any]) -> None:
        client = data["client"] = open_client(data["node"], data["appliance"])
        deadline = asyncio.get_running_loop().time() + AGENT_WAIT
        while True:
            try:
                await client.call(vr.PING, {}, timeout=5)
                break
            except OperationError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await client.call(vr.INIT, {"uuid": data["appliance"]["uuid"]})


async def _state(data: dict[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    uuid, l3 = data["appliance"]["uuid"], data["guest_l3"]

    def read(session: Session) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        return services_of(session, l3), nics_by_role(session, uuid)

    return await data["node"].db.run(read)


def _ours(services: dict[str, str], service_type: str) -> bool:
    return services.get(service_type) == VIRTUAL_ROUTER


class VirtualRouterSyncDnsOnStartFlow(NoRollbackFlow):
    """The upstream DNS servers of the guest network (none without the DNS service)."""

    async def run(self, data: dict[str, Any]) -> None:
        services, nics = await _state(data)
        body: dict[str, Any] = {"dns": []}
        if _ours(services, "DNS"):
            body = await data["node"].db.run(lambda s: dns_body(s, data["guest_l3"], nics[GUEST]))
        await data["client"].call(vr.SET_DNS, body)


class VirtualRouterSyncDHCPOnStartFlow(NoRollbackFlow):
    """Every DHCP entry of the guest network, in one rebuild."""

    async def run(self, data: dict[str, Any]) -> None:
        services, nics = await _state(data)
        entries: list[dict[str, Any]] = []
        if _ours(services, "DHCP"):
            entries = await data["node"].db.run(
                lambda s: all_dhcp_entries(s, data["guest_l3"], nics[GUEST])
            )
        await data["client"].call(
            vr.ADD_DHCP, {"rebuild": True, "dhcpEntryList": entries}, timeout=60
        )


class VirtualRouterSyncSNATOnStartFlow(NoRollbackFlow):
    """Source NAT of the guest network through the public NIC, replacing the table."""

    async def run(self, data: dict[str, Any]) -> None:
        services, nics = await _state(data)
        body = snat_body(nics) if _ours(services, "SNAT") else {"snats": []}
        await data["client"].call(vr.SYNC_SNAT, body)


def _paths(*classes: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__name__}" for cls in classes]


CHAINS: dict[str, list[str]] = {
    CREATE_CHAIN: _paths(
        ApplianceVmAllocateNicFlow, ApplianceVmCreateOnHostFlow, VirtualRouterPostCreateFlow
    ),
    POST_CREATE_CHAIN: _paths(
        VirtualRouterDeployAgentFlow,
        VirtualRouterSyncDnsOnStartFlow,
        VirtualRouterSyncDHCPOnStartFlow,
        VirtualRouterSyncSNATOnStartFlow,
    ),
    RECONNECT_CHAIN: _paths(ApplianceVmEnsureOnHostFlow, VirtualRouterPostCreateFlow),
    DESTROY_CHAIN: _paths(ApplianceVmDestroyOnHostFlow, ApplianceVmReleaseNicFlow),
}

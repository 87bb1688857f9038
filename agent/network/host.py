"""The real host's network part: bridges, host NAT, routes and appliance namespaces.

The work is blocking (netlink through pyroute2, ``nft``, process start and
reaping), so each call runs in a thread; agent.commands serialises the calls
that could race (one lock for bridges and host NAT, one per appliance).
Unexpected errors (netlink's, the OS's) are answered as AgentErrors with a
readable message.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pyroute2 import IPRoute

from agent.network import bridges, host_nat, links
from agent.network.appliance import ApplianceManager
from agent.network.base import (
    AgentCommand,
    ApplianceInfo,
    ApplianceSpec,
    ApplianceStatus,
    HostRoute,
    NetworkDriver,
)
from agentkit.errors import AgentError

T = TypeVar("T")


class HostNetwork(NetworkDriver):
    def __init__(self, data_dir: Path | None = None, start_timeout: float = 20.0) -> None:
        super().__init__(data_dir)
        self.appliances = ApplianceManager(
            self.appliances_dir, start_timeout, pluggers=self.port_pluggers
        )

    async def _run(self, what: str, fn: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.to_thread(functools.partial(fn, *args))
        except AgentError:
            raise
        except Exception as exc:
            raise AgentError(f"{what}: {links.message(exc)}") from exc

    # -- bridges -----------------------------------------------------------------
    async def bridge_create(
        self, bridge_name: str, physical_interface: str = "", allow_default_route: bool = False
    ) -> None:
        await self._run(
            f"cannot create bridge {bridge_name}",
            bridges.create_bridge,
            bridge_name,
            physical_interface,
            allow_default_route,
            self.lab,
        )

    async def bridge_delete(self, bridge_name: str) -> None:
        await self._run(f"cannot delete bridge {bridge_name}", bridges.delete_bridge, bridge_name)

    async def bridge_check(self, bridge_names: Sequence[str]) -> list[str]:
        return await self._run("cannot check bridges", bridges.missing_bridges, list(bridge_names))

    # -- host NAT ----------------------------------------------------------------
    async def hostnat_set(self, bridge_name: str, gateway: ipaddress.IPv4Interface) -> None:
        await self._run(
            f"cannot set host NAT for {gateway} on {bridge_name}",
            host_nat.set_entry,
            self.lab,
            bridge_name,
            gateway,
        )

    async def hostnat_remove(self, bridge_name: str, gateway: ipaddress.IPv4Interface) -> None:
        await self._run(
            f"cannot remove host NAT for {gateway} on {bridge_name}",
            host_nat.remove_entry,
            self.lab,
            bridge_name,
            gateway,
        )

    # -- routes --------------------------------------------------------------------
    async def host_routes(self) -> list[HostRoute]:
        return await self._run("cannot list the host's routes", read_routes)

    # -- appliances --------------------------------------------------------------
    def _manager(self) -> ApplianceManager:
        self.appliances.appliances_dir = self.appliances_dir  # the data dir may be set late
        self.appliances.lab = self.lab  # and the lab
        return self.appliances

    async def appliance_create(
        self, spec: ApplianceSpec, agent_command: AgentCommand | None = None
    ) -> ApplianceInfo:
        return await self._run(
            f"cannot create appliance {spec.appliance_uuid}",
            self._manager().create,
            spec,
            agent_command,
        )

    async def appliance_destroy(self, appliance_uuid: str) -> None:
        await self._run(
            f"cannot destroy appliance {appliance_uuid}", self._manager().destroy, appliance_uuid
        )

    async def appliance_check(self, appliance_uuid: str) -> ApplianceStatus:
        return await self._run(
            f"cannot check appliance {appliance_uuid}", self._manager().check, appliance_uuid
        )


def read_routes() -> list[HostRoute]:
    """The host's routes (blocking), each with its interface's name."""
    with IPRoute() as ipr:
        names = {link["index"]: links.name_of(link) for link in ipr.link("dump")}
        return [
            HostRoute(str(route.network), names.get(route.oif, ""), route.gateway)
            for route in links.ipv4_routes(ipr)
        ]

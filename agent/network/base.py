"""What a backend's network part offers the agent's commands, and the values it passes.

Two implementations: :class:`agent.network.host.HostNetwork` changes the real host
(bridges, nftables, namespaces); :class:`agent.network.simulated.SimulatedNetwork`
keeps the same state in memory and changes nothing on the host except starting
the virtual-router agent (without a namespace, ``--simulate``).  Both get their
arguments already checked by agent.commands and raise
:class:`agentkit.errors.AgentError` with a message naming what is in the way.
"""

from __future__ import annotations

import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agent.extension_points import PortPlugger, PortPluggers, no_plugger
from agent.lab import default_lab_dir
from agentkit.errors import AgentError
from contracts.names import lab_id

DEFAULT_DATA_DIR: Final = Path("/var/lib/zstack-lite/agent")
"""Where appliance directories go until the agent is told its data dir (agent.main's default)."""
APPLIANCES_DIR: Final = "appliances"
ROLES: Final = ("guest", "public")


@dataclass(frozen=True)
class ApplianceNic:
    bridge_name: str
    mac: str
    ip: str
    prefix_length: int
    role: str = "guest"
    virtual_port_type: str = ""
    """"" enslaves the veth's host end to the Linux bridge ``bridge_name``; another type
    (contracts.kvm.VIRTUAL_PORT_TYPES) has the :class:`~agent.extension_points.PortPlugger`
    registered for it plug the veth into ``bridge_name``."""
    vlan_id: int | None = None
    """The access port's VLAN tag (only with a virtual port type), or None."""

    @property
    def interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(f"{self.ip}/{self.prefix_length}")


@dataclass(frozen=True)
class ApplianceSpec:
    appliance_uuid: str
    nics: tuple[ApplianceNic, ...]
    default_gateway: str = ""


def check_pluggable(spec: ApplianceSpec, pluggers: PortPluggers) -> None:
    """Refuse, before anything is made, an appliance with a NIC whose virtual port type
    no agent plugin plugs."""
    for i, nic in enumerate(spec.nics):
        if nic.virtual_port_type and nic.virtual_port_type not in pluggers:
            raise AgentError(
                f"cannot create appliance {spec.appliance_uuid}: NIC {i} ({nic.mac}): "
                f"{no_plugger(nic.virtual_port_type)}"
            )


@dataclass(frozen=True)
class ApplianceInfo:
    namespace: str
    socket_path: str
    token_file: str
    agent_pid: int


@dataclass(frozen=True)
class ApplianceStatus:
    namespace: bool
    agent_running: bool
    missing_nics: tuple[str, ...]


@dataclass(frozen=True)
class HostRoute:
    """An IPv4 route of the host's main table (never a default route)."""

    destination: str
    """``10.1.0.0/24``."""
    interface: str
    """The outgoing interface's name; "" for none (a blackhole route)."""
    gateway: str = ""
    """The next hop; "" for none (an on-link route)."""


AgentCommand = Sequence[str]
"""The argv that starts the virtual-router agent, before its ``--socket``,
``--data-dir`` and ``--token-file`` options (default: ``python -m virtual_router.main``)."""


class NetworkDriver(ABC):
    """L2 bridges, host NAT for the default public network, the host's routes, and appliance
    namespaces."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
        self.lab = lab_id(default_lab_dir(self.data_dir))
        """The identity of the lab this agent serves (:mod:`agent.lab`), set by the agent."""
        self.port_pluggers: dict[str, PortPlugger] = {}
        """Virtual port type -> its plugger, filled by agent plugins at their start
        (``HostAgentContext.port_pluggers`` is this dict): how an appliance NIC with a
        virtual port type is plugged, checked and unplugged."""

    @property
    def appliances_dir(self) -> Path:
        return self.data_dir / APPLIANCES_DIR

    def appliance_dir(self, appliance_uuid: str) -> Path:
        return self.appliances_dir / appliance_uuid

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Called once when the backend closes."""

    # -- bridges -----------------------------------------------------------------
    @abstractmethod
    async def bridge_create(
        self, bridge_name: str, physical_interface: str = "", allow_default_route: bool = False
    ) -> None:
        """Make the bridge (up) if missing, enslaving ``physical_interface`` if given."""

    @abstractmethod
    async def bridge_delete(self, bridge_name: str) -> None:
        """Release its physical interface and delete the bridge; missing is fine."""

    @abstractmethod
    async def bridge_check(self, bridge_names: Sequence[str]) -> list[str]:
        """The names among ``bridge_names`` that are not bridges on this host."""

    # -- host NAT ----------------------------------------------------------------
    @abstractmethod
    async def hostnat_set(self, bridge_name: str, gateway: ipaddress.IPv4Interface) -> None: ...

    @abstractmethod
    async def hostnat_remove(self, bridge_name: str, gateway: ipaddress.IPv4Interface) -> None: ...

    # -- routes --------------------------------------------------------------------
    @abstractmethod
    async def host_routes(self) -> list[HostRoute]:
        """The main table's IPv4 routes but the default ones, one per next hop."""

    # -- appliances --------------------------------------------------------------
    @abstractmethod
    async def appliance_create(
        self, spec: ApplianceSpec, agent_command: AgentCommand | None = None
    ) -> ApplianceInfo:
        """Make (or repair) the appliance and start its agent; roll back on failure."""

    @abstractmethod
    async def appliance_destroy(self, appliance_uuid: str) -> None: ...

    @abstractmethod
    async def appliance_check(self, appliance_uuid: str) -> ApplianceStatus: ...

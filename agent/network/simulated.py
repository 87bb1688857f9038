"""The simulator's network part: the real commands' checks over in-memory state.

Nothing on the host changes, except that an appliance's virtual-router agent really
runs (without a namespace, with ``--simulate``, in the same directory layout as on a
real host: ``<data dir>/appliances/<uuid>/agent.sock``, ``agent.token``…), so the
core talks to it exactly as it would on a KVM host.  A simulated host's routes are
the gateways of its host NAT entries; its "namespace" is the appliance directory.
An appliance NIC with a virtual port type is handed to the registered
:class:`~agent.extension_points.PortPlugger` as on a real host (plug at create with the
veth name a real host would use, unplug at destroy, ``plugged`` at check): a test's
plugger sees the same calls.
The agents a simulator started end when it closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from agent.extension_points import PortPlugger, unplug_everywhere
from agent.network.base import (
    AgentCommand,
    ApplianceInfo,
    ApplianceNic,
    ApplianceSpec,
    ApplianceStatus,
    HostRoute,
    NetworkDriver,
    check_pluggable,
)
from agent.network.host_nat import HostNatEntry
from agent.network.processes import (
    AppliancePaths,
    ProcessTable,
    default_agent_command,
    make_dir,
    recorded_agent,
    terminate,
    wait_for_socket,
)
from agentkit.auth import create_token
from agentkit.errors import AgentError
from contracts.names import namespace_name, veth_name

log = logging.getLogger(__name__)

SIMULATE_FLAG = "--simulate"


class SimulatedNetwork(NetworkDriver):
    def __init__(self, data_dir: Path | None = None, start_timeout: float = 20.0) -> None:
        super().__init__(data_dir)
        self.start_timeout = start_timeout
        self.bridges: dict[str, str] = {}
        """bridge name -> its physical interface ("" for none)."""
        self.host_nat: set[HostNatEntry] = set()
        self.appliances: dict[str, ApplianceSpec] = {}
        self.processes = ProcessTable()
        self._started: set[int] = set()

    async def close(self) -> None:
        if self._started:
            await asyncio.to_thread(terminate, list(self._started), self.processes)
            self._started.clear()

    # -- bridges -----------------------------------------------------------------
    async def bridge_create(
        self, bridge_name: str, physical_interface: str = "", allow_default_route: bool = False
    ) -> None:
        if physical_interface:
            if physical_interface in self.bridges:
                raise AgentError(
                    f"physical interface {physical_interface} is itself a bridge; "
                    "it cannot be a port"
                )
            for other, port in self.bridges.items():
                if port == physical_interface and other != bridge_name:
                    raise AgentError(
                        f"physical interface {physical_interface} is already enslaved to {other}"
                    )
        if bridge_name not in self.bridges or physical_interface:
            self.bridges[bridge_name] = physical_interface

    async def bridge_delete(self, bridge_name: str) -> None:
        self.bridges.pop(bridge_name, None)

    async def bridge_check(self, bridge_names: Sequence[str]) -> list[str]:
        return [name for name in bridge_names if name not in self.bridges]

    # -- host NAT ----------------------------------------------------------------
    async def hostnat_set(self, bridge_name: str, gateway: ipaddress.IPv4Interface) -> None:
        self._require_bridge(bridge_name)
        for other in self.host_nat:
            if other.bridge_name != bridge_name and other.gateway.network.overlaps(gateway.network):
                raise AgentError(
                    f"{gateway.network} overlaps the host route {other.gateway.network} "
                    f"via {other.bridge_name}"
                )
        self.host_nat.add(HostNatEntry(bridge_name, gateway))

    async def hostnat_remove(self, bridge_name: str, gateway: ipaddress.IPv4Interface) -> None:
        self.host_nat.discard(HostNatEntry(bridge_name, gateway))

    def _require_bridge(self, bridge_name: str) -> None:
        if bridge_name not in self.bridges:
            raise AgentError(f"bridge {bridge_name} does not exist on this host")

    # -- routes --------------------------------------------------------------------
    async def host_routes(self) -> list[HostRoute]:
        """The link routes of the host NAT gateways on existing bridges (the only addresses a
        simulated host has)."""
        links = sorted(
            {
                (e.gateway.network, e.bridge_name)
                for e in self.host_nat
                if e.bridge_name in self.bridges
            }
        )
        return [HostRoute(str(network), bridge) for network, bridge in links]

    # -- appliances --------------------------------------------------------------
    def paths(self, appliance_uuid: str) -> AppliancePaths:
        return AppliancePaths(self.appliance_dir(appliance_uuid))

    async def appliance_create(
        self, spec: ApplianceSpec, agent_command: AgentCommand | None = None
    ) -> ApplianceInfo:
        return await asyncio.to_thread(self._create, spec, agent_command)

    def _create(self, spec: ApplianceSpec, agent_command: AgentCommand | None) -> ApplianceInfo:
        uuid = spec.appliance_uuid
        paths = self.paths(uuid)
        paths.check_socket_path()
        check_pluggable(spec, self.port_pluggers)
        new = uuid not in self.appliances
        made_dir = False
        started: int | None = None
        plugged: list[tuple[PortPlugger, str]] = []
        step = "plug the NICs"
        try:
            for i, nic in enumerate(spec.nics):
                step = f"plug NIC {i} ({nic.mac}) into bridge {nic.bridge_name}"
                if not nic.virtual_port_type:
                    self._require_bridge(nic.bridge_name)
            step = "make the directory"
            made_dir = make_dir(paths.dir)
            step = "write the appliance spec"
            paths.spec.write_text(json.dumps(asdict(spec), indent=2) + "\n")
            step = "write the token file"
            create_token(paths.token)
            for i, nic in enumerate(spec.nics):
                if nic.virtual_port_type:
                    step = f"plug NIC {i} ({nic.mac}) into bridge {nic.bridge_name}"
                    plugger = self.port_pluggers[nic.virtual_port_type]
                    plugger.plug(nic.bridge_name, veth_name(uuid, i), nic.vlan_id)
                    plugged.append((plugger, veth_name(uuid, i)))
            step = "start the virtual-router agent"
            pid = recorded_agent(paths)
            if pid is None:
                command = list(agent_command) if agent_command else default_agent_command()
                proc = self.processes.start([*paths.agent_argv(command), SIMULATE_FLAG], paths)
                pid = started = proc.pid
                self._started.add(pid)
                log.info("started the simulated virtual-router agent of %s (pid %d)", uuid, pid)
            wait_for_socket(self.processes, pid, paths, self.start_timeout)
        except Exception as exc:
            if started is not None:
                self._started.discard(started)
                terminate([started], self.processes)
            if new:  # the ports of an appliance that was there stay as they were
                for plugger, port in reversed(plugged):
                    try:
                        plugger.unplug(port)
                    except Exception:
                        log.exception("rolling back the plug of %s failed", port)
            if made_dir:
                paths.remove()
            raise AgentError(
                f"cannot create appliance {uuid}: step '{step}' failed: {exc}; "
                "rolled back what this call made"
            ) from None
        self.appliances[uuid] = spec
        return ApplianceInfo(
            namespace=namespace_name(uuid),
            socket_path=str(paths.socket),
            token_file=str(paths.token),
            agent_pid=pid,
        )

    async def appliance_destroy(self, appliance_uuid: str) -> None:
        await asyncio.to_thread(self._destroy, appliance_uuid)

    def _destroy(self, appliance_uuid: str) -> None:
        paths = self.paths(appliance_uuid)
        pid = recorded_agent(paths)
        if pid is not None:
            terminate([pid], self.processes)
            self._started.discard(pid)
        spec = self.appliances.get(appliance_uuid)
        if spec is not None:
            ports = [veth_name(appliance_uuid, i) for i in range(len(spec.nics))]
            unplug_everywhere(self.port_pluggers, ports)
        paths.remove()
        self.appliances.pop(appliance_uuid, None)

    async def appliance_check(self, appliance_uuid: str) -> ApplianceStatus:
        return await asyncio.to_thread(self._check, appliance_uuid)  # a plugger blocks

    def _check(self, appliance_uuid: str) -> ApplianceStatus:
        self.processes.reap()
        paths = self.paths(appliance_uuid)
        spec = self.appliances.get(appliance_uuid)
        nics = spec.nics if spec is not None else ()
        return ApplianceStatus(
            namespace=paths.spec.exists(),
            agent_running=recorded_agent(paths) is not None,
            missing_nics=tuple(
                nic.mac for i, nic in enumerate(nics) if not self._nic_ok(appliance_uuid, i, nic)
            ),
        )

    def _nic_ok(self, appliance_uuid: str, i: int, nic: ApplianceNic) -> bool:
        if not nic.virtual_port_type:
            return nic.bridge_name in self.bridges
        plugger = self.port_pluggers.get(nic.virtual_port_type)
        port = veth_name(appliance_uuid, i)
        return plugger is not None and plugger.plugged(nic.bridge_name, port, nic.vlan_id)

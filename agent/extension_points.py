"""Extension points of the host agent: what an agent plugin (agentkit.plugins) can add to
the host agent's work without a change to it.

:class:`PortPlugger` plugs an appliance's veth (its host end) into a bridge that is not
a Linux bridge, e.g. an Open vSwitch bridge through OVSDB.  An agent plugin registers one
per virtual port type (:data:`contracts.kvm.VIRTUAL_PORT_TYPES`, libvirt's
``<virtualport type>``) in its ``start()``::

    async def start(self) -> None:
        self.ctx.port_pluggers["openvswitch"] = OvsPlugger()

A VM's NIC needs none: libvirt plugs a tap of a ``<virtualport>`` itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from agentkit.errors import AgentError


class PortPlugger(Protocol):
    """Plugs ports into the bridges of one virtual port type.

    The methods block (OVSDB, a command…): they run in the appliance driver's thread,
    never on the event loop.  Each is idempotent; a failure raises (an
    :class:`~agentkit.errors.AgentError` with a readable message, or any exception,
    which the driver reports with the step that failed)."""

    @property
    def virtual_port_type(self) -> str:
        """The type this plugger serves, e.g. ``openvswitch``."""
        ...

    def plug(self, bridge: str, port: str, vlan_id: int | None) -> None:
        """Make the existing link ``port`` a port of ``bridge``, an access port of
        ``vlan_id`` (None: untagged): add it, or fix its bridge or tag."""
        ...

    def unplug(self, port: str) -> None:
        """Remove the port ``port`` from whatever bridge of this type has it; a port
        (or a link) that is not there is fine."""
        ...

    def plugged(self, bridge: str, port: str, vlan_id: int | None) -> bool:
        """Whether ``port`` is a port of ``bridge`` with exactly that tag."""
        ...


PortPluggers = Mapping[str, PortPlugger]
"""Virtual port type -> the plugger serving it (``HostAgentContext.port_pluggers``)."""


def no_plugger(virtual_port_type: str) -> str:
    """The refusal of a virtual port type that no agent plugin serves."""
    return f"no agent plugin plugs virtual ports of type {virtual_port_type}"


def plugger_for(pluggers: PortPluggers, virtual_port_type: str) -> PortPlugger:
    """The plugger of a (non-empty) virtual port type; raise if no plugin serves it."""
    plugger = pluggers.get(virtual_port_type)
    if plugger is None:
        raise AgentError(no_plugger(virtual_port_type))
    return plugger


def unplug_everywhere(pluggers: PortPluggers, ports: Iterable[str]) -> None:
    """Unplug each of ``ports`` with every plugger: what an appliance's destroy does with
    its veths' names, whatever type each was last plugged as (unplug is idempotent)."""
    names = sorted(set(ports))
    for plugger in pluggers.values():
        for port in names:
            plugger.unplug(port)

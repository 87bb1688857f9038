"""The appliance's interfaces, found by MAC as ZStack does (names are the host agent's business)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network
from typing import Protocol

from pyroute2 import AsyncIPRoute

from agentkit.errors import ArgumentError


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str
    addresses: tuple[IPv4Interface, ...] = ()
    """Its IPv4 addresses; empty for a simulated interface (nothing to check against)."""

    def address_in(self, network: IPv4Network) -> IPv4Interface | None:
        return next((a for a in self.addresses if a.ip in network), None)


class InterfaceTable:
    """A snapshot of the appliance's interfaces, keyed by lower-case MAC."""

    def __init__(self, by_mac: dict[str, Interface], *, simulated: bool = False) -> None:
        self.by_mac = by_mac
        self.simulated = simulated

    def find(self, mac: str, field_name: str) -> Interface:
        """The interface with ``mac``, or an error naming the field.  Simulated: every MAC
        names an interface (``sim`` + the MAC's last 3 bytes) without addresses."""
        found = self.by_mac.get(mac)
        if found is not None:
            return found
        if self.simulated:
            return Interface("sim" + mac.replace(":", "")[-6:], mac)
        raise ArgumentError(f"field {field_name!r}: no interface with MAC {mac} in the appliance")


class Interfaces(Protocol):
    async def snapshot(self) -> InterfaceTable: ...


class NetlinkInterfaces:
    """The interfaces of the namespace the agent runs in, read over netlink each time."""

    async def snapshot(self) -> InterfaceTable:
        async with AsyncIPRoute() as ipr:
            links = [link async for link in await ipr.get_links()]
            addrs = [a async for a in await ipr.get_addr(family=socket.AF_INET)]
        by_index: dict[int, list[IPv4Interface]] = {}
        for a in addrs:
            by_index.setdefault(a["index"], []).append(
                IPv4Interface(f"{a.get('address')}/{a['prefixlen']}")
            )
        found: dict[str, Interface] = {}
        for link in links:
            mac = (link.get("address") or "").lower()
            if not mac or mac == "00:00:00:00:00:00":
                continue
            found.setdefault(
                mac, Interface(link.get("ifname"), mac, tuple(by_index.get(link["index"], ())))
            )
        return InterfaceTable(found)


class SimulatedInterfaces:
    """--simulate: no namespace to look into; any MAC is an interface."""

    async def snapshot(self) -> InterfaceTable:
        return InterfaceTable({}, simulated=True)

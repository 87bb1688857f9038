"""How a VM's NIC gets its address and names: whether its L3 network serves DHCP and
DNS (its attached network services, ``QueryNetworkServiceL3NetworkRef``), and the DNS
names the virtual router gives the guest.

On a network without DHCP (the default ``public`` one) the node still allocates an
address, but nothing hands it to the guest: it must be configured in the guest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.virtual_router.sync import hostname_of

STATIC_MARK = "(static)"
"""What the VMs table adds to an address no DHCP serves."""
NO_DHCP = "no DHCP: configure the IP in the guest"
SERVICE_REFS = "QueryNetworkServiceL3NetworkRef"
"""The query that says which services each L3 network gets."""


@dataclass(frozen=True)
class Services:
    """The network service types of each L3 network, by uuid."""

    by_l3: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, refs: Iterable[Mapping[str, Any]]) -> Services:
        found: dict[str, set[str]] = {}
        for ref in refs:
            found.setdefault(str(ref.get("l3NetworkUuid")), set()).add(
                str(ref.get("networkServiceType"))
            )
        return cls({uuid: frozenset(types) for uuid, types in found.items()})

    def dhcp(self, l3_uuid: Any) -> bool:
        return "DHCP" in self.by_l3.get(str(l3_uuid), frozenset())

    def dns(self, l3_uuid: Any) -> bool:
        return "DNS" in self.by_l3.get(str(l3_uuid), frozenset())


def shown_ip(nic: Mapping[str, Any], services: Services | None) -> str:
    """``10.0.0.5``, or ``192.168.1.9 (static)`` where no DHCP hands it to the guest
    (``services`` None: not known, nothing marked)."""
    ip = str(nic.get("ip") or "")
    if ip and services is not None and not services.dhcp(nic.get("l3NetworkUuid")):
        return f"{ip} {STATIC_MARK}"
    return ip


def network_label(l3: Mapping[str, Any], services: Services) -> str:
    """``private (Private)``, or ``public (Public) — no DHCP: configure the IP in the guest``."""
    label = f"{l3.get('name')} ({l3.get('category', '')})"
    return label if services.dhcp(l3.get("uuid")) else f"{label} — {NO_DHCP}"


def dns_names(vm: Mapping[str, Any], l3: Mapping[str, Any], services: Services) -> list[str]:
    """The names the network's DNS (the virtual router's) answers for the VM's address:
    ``web1.lab.lan`` and ``web1`` (none where the network serves no DNS)."""
    if not (services.dns(l3.get("uuid")) and services.dhcp(l3.get("uuid"))):
        return []  # the router names the addresses it serves by DHCP only
    host = hostname_of(str(vm.get("name") or ""), str(vm.get("uuid") or ""))
    domain = l3.get("dnsDomain")
    return [f"{host}.{domain}", host] if domain else [host]

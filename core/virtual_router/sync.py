"""What a virtual router should serve, computed from the database: the bodies of its
agent's /setdns, /adddhcp and /syncsnat (contracts.virtual_router).

The database is the source of truth; a full re-sync sends all of it, so an appliance
that lost its state (agent restart, new namespace) comes back exactly as it was.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.network.l3.models import L3NetworkDnsVO, L3NetworkVO, VmNicVO
from core.network.l3.nics import VM_NIC
from core.network.service.plugin import services_of
from core.vm.models import VmInstanceVO

PUBLIC, GUEST = "public", "guest"

SERVED_STATES = (
    "Starting",
    "Running",
    "Rebooting",
    "Pausing",
    "Paused",
    "Resuming",
    "Stopping",
    "Unknown",
)
"""VMs whose NICs get DHCP entries: every state in which the domain may run."""


def hostname_of(vm_name: str, vm_uuid: str) -> str:
    """A DNS label from a VM's name: lower case, other characters as ``-``, 63 at most."""
    label = re.sub(r"[^a-z0-9-]+", "-", vm_name.lower()).strip("-")[:63].strip("-")
    return label or f"vm-{vm_uuid[:8]}"


def upstream_dns(session: Session, l3_uuid: str) -> list[str]:
    return list(
        session.scalars(
            select(L3NetworkDnsVO.dns)
            .where(L3NetworkDnsVO.l3_network_uuid == l3_uuid)
            .order_by(L3NetworkDnsVO.position)
        )
    )


def dhcp_entry(
    session: Session, nic: dict[str, Any], vm: dict[str, Any], guest: dict[str, Any]
) -> dict[str, Any]:
    """The DhcpEntry of a VM's NIC, served on the appliance's guest NIC ``guest``."""
    l3_uuid = nic["l3NetworkUuid"]
    l3 = session.get(L3NetworkVO, l3_uuid)
    assert l3 is not None
    services = services_of(session, l3_uuid)
    dns = [guest["ip"]] if "DNS" in services else upstream_dns(session, l3_uuid)
    default_l3 = vm.get("defaultL3NetworkUuid") or l3_uuid
    return {
        "ip": nic["ip"],
        "mac": nic["mac"],
        "netmask": nic["netmask"],
        "gateway": nic["gateway"],
        "hostname": hostname_of(vm["name"], vm["uuid"]),
        "dnsDomain": l3.dns_domain or "",
        "dns": dns,
        "isDefaultL3Network": default_l3 == l3_uuid,
        "vrNicMac": guest["mac"],
    }


def all_dhcp_entries(session: Session, l3_uuid: str, guest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every DHCP entry of the guest network: the NICs of VMs that may be running."""
    rows = session.execute(
        select(VmNicVO, VmInstanceVO)
        .join(VmInstanceVO, VmInstanceVO.uuid == VmNicVO.vm_instance_uuid)
        .where(
            VmNicVO.l3_network_uuid == l3_uuid,
            VmNicVO.type == VM_NIC,
            VmInstanceVO.state.in_(SERVED_STATES),
        )
        .order_by(VmNicVO.ip)
    )
    return [dhcp_entry(session, nic.to_inventory(), vm.to_inventory(), guest) for nic, vm in rows]


def dns_body(session: Session, l3_uuid: str, guest: dict[str, Any]) -> dict[str, Any]:
    return {
        "dns": [
            {"dnsAddress": dns, "nicMac": guest["mac"]} for dns in upstream_dns(session, l3_uuid)
        ]
    }


def snat_body(nics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    guest, public = nics[GUEST], nics[PUBLIC]
    return {
        "snats": [
            {
                "privateNicMac": guest["mac"],
                "privateNicIp": guest["ip"],
                "snatNetmask": guest["netmask"],
                "publicNicMac": public["mac"],
                "publicIp": public["ip"],
            }
        ]
    }

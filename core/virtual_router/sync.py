"""What a virtual router should serve, computed from the database: the entries of its
agent's /setdns, /adddhcp and /syncsnat (contracts.virtual_router's typed models).

The database is the source of truth; a full re-sync sends all of it, so an appliance
that lost its state (agent restart, new namespace) comes back exactly as it was.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import virtual_router as vr
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
) -> vr.DhcpEntryTO:
    """The DhcpEntry of a VM's NIC, served on the appliance's guest NIC ``guest``."""
    l3_uuid = nic["l3NetworkUuid"]
    l3 = session.get(L3NetworkVO, l3_uuid)
    assert l3 is not None
    services = services_of(session, l3_uuid)
    dns = [guest["ip"]] if "DNS" in services else upstream_dns(session, l3_uuid)
    default_l3 = vm.get("defaultL3NetworkUuid") or l3_uuid
    return vr.DhcpEntryTO(
        ip=nic["ip"],
        mac=nic["mac"],
        netmask=nic["netmask"],
        gateway=nic["gateway"],
        hostname=hostname_of(vm["name"], vm["uuid"]),
        dns_domain=l3.dns_domain or "",
        dns=dns,
        is_default_l3_network=default_l3 == l3_uuid,
        vr_nic_mac=guest["mac"],
    )


def all_dhcp_entries(session: Session, l3_uuid: str, guest: dict[str, Any]) -> list[vr.DhcpEntryTO]:
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


def dns_infos(session: Session, l3_uuid: str, guest: dict[str, Any]) -> list[vr.DnsInfoTO]:
    """The upstream DNS servers of the guest network, served on the guest NIC."""
    return [
        vr.DnsInfoTO(dns_address=dns, nic_mac=guest["mac"])
        for dns in upstream_dns(session, l3_uuid)
    ]


def snats(nics: dict[str, dict[str, Any]]) -> list[vr.SnatTO]:
    """Source NAT of the guest network through the public NIC."""
    guest, public = nics[GUEST], nics[PUBLIC]
    return [
        vr.SnatTO(
            private_nic_mac=guest["mac"],
            private_nic_ip=guest["ip"],
            snat_netmask=guest["netmask"],
            public_nic_mac=public["mac"],
            public_ip=public["ip"],
        )
    ]

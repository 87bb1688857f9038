"""What a new VM's networks must satisfy, checked before anything is made."""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import argerr, not_found
from core.network.l3.models import IpRangeVO, L3NetworkVO
from core.network.l3.system_tags import STATIC_IP


def check_vm_networks(
    session: Session, l3_uuids: list[str], system_tags: list[str]
) -> dict[str, str]:
    """The L3 networks exist, are distinct, Enabled and have addresses; every
    ``staticIp::{l3}::{ip}`` tag names one of them and an address in its ranges.
    Returns the static IP asked for on each L3 network."""
    if len(set(l3_uuids)) != len(l3_uuids):
        raise argerr("l3NetworkUuids: an L3 network is given twice")
    zones = set()
    for uuid in l3_uuids:
        l3 = session.get(L3NetworkVO, uuid)
        if l3 is None:
            raise not_found(L3NetworkVO.resource_type, uuid)
        if l3.state != "Enabled":
            raise argerr(f"L3 network {l3.name} is {l3.state}")
        zones.add(l3.zone_uuid)
    if len(zones) > 1:
        raise argerr("l3NetworkUuids: the L3 networks are in different zones")
    static: dict[str, str] = {}
    for tag in system_tags:
        tokens = STATIC_IP.parse(tag)
        if tokens is None:
            continue
        l3_uuid, text = tokens["l3NetworkUuid"], tokens["ip"]
        if l3_uuid not in l3_uuids:
            raise argerr(f"{tag}: L3 network {l3_uuid} is not one of the VM's l3NetworkUuids")
        if l3_uuid in static:
            raise argerr(f"two staticIp tags for L3 network {l3_uuid}")
        try:
            ip = ipaddress.IPv4Address(text)
        except ValueError:
            raise argerr(f"{tag}: {text!r} is not an IPv4 address") from None
        ranges = session.scalars(select(IpRangeVO).where(IpRangeVO.l3_network_uuid == l3_uuid))
        if not any(
            ipaddress.IPv4Address(r.start_ip) <= ip <= ipaddress.IPv4Address(r.end_ip)
            for r in ranges
        ):
            raise argerr(f"{tag}: {ip} is in no IP range of L3 network {l3_uuid}")
        static[l3_uuid] = str(ip)
    return static

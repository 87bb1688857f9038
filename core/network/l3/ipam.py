"""IP address management: range validation and atomic allocation, with ``ipaddress``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.kernel.errors import ErrorCode, OperationError, argerr
from core.network.l3.models import IpRangeVO, UsedIpVO

IP_EXHAUSTED = "L3.1000"
IP_TAKEN = "L3.1001"


@dataclass(frozen=True)
class RangeSpec:
    start: ipaddress.IPv4Address
    end: ipaddress.IPv4Address
    network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address


def _address(field: str, text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise argerr(f"{field} {text!r} is not an IPv4 address") from None


def parse_range(start_ip: str, end_ip: str, netmask: str, gateway: str) -> RangeSpec:
    """Check a range: addresses valid, start <= end, all inside the gateway's network,
    the gateway outside the range, neither the network nor the broadcast address in it."""
    start, end = _address("startIp", start_ip), _address("endIp", end_ip)
    gw = _address("gateway", gateway)
    try:
        network = ipaddress.IPv4Network(f"{gw}/{netmask.strip()}", strict=False)
    except ValueError:
        raise argerr(f"netmask {netmask!r} is not a valid IPv4 netmask") from None
    if network.prefixlen > 30:
        raise argerr(f"netmask {netmask} leaves no room for hosts (at most /30)")
    if start > end:
        raise argerr(f"startIp {start} is after endIp {end}")
    for name, ip in (("startIp", start), ("endIp", end)):
        if ip not in network:
            raise argerr(f"{name} {ip} is outside the network {network} of the gateway")
    if start <= network.network_address or end >= network.broadcast_address:
        raise argerr(
            f"the range {start}-{end} must not include the network address "
            f"{network.network_address} or the broadcast address {network.broadcast_address}"
        )
    if start <= gw <= end:
        raise argerr(f"the gateway {gw} must be outside the range {start}-{end}")
    return RangeSpec(start, end, network, gw)


def range_by_cidr(cidr: str, gateway: str = "") -> tuple[str, str, str, str]:
    """(startIp, endIp, netmask, gateway) of a whole network: the gateway is the given
    address or the first host, the range the longer run of hosts beside it."""
    try:
        network = ipaddress.IPv4Network(cidr.strip(), strict=True)
    except ValueError as exc:
        raise argerr(f"networkCidr {cidr!r} is not an IPv4 network: {exc}") from None
    if network.prefixlen > 30:
        raise argerr(f"networkCidr {cidr} is too small: at most /30")
    if network.prefixlen < 16:
        raise argerr(f"networkCidr {cidr} is too large: at least /16")
    first, last = network.network_address + 1, network.broadcast_address - 1
    gw = _address("gateway", gateway) if gateway else first
    if not first <= gw <= last:
        raise argerr(f"gateway {gw} is not a host address of {network}")
    after, before = int(last) - int(gw), int(gw) - int(first)
    start, end = (gw + 1, last) if after >= before else (first, gw - 1)
    return str(start), str(end), str(network.netmask), str(gw)


def prefix_length(netmask: str) -> int:
    """``255.255.255.0`` -> 24."""
    return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def allocate_ip(
    session: Session, l3_uuid: str, owner: str, requested: str | None = None
) -> dict[str, Any]:
    """Take an address of the L3 network (``requested``, or the lowest free one).

    The (l3, ip) unique constraint makes this atomic even with concurrent writers: a
    loser's insert fails and it tries the next free address.
    """
    ranges = list(
        session.scalars(
            select(IpRangeVO)
            .where(IpRangeVO.l3_network_uuid == l3_uuid)
            .order_by(IpRangeVO.start_ip)
        )
    )
    if not ranges:
        raise argerr(f"L3 network {l3_uuid} has no IP range; add one first")
    if requested is not None:
        ip = _address("static IP", requested)
        for r in ranges:
            if _int(r.start_ip) <= int(ip) <= _int(r.end_ip):
                if not _insert(session, r, l3_uuid, int(ip), owner):
                    raise OperationError(
                        ErrorCode(IP_TAKEN, f"IP {ip} of L3 network {l3_uuid} is already used")
                    )
                return _used(session, l3_uuid, int(ip))
        raise argerr(f"static IP {ip} is in no IP range of L3 network {l3_uuid}")
    for _attempt in range(16):
        used = set(
            session.scalars(select(UsedIpVO.ip_in_long).where(UsedIpVO.l3_network_uuid == l3_uuid))
        )
        free = next(
            (
                (r, value)
                for r in ranges
                for value in range(_int(r.start_ip), _int(r.end_ip) + 1)
                if value not in used
            ),
            None,
        )
        if free is None:
            raise OperationError(
                ErrorCode(IP_EXHAUSTED, f"every address of L3 network {l3_uuid} is in use")
            )
        if _insert(session, free[0], l3_uuid, free[1], owner):
            return _used(session, l3_uuid, free[1])
        # Taken by a concurrent writer meanwhile: read the used addresses again.
    raise OperationError(ErrorCode(IP_EXHAUSTED, f"could not take an address of L3 {l3_uuid}"))


def release_ip(session: Session, used_ip_uuid: str) -> None:
    row = session.get(UsedIpVO, used_ip_uuid)
    if row is not None:
        session.delete(row)


def _int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _insert(session: Session, r: IpRangeVO, l3_uuid: str, value: int, owner: str) -> bool:
    try:
        with session.begin_nested():
            session.add(
                UsedIpVO(
                    ip_range_uuid=r.uuid,
                    l3_network_uuid=l3_uuid,
                    ip=str(ipaddress.IPv4Address(value)),
                    ip_in_long=value,
                    gateway=r.gateway,
                    netmask=r.netmask,
                    owner=owner,
                )
            )
        return True
    except IntegrityError:
        return False


def _used(session: Session, l3_uuid: str, value: int) -> dict[str, Any]:
    row = session.scalars(
        select(UsedIpVO).where(UsedIpVO.l3_network_uuid == l3_uuid, UsedIpVO.ip_in_long == value)
    ).one()
    return row.to_inventory()

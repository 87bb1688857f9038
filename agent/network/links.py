"""Small helpers over pyroute2's IPRoute (blocking; one IPRoute per call, in a thread).

pyroute2 0.9's blocking IPRoute runs an event loop of its own, so it must not be
used in a thread whose asyncio loop is running: callers go through a thread.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

Link = Any
"""A pyroute2 ``ifinfmsg``."""

MAIN_TABLE = 254


def find(ipr: IPRoute, name: str) -> Link | None:
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise


def by_index(ipr: IPRoute, index: int) -> Link | None:
    try:
        return ipr.link("get", index=index)[0]
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.ENOENT):
            return None
        raise


def name_of(link: Link) -> str:
    return str(link.get_attr("IFLA_IFNAME"))


def kind_of(link: Link) -> str:
    """``bridge``, ``veth``, ``dummy``… or "" for a device without a kind (a real NIC)."""
    info = link.get_attr("IFLA_LINKINFO")
    if info is None:
        return ""
    return str(info.get_attr("IFLA_INFO_KIND") or "")


def describe(link: Link) -> str:
    kind = kind_of(link)
    return f"a {kind} link" if kind else "a device"


def master_of(link: Link) -> int:
    return int(link.get_attr("IFLA_MASTER") or 0)


def mac_of(link: Link) -> str:
    return str(link.get_attr("IFLA_ADDRESS") or "").lower()


def alias_of(link: Link) -> str:
    return str(link.get_attr("IFLA_IFALIAS") or "")


def set_alias(ipr: IPRoute, link: Link, alias: str) -> None:
    """Set the link's ifalias unless it is that already."""
    if alias_of(link) != alias:
        ipr.link("set", index=link["index"], ifalias=alias)


def is_up(link: Link) -> bool:
    return bool(link["flags"] & 1)


def index_name(ipr: IPRoute, index: int) -> str:
    link = by_index(ipr, index)
    return name_of(link) if link is not None else f"#{index}"


def ports(ipr: IPRoute, master: int) -> list[Link]:
    return [link for link in ipr.link("dump") if master_of(link) == master]


def default_route_ifindexes(ipr: IPRoute) -> set[int]:
    """Interfaces that carry a default route (IPv4 or IPv6, main table, multipath too)."""
    found: set[int] = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        for route in ipr.route("dump", family=family):
            if route["dst_len"] != 0 or _table(route) != MAIN_TABLE:
                continue
            oif = route.get_attr("RTA_OIF")
            if oif:
                found.add(int(oif))
            for hop in route.get_attr("RTA_MULTIPATH") or []:
                if hop.get("oif"):
                    found.add(int(hop["oif"]))
    return found


@dataclass(frozen=True)
class Route:
    """One way out of an IPv4 route of the main table."""

    network: ipaddress.IPv4Network
    oif: int
    """The interface's index; 0 for none (a blackhole, unreachable or prohibit route)."""
    gateway: str
    """The next hop's address; "" for none (an on-link route)."""


def ipv4_routes(ipr: IPRoute) -> list[Route]:
    """The main table's IPv4 routes that are not default routes: one :class:`Route` per
    next hop of a multipath route, one (with its own interface and gateway) otherwise."""
    routes = []
    for route in ipr.route("dump", family=socket.AF_INET):
        if route["dst_len"] == 0 or _table(route) != MAIN_TABLE:
            continue
        network = ipaddress.IPv4Network(
            f"{route.get_attr('RTA_DST')}/{route['dst_len']}", strict=False
        )
        hops = route.get_attr("RTA_MULTIPATH")
        if hops:
            ways = [(hop["oif"], hop.get_attr("RTA_GATEWAY")) for hop in hops]
        else:
            ways = [(route.get_attr("RTA_OIF"), route.get_attr("RTA_GATEWAY"))]
        routes += [Route(network, int(oif or 0), str(gateway or "")) for oif, gateway in ways]
    return routes


def _table(route: Any) -> int:
    return int(route.get_attr("RTA_TABLE") or route["table"])


def has_address(ipr: IPRoute, index: int, address: str, prefix_length: int) -> bool:
    return any(
        a.get_attr("IFA_ADDRESS") == address and a["prefixlen"] == prefix_length
        for a in ipr.addr("dump", family=socket.AF_INET)
        if a["index"] == index
    )


def add_address(ipr: IPRoute, index: int, address: str, prefix_length: int) -> bool:
    """Add an IPv4 address unless present; True if this call added it."""
    if has_address(ipr, index, address, prefix_length):
        return False
    try:
        ipr.addr("add", index=index, address=address, prefixlen=prefix_length)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise
        return False
    return True


def delete_address(ipr: IPRoute, index: int, address: str, prefix_length: int) -> None:
    try:
        ipr.addr("del", index=index, address=address, prefixlen=prefix_length)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
            raise


def delete_link(ipr: IPRoute, index: int) -> None:
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code not in (errno.ENODEV, errno.ENOENT):
            raise


def message(exc: BaseException) -> str:
    """A readable text for a netlink error (pyroute2's str() is ``(code, 'text')``)."""
    if isinstance(exc, NetlinkError):
        text = exc.args[1] if len(exc.args) > 1 else errno.errorcode.get(exc.code, "")
        return f"{text} (errno {exc.code})"
    return str(exc) or type(exc).__name__

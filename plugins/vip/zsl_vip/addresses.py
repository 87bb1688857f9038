"""VIPs as /32 addresses on the appliance's public interface, announced by gratuitous ARP.

The appliance's own address on the public network has the network's prefix; every /32
address on that interface is a VIP this plugin added, so the set can be made exact again
after an agent restart without remembering anything.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address

from pyroute2 import AsyncIPRoute

from agentkit.errors import AgentError

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def garp_frame(mac: str, ip: IPv4Address) -> bytes:
    """A gratuitous ARP request (sender and target are the VIP) from ``mac``, broadcast."""
    hw = bytes.fromhex(mac.replace(":", ""))
    ether = BROADCAST + hw + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + hw + ip.packed + b"\x00" * 6 + ip.packed
    return ether + arp


def announce(interface: str, mac: str, ips: Iterable[IPv4Address], count: int = 2) -> None:
    """Send gratuitous ARP for each of ``ips`` so neighbours learn where they are now."""
    ips = list(ips)
    if not ips:
        return
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((interface, 0))
        for _ in range(count):
            for ip in ips:
                sock.send(garp_frame(mac, ip))


async def held_vips(index: int) -> set[IPv4Address]:
    """The /32 addresses on the interface with ``index``."""
    async with AsyncIPRoute() as ipr:
        return {
            IPv4Address(a.get("address"))
            async for a in await ipr.get_addr(family=socket.AF_INET, index=index)
            if a["prefixlen"] == 32
        }


async def set_vips(index: int, wanted: set[IPv4Address]) -> set[IPv4Address]:
    """Make the interface's /32 addresses exactly ``wanted``; the ones added."""
    held = await held_vips(index)
    try:
        async with AsyncIPRoute() as ipr:
            for ip in sorted(held - wanted):
                with contextlib.suppress(Exception):  # gone meanwhile
                    await ipr.addr("del", index=index, address=str(ip), prefixlen=32)
            for ip in sorted(wanted - held):
                await ipr.addr("add", index=index, address=str(ip), prefixlen=32)
    except Exception as exc:
        raise AgentError(f"cannot set the VIP addresses: {exc}") from exc
    return wanted - held

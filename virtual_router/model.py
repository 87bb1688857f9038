"""The commands' entries, parsed and checked from JSON.

Everything that later lands in a dnsmasq file or an nft ruleset passes through
here first, so a value can never carry a comma, newline or quote into them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from agentkit.errors import ArgumentError

_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def unique(values: list[str], what: str) -> None:
    """Refuse one request naming the same key twice (which would win is unclear)."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ArgumentError(f"{what} names {value} twice")
        seen.add(value)


class Fields:
    """Typed access to a command's JSON object; errors name the field and the value."""

    def __init__(self, raw: Any, prefix: str = "") -> None:
        if not isinstance(raw, dict):
            raise ArgumentError(f"{prefix.rstrip('.') or 'the body'} must be an object")
        self.raw: dict[str, Any] = raw
        self.prefix = prefix

    def name(self, field: str) -> str:
        return f"{self.prefix}{field}"

    def text(self, field: str, default: str | None = None) -> str:
        value = self.raw.get(field)
        if value is None or value == "":
            if default is None:
                raise ArgumentError(f"field {self.name(field)!r} is required")
            return default
        if not isinstance(value, str):
            raise ArgumentError(f"field {self.name(field)!r} must be a string, not {value!r}")
        return value

    def flag(self, field: str, default: bool) -> bool:
        value = self.raw.get(field)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ArgumentError(f"field {self.name(field)!r} must be true or false, not {value!r}")
        return value

    def objects(self, field: str) -> list[Fields]:
        value = self.raw.get(field)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ArgumentError(f"field {self.name(field)!r} must be a list of objects")
        return [Fields(v, f"{self.name(field)}[{i}].") for i, v in enumerate(value)]

    def texts(self, field: str) -> list[str]:
        value = self.raw.get(field)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ArgumentError(f"field {self.name(field)!r} must be a list of strings")
        return value

    def mac(self, field: str) -> str:
        value = self.text(field)
        if not _MAC.fullmatch(value):
            raise ArgumentError(f"field {self.name(field)!r} is not a MAC address: {value!r}")
        return value.lower()

    def ipv4(self, field: str, optional: bool = False) -> IPv4Address | None:
        value = self.text(field, "" if optional else None)
        return parse_ipv4(value, self.name(field)) if value else None

    def address(self, field: str) -> IPv4Address:
        value = self.ipv4(field)
        assert value is not None
        return value

    def netmask(self, field: str) -> IPv4Address:
        value = self.text(field)
        try:
            IPv4Network(f"0.0.0.0/{value}")
            return IPv4Address(value)
        except ValueError:
            raise ArgumentError(
                f"field {self.name(field)!r} is not a dotted IPv4 netmask: {value!r}"
            ) from None

    def domain(self, field: str) -> str:
        value = self.text(field, "")
        if value and (len(value) > 253 or not _DOMAIN.fullmatch(value)):
            raise ArgumentError(f"field {self.name(field)!r} is not a DNS name: {value!r}")
        return value.lower()


def parse_ipv4(value: str, field: str) -> IPv4Address:
    try:
        return IPv4Address(value)
    except ValueError:
        raise ArgumentError(f"field {field!r} is not an IPv4 address: {value!r}") from None


def network_of(ip: IPv4Address, netmask: IPv4Address) -> IPv4Network:
    return IPv4Network(f"{ip}/{netmask}", strict=False)


@dataclass(frozen=True)
class DhcpEntry:
    ip: IPv4Address
    mac: str
    netmask: IPv4Address
    gateway: IPv4Address | None
    hostname: str
    dns_domain: str
    dns: tuple[IPv4Address, ...]
    is_default_l3: bool
    vr_nic_mac: str

    @cached_property
    def network(self) -> IPv4Network:
        """(Parsed once: dnsmasq's files are rendered from every entry on each change.)"""
        return network_of(self.ip, self.netmask)

    @classmethod
    def parse(cls, f: Fields) -> DhcpEntry:
        ip = f.address("ip")
        netmask = f.netmask("netmask")
        is_default = f.flag("isDefaultL3Network", True)
        gateway = f.ipv4("gateway", optional=not is_default)
        network = network_of(ip, netmask)
        if ip in (network.network_address, network.broadcast_address) and network.prefixlen < 31:
            raise ArgumentError(f"field {f.name('ip')!r} is not a host address of {network}: {ip}")
        if gateway is not None and gateway not in network:
            raise ArgumentError(
                f"field {f.name('gateway')!r} ({gateway}) is not in the network of "
                f"{f.name('ip')!r} ({network})"
            )
        dns = tuple(parse_ipv4(v, f"{f.name('dns')}[{i}]") for i, v in enumerate(f.texts("dns")))
        return cls(
            ip=ip,
            mac=f.mac("mac"),
            netmask=netmask,
            gateway=gateway,
            hostname=f.domain("hostname"),
            dns_domain=f.domain("dnsDomain"),
            dns=dns,
            is_default_l3=is_default,
            vr_nic_mac=f.mac("vrNicMac"),
        )


@dataclass(frozen=True)
class DhcpKey:
    """What /removedhcp names: an entry by MAC or IP."""

    ip: IPv4Address
    mac: str

    @classmethod
    def parse(cls, f: Fields) -> DhcpKey:
        return cls(ip=f.address("ip"), mac=f.mac("mac"))

    def matches(self, entry: DhcpEntry) -> bool:
        return entry.ip == self.ip or entry.mac == self.mac


@dataclass(frozen=True)
class DnsInfo:
    address: IPv4Address
    nic_mac: str

    @classmethod
    def parse(cls, f: Fields) -> DnsInfo:
        return cls(address=f.address("dnsAddress"), nic_mac=f.mac("nicMac"))


@dataclass(frozen=True)
class Snat:
    private_nic_mac: str
    private_nic_ip: IPv4Address
    snat_netmask: IPv4Address
    public_nic_mac: str
    public_ip: IPv4Address

    @property
    def private_network(self) -> IPv4Network:
        return network_of(self.private_nic_ip, self.snat_netmask)

    @classmethod
    def parse(cls, f: Fields) -> Snat:
        return cls(
            private_nic_mac=f.mac("privateNicMac"),
            private_nic_ip=f.address("privateNicIp"),
            snat_netmask=f.netmask("snatNetmask"),
            public_nic_mac=f.mac("publicNicMac"),
            public_ip=f.address("publicIp"),
        )

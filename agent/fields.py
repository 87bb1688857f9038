"""Reading a command's JSON object: typed access to its fields, and the checks the host
agent's commands share.  Every error names the field (``nics[0].mac``) and, for a bad
value, the value; the core and the tests read these messages."""

from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath
from typing import Any, NamedTuple

from agent.network import names
from agentkit.errors import ArgumentError
from contracts.kvm import VIRTUAL_PORT_TYPES

_VM_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
VLAN_IDS = range(1, 4095)


class NicPort(NamedTuple):
    """How a NIC (a VM's or an appliance's) is plugged: contracts.kvm.NicTO's fields."""

    bridge_name: str
    virtual_port_type: str = ""
    vlan_id: int | None = None


class Fields:
    """Typed access to a command's JSON object; errors name the field."""

    def __init__(self, raw: dict[str, Any], prefix: str = "") -> None:
        self.raw = raw
        self.prefix = prefix

    def _name(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def text(self, name: str, default: str | None = None) -> str:
        value = self.raw.get(name)
        if value is None or value == "":
            if default is None:
                raise ArgumentError(f"field {self._name(name)!r} is required")
            return default
        if not isinstance(value, str):
            raise ArgumentError(f"field {self._name(name)!r} must be a string")
        return value

    def integer(self, name: str, default: int | None = None, minimum: int = 0) -> int:
        value = self.raw.get(name)
        if value is None:
            if default is None:
                raise ArgumentError(f"field {self._name(name)!r} is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ArgumentError(f"field {self._name(name)!r} must be an integer >= {minimum}")
        return value

    def number(self, name: str, default: float) -> float:
        value = self.raw.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ArgumentError(f"field {self._name(name)!r} must be a number >= 0")
        return float(value)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ArgumentError(f"field {self._name(name)!r} must be true or false")
        return value

    def texts(self, name: str) -> list[str]:
        value = self.raw.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ArgumentError(f"field {self._name(name)!r} must be a list of strings")
        return value

    def object(self, name: str) -> Fields:
        value = self.raw.get(name)
        if not isinstance(value, dict):
            raise ArgumentError(f"field {self._name(name)!r} must be an object")
        return Fields(value, f"{self._name(name)}.")

    def objects(self, name: str) -> list[Fields]:
        value = self.raw.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ArgumentError(f"field {self._name(name)!r} must be a list of objects")
        return [Fields(v, f"{self._name(name)}[{i}].") for i, v in enumerate(value)]

    def matching(
        self, name: str, pattern: re.Pattern[str], what: str, default: str | None = None
    ) -> str:
        value = self.text(name, default)
        if value and not pattern.fullmatch(value):
            raise ArgumentError(f"field {self._name(name)!r} is not {what}: {value!r}")
        return value

    def vm_uuid(self) -> str:
        return self.matching("vmUuid", _VM_UUID, "a VM uuid (letters, digits, . _ -)")

    def interface_name(self, name: str = "physicalInterface") -> str:
        """An existing host interface's name (one the core hands over), or ""."""
        value = self.text(name, "")
        return names.check_interface_name(value, self._name(name)) if value else ""

    def bridge_name(self, name: str = "bridgeName") -> str:
        return names.check_bridge_name(self.text(name), self._name(name))

    def nic_port(self) -> NicPort:
        """``bridgeName``, ``virtualPortType`` and ``vlanId`` of a NIC: a Linux bridge
        port is on a project bridge (``zslbr-…``) and untagged; a virtual port is on any
        project switch name, and may be an access port of a VLAN (1-4094)."""
        port_type = self.text("virtualPortType", "")
        if port_type not in VIRTUAL_PORT_TYPES:
            raise ArgumentError(
                f"field {self._name('virtualPortType')!r} must be one of "
                f"{', '.join(repr(t) for t in VIRTUAL_PORT_TYPES)}, not {port_type!r}"
            )
        vlan_id = self.raw.get("vlanId")
        if vlan_id is not None:
            if isinstance(vlan_id, bool) or not isinstance(vlan_id, int) or vlan_id not in VLAN_IDS:
                raise ArgumentError(
                    f"field {self._name('vlanId')!r} must be a VLAN id, an integer from "
                    f"{VLAN_IDS[0]} to {VLAN_IDS[-1]}: {vlan_id!r}"
                )
            if not port_type:
                raise ArgumentError(
                    f"field {self._name('vlanId')!r} needs a virtualPortType: a port of a "
                    "Linux bridge cannot be tagged"
                )
        if port_type:
            bridge = names.check_switch_name(self.text("bridgeName"), self._name("bridgeName"))
        else:
            bridge = self.bridge_name()
        return NicPort(bridge, port_type, vlan_id)

    def mac(self, name: str = "mac") -> str:
        return self.matching(name, _MAC, "a MAC address").lower()

    def appliance_uuid(self) -> str:
        return names.check_appliance_uuid(self.text("applianceUuid"))

    def ipv4_interface(self, name: str) -> ipaddress.IPv4Interface:
        """An ``address/prefix`` field, like ``10.0.0.1/24``."""
        value = self.text(name)
        if "/" not in value:
            raise ArgumentError(f"field {self._name(name)!r} needs a prefix, like 10.0.0.1/24")
        return _host_interface(value, self._name(name))

    def ipv4_interface_of(self, ip: str, prefix_length: str) -> ipaddress.IPv4Interface:
        """An address field and a prefix length field, together."""
        length = self.integer(prefix_length, minimum=1)
        return _host_interface(f"{self.text(ip)}/{length}", self._name(ip))


def _host_interface(value: str, field: str) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ArgumentError(f"field {field!r} is not an IPv4 address/prefix: {value!r}") from None
    net = iface.network
    if net.prefixlen > 30 or iface.ip in (net.network_address, net.broadcast_address):
        raise ArgumentError(
            f"field {field!r} must be a host address in a network of at most /30: {value!r}"
        )
    return iface


def unique(values: list[str], field: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ArgumentError(f"field {field!r} has {value} twice")
        seen.add(value)


def absolute_path(f: Fields, name: str, optional: bool = False) -> str:
    value = f.text(name, "" if optional else None)
    if value and not value.startswith("/"):
        raise ArgumentError(f"field {f._name(name)!r} must be an absolute path: {value!r}")
    if ".." in PurePosixPath(value).parts:
        raise ArgumentError(f"field {f._name(name)!r} must not climb with '..': {value!r}")
    return value

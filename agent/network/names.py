"""The agent's checks on the names the core sends (the names themselves are
:mod:`contracts.names`'s): a command naming anything else is refused, naming the field."""

from __future__ import annotations

import re

from agentkit.errors import ArgumentError
from contracts.names import IFNAMSIZ

_BRIDGE = re.compile(r"zslbr-[a-z0-9]{1,9}")
_LINK = re.compile(r"zsl[a-z0-9-]{1,12}")
"""Any link name the project makes (a tap, a bridge, a switch)."""
_IFNAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")
_UUID = re.compile(r"[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")


def check_bridge_name(name: str, field: str = "bridgeName") -> str:
    """A bridge name the core may send: ``zslbr-`` then 1-9 lower-case letters or digits."""
    if not _BRIDGE.fullmatch(name):
        raise ArgumentError(
            f"field {field!r} is not a project bridge name (zslbr- and up to 9 lower-case "
            f"letters or digits, at most {IFNAMSIZ} characters): {name!r}"
        )
    return name


def check_tap_name(name: str, field: str = "deviceName") -> str:
    """A VM tap name the core may send: ``zsl`` then lower-case letters, digits or ``-``."""
    if not _LINK.fullmatch(name):
        raise ArgumentError(
            f"field {field!r} is not a project device name (zsl and up to 12 lower-case "
            f"letters, digits or -, at most {IFNAMSIZ} characters): {name!r}"
        )
    return name


def check_switch_name(name: str, field: str = "bridgeName") -> str:
    """The bridge of a virtual port (an Open vSwitch bridge…): any project link name,
    ``zsl`` then lower-case letters, digits or ``-``."""
    if not _LINK.fullmatch(name):
        raise ArgumentError(
            f"field {field!r} is not a project switch name (zsl and up to 12 lower-case "
            f"letters, digits or -, at most {IFNAMSIZ} characters): {name!r}"
        )
    return name


def check_interface_name(name: str, field: str = "physicalInterface") -> str:
    """Any existing Linux interface name (a physical interface the core hands over)."""
    if not _IFNAME.fullmatch(name) or name in (".", ".."):
        raise ArgumentError(f"field {field!r} is not an interface name: {name!r}")
    return name


def check_appliance_uuid(value: str, field: str = "applianceUuid") -> str:
    if not _UUID.fullmatch(value):
        raise ArgumentError(f"field {field!r} is not a uuid (32 hex digits): {value!r}")
    return value

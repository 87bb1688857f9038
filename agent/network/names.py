"""The names of what the project makes on a host, and the checks on names the core sends.

Every link, namespace and nftables table the project creates starts with ``zsl`` and
fits IFNAMSIZ (15 characters for a link name); the agent never changes a link whose
name it did not make (a physical interface is touched only when the core names it).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Final

from agent.errors import ArgumentError

PREFIX: Final = "zsl"
IFNAMSIZ: Final = 15
BRIDGE_PREFIX: Final = "zslbr-"
"""The core's bridge names: ``zslbr-`` and 9 hex digits of the L2 network's uuid."""
NAMESPACE_PREFIX: Final = "zsl-vr-"
"""An appliance's network namespace: ``zsl-vr-`` and the first 9 hex digits of its uuid."""
VETH_PREFIX: Final = "zslv"
"""An appliance NIC's host end: ``zslv``, 9 hex digits of the appliance uuid, the NIC's index."""
LAB_ALIAS_PREFIX: Final = "zstack-lite lab="
"""The ifalias of the links a lab makes (bridges, appliance veths): ``zstack-lite lab=<lab
id>`` (agent.lab), so a reset recognises a lab's links even without its data dir."""
DNSMASQ_RUN_DIR: Final = Path("/run/zstack-lite/dnsmasq")
"""Where an appliance's dnsmasq finds the files it re-reads as an unprivileged user
(:func:`dnsmasq_run_dir`)."""
MAX_APPLIANCE_NICS: Final = 16
"""``zslv`` + 9 + 2 digits is 15 characters: NIC indexes stay below 100; 16 is plenty."""

_BRIDGE = re.compile(r"zslbr-[a-z0-9]{1,9}")
_TAP = re.compile(r"zsl[a-z0-9-]{1,12}")
_IFNAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")
_UUID = re.compile(r"[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")


def is_ours(name: str) -> bool:
    return name.startswith(PREFIX)


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
    if not _TAP.fullmatch(name):
        raise ArgumentError(
            f"field {field!r} is not a project device name (zsl and up to 12 lower-case "
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


def short_id(appliance_uuid: str) -> str:
    """The first 9 hex digits of an appliance uuid, lower case."""
    return appliance_uuid.replace("-", "").lower()[:9]


def namespace_name(appliance_uuid: str) -> str:
    return NAMESPACE_PREFIX + short_id(appliance_uuid)


def veth_prefix(appliance_uuid: str) -> str:
    return VETH_PREFIX + short_id(appliance_uuid)


def veth_name(appliance_uuid: str, index: int) -> str:
    """The host end of an appliance's NIC ``index`` (``eth<index>`` inside the namespace)."""
    if not 0 <= index < MAX_APPLIANCE_NICS:
        raise ArgumentError(f"an appliance has at most {MAX_APPLIANCE_NICS} NICs")
    return f"{veth_prefix(appliance_uuid)}{index}"


def veth_index(appliance_uuid: str, name: str) -> int | None:
    """The NIC index a host-end name stands for, or None if it is no veth of this appliance."""
    prefix = veth_prefix(appliance_uuid)
    rest = name[len(prefix) :]
    if name.startswith(prefix) and rest.isdigit():
        return int(rest)
    return None


def dnsmasq_run_dir(router_data_dir: Path) -> Path:
    """The directory of the files a virtual router's dnsmasq re-reads on SIGHUP after it
    dropped root: the router's data dir (0700, under the node's data dir) is out of its
    reach.  ``<DNSMASQ_RUN_DIR>/<dir name>-<8 hex of the dir's absolute path>``: found
    from the data dir alone (the appliance's destroy removes it), unique per dir."""
    path = Path(router_data_dir).absolute()
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return DNSMASQ_RUN_DIR / f"{path.name}-{digest}"


def lab_alias(lab: str) -> str:
    return LAB_ALIAS_PREFIX + lab


def lab_of_alias(alias: str) -> str:
    """The lab a link's ifalias names; "" when it names none."""
    return alias[len(LAB_ALIAS_PREFIX) :] if alias.startswith(LAB_ALIAS_PREFIX) else ""

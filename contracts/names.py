"""The names of what the project makes on a host, derived alike by the core and the agents.

Every link, namespace and nftables table the project creates starts with ``zsl`` and
fits IFNAMSIZ (15 characters for a link name); the agent never changes a link whose
name it did not make (a physical interface is touched only when the core names it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

PREFIX: Final = "zsl"
IFNAMSIZ: Final = 15
BRIDGE_PREFIX: Final = "zslbr-"
"""The core's bridge names: ``zslbr-`` and 9 hex digits of the L2 network's uuid."""
TAP_PREFIX: Final = "zslt"
"""A VM NIC's tap: ``zslt``, 9 hex digits of the VM's uuid, the NIC's device id."""
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
LAB_ID_LENGTH: Final = 10
MAX_APPLIANCE_NICS: Final = 16
"""``zslv`` + 9 + 2 digits is 15 characters: NIC indexes stay below 100; 16 is plenty."""


def bridge_name(l2_uuid: str) -> str:
    """A no-VLAN L2 network's bridge: ``zslbr-`` and 9 hex digits of the network's uuid,
    15 characters, the most a Linux interface name may have."""
    return BRIDGE_PREFIX + l2_uuid[:9]


def tap_name(vm_uuid: str, device_id: int) -> str:
    """A VM NIC's tap on the host (device ids below 100 keep it within 15 characters)."""
    return f"{TAP_PREFIX}{vm_uuid[:9]}{device_id}"


def is_ours(name: str) -> bool:
    return name.startswith(PREFIX)


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
        raise ValueError(f"an appliance has at most {MAX_APPLIANCE_NICS} NICs")
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


def lab_table_name(prefix: str, lab: str) -> str:
    """An nftables table a lab owns alone: ``<prefix><lab id>``, the prefix starting with
    ``zsl`` and ending with ``_`` (e.g. ``zsl_sg_<lab>``), so a reset finds the lab's
    tables by their names (:func:`lab_of_table`) whatever made them."""
    if not (prefix.startswith(PREFIX) and prefix.endswith("_")):
        raise ValueError(f"a lab's table prefix starts with {PREFIX} and ends with _: {prefix!r}")
    return prefix + lab


def lab_of_table(name: str) -> str:
    """The lab whose own table ``name`` is (:func:`lab_table_name`); "" when none."""
    head, sep, lab = name.rpartition("_")
    if not (sep and head.startswith(PREFIX) and lab.startswith(PREFIX)):
        return ""
    digits = lab[len(PREFIX) :]
    if len(digits) != LAB_ID_LENGTH or any(c not in "0123456789abcdef" for c in digits):
        return ""
    return lab


def lab_id(node_data_dir: Path | str) -> str:
    """A lab's identity on a host, carried by all it makes there: ``zsl`` + 10 hex digits
    of the SHA-256 of the node data dir's absolute path (so it outlives the dir)."""
    path = str(Path(node_data_dir).absolute())
    return "zsl" + hashlib.sha256(path.encode()).hexdigest()[:LAB_ID_LENGTH]

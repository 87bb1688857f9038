"""The plugin's agent commands (the host agent serves them once the plugin is installed)
and the names of its switches."""

from __future__ import annotations

import hashlib
from typing import Final

from contracts.base import Ack, Reply, Request

V_SWITCH_TYPE: Final = "OpenvSwitch"
VIRTUAL_PORT_TYPE: Final = "openvswitch"
"""libvirt's ``<virtualport type>``: libvirt adds a VM's tap to the bridge itself."""
BRIDGE_PREFIX: Final = "zslo-"

BRIDGE_CREATE: Final = "/openvswitch/bridge/create"
"""{bridgeName, physicalInterface} -> {bridgeName}: an OVS bridge with the userspace
datapath (``datapath_type=netdev``), with ``physicalInterface`` as its uplink (trunk)
port when given; idempotent."""

BRIDGE_DELETE: Final = "/openvswitch/bridge/delete"
"""{bridgeName} -> {}: the bridge with all its ports; a missing bridge is fine."""

CHECK: Final = "/openvswitch/check"
"""{} -> {vswitchdRunning, version, error}: whether ``ovs-vswitchd`` runs (OVSDB alone can
be up without it, and then nothing forwards)."""


class CreateBridgeRsp(Reply):
    bridge_name: str


class CreateBridgeCmd(Request[CreateBridgeRsp]):
    PATH = BRIDGE_CREATE
    bridge_name: str
    physical_interface: str = ""


class DeleteBridgeCmd(Request[Ack]):
    PATH = BRIDGE_DELETE
    bridge_name: str


class CheckRsp(Reply):
    vswitchd_running: bool
    version: str = ""
    error: str = ""


class CheckCmd(Request[CheckRsp]):
    PATH = CHECK


def bridge_name(zone_uuid: str, physical_interface: str) -> str:
    """The OVS bridge of a zone's networks on one interface (or on none): ``zslo-`` and 9
    hex digits, so that it fits IFNAMSIZ whatever the interface's name."""
    digest = hashlib.sha256(f"{zone_uuid}/{physical_interface}".encode()).hexdigest()
    return BRIDGE_PREFIX + digest[:9]

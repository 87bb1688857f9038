"""System tags of the L3 network service."""

from core.tag.definitions import SystemTagDef

STATIC_IP = SystemTagDef("staticIp::{l3NetworkUuid}::{ip}", "VmInstanceVO")
"""Give the VM's NIC on that L3 network this address (it must be in one of its ranges)."""

HOST_NAT = SystemTagDef("hostNat", "L3NetworkVO")
"""A public network on an isolated bridge whose gateway is the host itself: the host
forwards and masquerades its traffic through the host's own routes (the default
public network made at first start)."""

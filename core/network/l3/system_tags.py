"""System tags of the L3 network service."""

from core.tag.definitions import SystemTagDef

STATIC_IP = SystemTagDef(
    "staticIp::{l3NetworkUuid}::{ip}", "VmInstanceVO", apis=("CreateVmInstance",)
)
"""Give the VM's NIC on that L3 network this address (it must be in one of its ranges):
checked and used when the VM is created, so only CreateVmInstance takes it."""

HOST_NAT = SystemTagDef("hostNat", "L3NetworkVO", apis=("CreateL3Network",))
"""A public network on an isolated bridge whose gateway is the host itself: the host
forwards and masquerades its traffic through the host's own routes (the default
public network made at first start).  Only CreateL3Network takes it, which checks the
network may have it; the host NAT rules follow the network, so the tag can be neither
added nor removed later."""

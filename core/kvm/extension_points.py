"""Extension points of the KVM area (ZStack's KVMCompleteNicInformationExtensionPoint)."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from contracts import kvm


class NicKey(NamedTuple):
    l2_network_type: str
    v_switch_type: str


NicT = TypeVar("NicT", kvm.NicTO, kvm.ApplianceNicTO)


@runtime_checkable
class KVMCompleteNicInformationExtensionPoint(Protocol):
    """Says how a NIC on a network of one (L2 type, vSwitch type) is plugged on a KVM host:
    a Linux bridge port, an Open vSwitch port with a VLAN tag, …  The host agent builds the
    VM's ``<interface>`` (and plugs a router's veth) from what it returns."""

    nic_keys: tuple[NicKey, ...]

    def complete_nic_information(self, nic: dict[str, Any], to: NicT) -> NicT:
        """``to`` completed for ``nic``: the NIC's inventory with its network's
        ``bridgeName``, ``l2NetworkType``, ``vSwitchType`` and ``vlan`` (None)."""

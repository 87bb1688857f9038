"""Extension points of the KVM area (ZStack's KVMCompleteNicInformationExtensionPoint and
KVMStartVmExtensionPoint)."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from contracts import kvm
from core.vm.spec import VmInstanceSpec


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


@runtime_checkable
class KVMStartVmExtensionPoint(Protocol):
    """Sees every start of a VM's domain on a KVM host (create and start), just before the
    command goes, and may complete it: e.g. an SMBIOS serial that seeds cloud-init.

    Called in registry order; each gets the command the one before returned."""

    async def before_start_vm(self, spec: VmInstanceSpec, cmd: kvm.StartVmCmd) -> kvm.StartVmCmd:
        """``cmd`` completed for the VM of ``spec`` (its uuid and NICs are set; use
        ``cmd.model_copy(update=...)``); raising fails the start, which rolls back."""
        ...


async def before_start_vm(
    extensions: list[KVMStartVmExtensionPoint], spec: VmInstanceSpec, cmd: kvm.StartVmCmd
) -> kvm.StartVmCmd:
    """``cmd`` as every extension completed it, in order."""
    for ext in extensions:
        cmd = await ext.before_start_vm(spec, cmd)
    return cmd

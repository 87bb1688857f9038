"""NICs on L3 networks: made with an address from IPAM and a unique MAC, described for
the host agent, and removed with their addresses given back.

VMs and appliances both have NICs (``VmNicVO``); this module is the one place that
makes and deletes them.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts import kvm, names
from core.kernel.errors import operr
from core.kernel.extensions import ExtensionRegistry
from core.kvm.extension_points import KVMCompleteNicInformationExtensionPoint, NicKey, NicT
from core.network.l2.models import LINUX_BRIDGE, L2NetworkVO, L2VlanNetworkVO
from core.network.l2.no_vlan import L2_NO_VLAN
from core.network.l3.ipam import release_ip
from core.network.l3.models import L3NetworkVO, VmNicVO

VM_NIC = "VNIC"
APPLIANCE_NIC = "ApplianceVmNic"


def new_mac() -> str:
    """A random unicast, locally administered MAC (first octet 0xfa, as ZStack's)."""
    return "fa:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))


def tap_name(vm_uuid: str, device_id: int) -> str:
    """A VM NIC's tap on the host: ``zslt``, 9 hex digits of the VM's uuid, the device id."""
    if not 0 <= device_id < 100:
        raise operr("a VM has at most 100 NICs")
    return names.tap_name(vm_uuid, device_id)


def create_nic(
    session: Session,
    *,
    owner_uuid: str,
    l3_uuid: str,
    device_id: int,
    internal_name: str,
    used_ip: dict[str, Any] | None,
    ip: str | None = None,
    netmask: str | None = None,
    gateway: str | None = None,
    nic_type: str = VM_NIC,
    meta_data: str | None = None,
) -> dict[str, Any]:
    """A NIC row with a fresh MAC; its address is ``used_ip`` (from IPAM) or ``ip``."""
    for _attempt in range(8):
        nic = VmNicVO(
            name=f"eth{device_id}",
            vm_instance_uuid=owner_uuid,
            l3_network_uuid=l3_uuid,
            used_ip_uuid=used_ip["uuid"] if used_ip else None,
            ip=used_ip["ip"] if used_ip else ip,
            netmask=used_ip["netmask"] if used_ip else netmask,
            gateway=used_ip["gateway"] if used_ip else gateway,
            mac=new_mac(),
            device_id=device_id,
            internal_name=internal_name,
            type=nic_type,
            meta_data=meta_data,
        )
        try:
            with session.begin_nested():
                session.add(nic)
            return nic.to_inventory()
        except IntegrityError:  # a MAC clash (40 random bits): draw again
            continue
    raise operr("cannot draw an unused MAC address")


def delete_nics(session: Session, owner_uuid: str) -> list[dict[str, Any]]:
    """Delete every NIC of a VM or appliance and give their addresses back."""
    gone = []
    for nic in session.scalars(select(VmNicVO).where(VmNicVO.vm_instance_uuid == owner_uuid)):
        gone.append(nic.to_inventory())
        used = nic.used_ip_uuid
        session.delete(nic)
        session.flush()
        if used is not None:
            release_ip(session, used)
    return gone


def nics_of(session: Session, owner_uuid: str) -> list[dict[str, Any]]:
    """A VM's or appliance's NICs by device id, each with its network's ``bridgeName``,
    ``l2NetworkUuid``, ``l2NetworkType``, ``vSwitchType``, ``vlan`` (None but for a VLAN
    network), ``dnsDomain`` and ``category``."""
    rows = session.execute(
        select(
            VmNicVO,
            L3NetworkVO.l2_network_uuid,
            L3NetworkVO.dns_domain,
            L3NetworkVO.category,
            L2NetworkVO.bridge_name,
            L2NetworkVO.type,
            L2NetworkVO.v_switch_type,
            L2VlanNetworkVO.vlan,
        )
        .join(L3NetworkVO, L3NetworkVO.uuid == VmNicVO.l3_network_uuid)
        .join(L2NetworkVO, L2NetworkVO.uuid == L3NetworkVO.l2_network_uuid)
        .outerjoin(L2VlanNetworkVO, L2VlanNetworkVO.uuid == L2NetworkVO.uuid)
        .where(VmNicVO.vm_instance_uuid == owner_uuid)
        .order_by(VmNicVO.device_id)
    )
    return [
        {
            **nic.to_inventory(),
            "l2NetworkUuid": l2,
            "dnsDomain": domain,
            "category": category,
            "bridgeName": bridge,
            "l2NetworkType": l2_type,
            "vSwitchType": v_switch_type,
            "vlan": vlan,
        }
        for nic, l2, domain, category, bridge, l2_type, v_switch_type, vlan in rows
    ]


def complete_nic(registry: ExtensionRegistry, nic: dict[str, Any], to: NicT) -> NicT:
    """``to`` as the plugin for the NIC's (L2 type, vSwitch type) completes it
    (KVMCompleteNicInformationExtensionPoint); refused when no enabled plugin does."""
    # A NIC a journal of an older node recorded (before vSwitch types) is a Linux bridge port.
    key = NicKey(nic.get("l2NetworkType", L2_NO_VLAN), nic.get("vSwitchType", LINUX_BRIDGE))
    for ext in registry.extensions(KVMCompleteNicInformationExtensionPoint):
        if key in ext.nic_keys:
            return ext.complete_nic_information(nic, to)
    raise operr(
        f"no enabled plugin plugs NICs into {key.l2_network_type} networks with vSwitch "
        f"type {key.v_switch_type} (is the plugin of {key.v_switch_type} disabled?)"
    )


def agent_nics(registry: ExtensionRegistry, nics: list[dict[str, Any]]) -> list[kvm.NicTO]:
    """The ``nics`` of the host agent's /vm/start, completed by their networks' plugins."""
    return [
        complete_nic(
            registry,
            n,
            kvm.NicTO(mac=n["mac"], bridge_name=n["bridgeName"], device_name=n["internalName"]),
        )
        for n in nics
    ]

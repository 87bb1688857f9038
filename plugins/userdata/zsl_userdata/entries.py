"""What a router's metadata server should serve, computed from the database: one entry per
NIC of a (maybe) running VM on a guest network the router serves ``Userdata`` on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from core.network.l3.models import VmNicVO
from core.network.l3.spi import VM_NIC
from core.network.service.spi import services_of
from core.tag.models import SystemTagVO
from core.virtual_router.extension_points import VIRTUAL_ROUTER
from core.virtual_router.spi import SERVED_STATES, hostname_of
from core.vm.models import VmInstanceVO
from zsl_userdata.contract import SERVICE_TYPE, UserdataEntryTO
from zsl_userdata.tags import SSHKEY_PREFIX, USERDATA_PREFIX, split_tags


def served(session: Session, l3_uuid: str) -> bool:
    """Whether the virtual router serves user data on ``l3_uuid``."""
    return services_of(session, l3_uuid).get(SERVICE_TYPE) == VIRTUAL_ROUTER


def vm_tags(session: Session, vm_uuids: Iterable[str]) -> dict[str, list[str]]:
    """vm uuid -> its userdata and sshkey tags."""
    out: dict[str, list[str]] = {}
    uuids = list(vm_uuids)
    if not uuids:
        return out
    rows = session.execute(
        select(SystemTagVO.resource_uuid, SystemTagVO.tag).where(
            SystemTagVO.resource_uuid.in_(uuids),
            or_(
                SystemTagVO.tag.like(USERDATA_PREFIX + "%"),
                SystemTagVO.tag.like(SSHKEY_PREFIX + "%"),
            ),
        )
    )
    for uuid, tag in rows:
        out.setdefault(uuid, []).append(tag)
    return out


def entry(nic: dict[str, Any], vm_uuid: str, vm_name: str, tags: list[str]) -> UserdataEntryTO:
    user_data, keys = split_tags(tags)
    return UserdataEntryTO(
        ip=nic["ip"],
        mac=nic["mac"],
        vm_uuid=vm_uuid,
        hostname=hostname_of(vm_name, vm_uuid),
        user_data=user_data,
        ssh_keys=keys,
    )


def entries_of_vm(
    session: Session, vm_uuid: str, vm_name: str, nics: list[dict[str, Any]]
) -> list[UserdataEntryTO]:
    """The entries of a VM's NICs (all on one served network)."""
    tags = vm_tags(session, [vm_uuid]).get(vm_uuid, [])
    return [entry(nic, vm_uuid, vm_name, tags) for nic in nics if nic.get("ip")]


def all_entries(session: Session, l3_uuid: str) -> list[UserdataEntryTO]:
    """Every entry of the guest network: the NICs of VMs that may be running."""
    rows = session.execute(
        select(VmNicVO, VmInstanceVO.uuid, VmInstanceVO.name)
        .join(VmInstanceVO, VmInstanceVO.uuid == VmNicVO.vm_instance_uuid)
        .where(
            VmNicVO.l3_network_uuid == l3_uuid,
            VmNicVO.type == VM_NIC,
            VmInstanceVO.state.in_(SERVED_STATES),
        )
        .order_by(VmNicVO.ip)
    ).all()
    tags = vm_tags(session, {uuid for _, uuid, _ in rows})
    return [
        entry(nic.to_inventory(), uuid, name, tags.get(uuid, []))
        for nic, uuid, name in rows
        if nic.ip
    ]

"""Who uses a network: asked before an L2 is detached or an L3 deleted."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.network.l3.models import L3NetworkVO, VmNicVO
from core.vm.models import VmInstanceVO


def nics_on_l2_in_cluster(session: Session, l2_uuid: str, cluster_uuid: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(VmNicVO)
            .join(L3NetworkVO, L3NetworkVO.uuid == VmNicVO.l3_network_uuid)
            .join(VmInstanceVO, VmInstanceVO.uuid == VmNicVO.vm_instance_uuid)
            .where(
                L3NetworkVO.l2_network_uuid == l2_uuid,
                VmInstanceVO.cluster_uuid == cluster_uuid,
            )
        )
        or 0
    )


def nics_on_l3(session: Session, l3_uuid: str, except_vm: str | None = None) -> int:
    """VM NICs (not appliance NICs) on the L3 network, those of ``except_vm`` left out."""
    stmt = (
        select(func.count())
        .select_from(VmNicVO)
        .where(VmNicVO.l3_network_uuid == l3_uuid, VmNicVO.type == "VNIC")
    )
    if except_vm is not None:
        stmt = stmt.where(VmNicVO.vm_instance_uuid != except_vm)
    return int(session.scalar(stmt) or 0)

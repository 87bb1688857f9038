"""What a guest network's router should hold, read from the database: its VIPs, its
port-forwarding rules and its EIPs (those attached to NICs on that network)."""

from __future__ import annotations

from collections.abc import Collection
from ipaddress import IPv4Address, IPv4Network
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.network.l3.models import VmNicVO
from zsl_vip.contract import EipTO, PortForwardingRuleTO, VipTO
from zsl_vip.models import EipVO, PortForwardingRuleVO, VipVO

PORT_FORWARDING: Final = "PortForwarding"
EIP: Final = "Eip"


def attached_rules(
    session: Session, guest_l3: str, exclude: Collection[str] = ()
) -> list[PortForwardingRuleVO]:
    return [
        r
        for r in session.scalars(
            select(PortForwardingRuleVO)
            .join(VmNicVO, VmNicVO.uuid == PortForwardingRuleVO.vm_nic_uuid)
            .where(VmNicVO.l3_network_uuid == guest_l3)
            .order_by(PortForwardingRuleVO.create_date, PortForwardingRuleVO.uuid)
        )
        if r.uuid not in exclude
    ]


def attached_eips(session: Session, guest_l3: str, exclude: Collection[str] = ()) -> list[EipVO]:
    return [
        e
        for e in session.scalars(
            select(EipVO)
            .join(VmNicVO, VmNicVO.uuid == EipVO.vm_nic_uuid)
            .where(VmNicVO.l3_network_uuid == guest_l3)
            .order_by(EipVO.create_date, EipVO.uuid)
        )
        if e.uuid not in exclude
    ]


def router_vips(
    session: Session,
    guest_l3: str,
    *,
    extra: Collection[str] = (),
    exclude_rules: Collection[str] = (),
    exclude_eips: Collection[str] = (),
) -> list[VipTO]:
    """The VIPs the router holds: those of the attached rules and EIPs (but the excluded,
    which are being detached), and ``extra`` (being attached)."""
    uuids = {r.vip_uuid for r in attached_rules(session, guest_l3, exclude_rules)}
    uuids |= {e.vip_uuid for e in attached_eips(session, guest_l3, exclude_eips)}
    uuids |= set(extra)
    vips = session.scalars(select(VipVO).where(VipVO.uuid.in_(uuids)).order_by(VipVO.ip))
    return [VipTO(vip_uuid=v.uuid, ip=IPv4Address(v.ip)) for v in vips]


def rule_to(rule: PortForwardingRuleVO, guest_ip: str) -> PortForwardingRuleTO:
    return PortForwardingRuleTO(
        uuid=rule.uuid,
        vip_ip=IPv4Address(rule.vip_ip),
        vip_port_start=rule.vip_port_start,
        vip_port_end=rule.vip_port_end,
        private_ip=IPv4Address(guest_ip),
        private_port_start=rule.private_port_start,
        private_port_end=rule.private_port_end,
        protocol_type="TCP" if rule.protocol_type == "TCP" else "UDP",
        allowed_cidr=IPv4Network(rule.allowed_cidr) if rule.allowed_cidr else None,
    )


def eip_to(eip: EipVO, guest_ip: str, public_mac: str) -> EipTO:
    return EipTO(
        uuid=eip.uuid,
        vip_ip=IPv4Address(eip.vip_ip),
        guest_ip=IPv4Address(guest_ip),
        public_mac=public_mac,
    )


def router_rules(
    session: Session, guest_l3: str, exclude: Collection[str] = ()
) -> list[PortForwardingRuleTO]:
    return [
        rule_to(r, r.guest_ip)
        for r in attached_rules(session, guest_l3, exclude)
        if r.guest_ip is not None
    ]


def router_eips(
    session: Session, guest_l3: str, public_mac: str, exclude: Collection[str] = ()
) -> list[EipTO]:
    return [
        eip_to(e, e.guest_ip, public_mac)
        for e in attached_eips(session, guest_l3, exclude)
        if e.guest_ip is not None
    ]


def in_use(session: Session, vip_uuid: str) -> bool:
    """Whether an attached rule or EIP uses the VIP."""
    rule = session.scalar(
        select(PortForwardingRuleVO.uuid).where(
            PortForwardingRuleVO.vip_uuid == vip_uuid, PortForwardingRuleVO.vm_nic_uuid.is_not(None)
        )
    )
    eip = session.scalar(
        select(EipVO.uuid).where(EipVO.vip_uuid == vip_uuid, EipVO.vm_nic_uuid.is_not(None))
    )
    return rule is not None or eip is not None


def refresh_vip(session: Session, vip_uuid: str) -> None:
    """Set a VIP's ``useFor`` and ``peerL3NetworkUuid`` from what uses it now."""
    vip = session.get(VipVO, vip_uuid)
    if vip is None:
        return
    rules = list(
        session.scalars(
            select(PortForwardingRuleVO).where(PortForwardingRuleVO.vip_uuid == vip_uuid)
        )
    )
    eips = list(session.scalars(select(EipVO).where(EipVO.vip_uuid == vip_uuid)))
    vip.use_for = ",".join(kind for kind, users in ((PORT_FORWARDING, rules), (EIP, eips)) if users)
    nics = [x.vm_nic_uuid for x in rules if x.vm_nic_uuid is not None]
    nics += [x.vm_nic_uuid for x in eips if x.vm_nic_uuid is not None]
    peer = session.get(VmNicVO, nics[0]) if nics else None
    vip.peer_l3_network_uuid = peer.l3_network_uuid if peer is not None else None

"""ZStack's rules for port forwarding and EIPs (its PortForwardingApiInterceptor and
EipApiInterceptor), checked in the transaction that writes the change."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import argerr, operr
from core.network.l3.models import L3NetworkVO, VmNicVO
from core.network.service.spi import services_of
from core.virtual_router.extension_points import VIRTUAL_ROUTER, VirtualRouterAccess
from zsl_vip.contract import MAX_SHIFTED_PORTS
from zsl_vip.models import EipVO, PortForwardingRuleVO, VipVO
from zsl_vip.state import EIP, PORT_FORWARDING


@dataclass(frozen=True)
class Ports:
    vip_start: int
    vip_end: int
    private_start: int
    private_end: int


def ports(
    vip_start: int, vip_end: int | None, private_start: int | None, private_end: int | None
) -> Ports:
    """ZStack's defaults (an end is its start; the private range is the VIP range), then
    ascending ranges of one size."""
    vip_end = vip_start if vip_end is None else vip_end
    if private_start is None:
        private_start, private_end = vip_start, vip_end
    elif private_end is None:
        private_end = private_start + (vip_end - vip_start)
    if vip_end < vip_start:
        raise argerr(f"vipPortEnd {vip_end} is below vipPortStart {vip_start}")
    if private_end < private_start:
        raise argerr(f"privatePortEnd {private_end} is below privatePortStart {private_start}")
    if vip_end - vip_start != private_end - private_start:
        raise argerr(
            f"the VIP range {vip_start}-{vip_end} has {vip_end - vip_start + 1} ports and the "
            f"private range {private_start}-{private_end} has {private_end - private_start + 1}; "
            "they must be the same size"
        )
    if private_end > 65535:
        raise argerr(f"the private range {private_start}-{private_end} ends above 65535")
    if vip_start != private_start and vip_end - vip_start + 1 > MAX_SHIFTED_PORTS:
        raise argerr(
            f"a range forwarded to other ports has at most {MAX_SHIFTED_PORTS} ports (the "
            "same ports on both sides have no limit)"
        )
    return Ports(vip_start, vip_end, private_start, private_end)


def allowed_cidr(text: str | None) -> str | None:
    if not text:
        return None
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argerr(f"allowedCidr {text!r} is not a CIDR such as 192.168.1.0/24") from None
    if network.version != 4:
        raise argerr(f"allowedCidr {text}: only IPv4 is supported")
    return str(network)


def check_new_rule(session: Session, vip: VipVO, p: Ports, protocol: str) -> None:
    if EIP in vip.use_for.split(","):
        raise operr(f"VIP {vip.name} ({vip.ip}) is an EIP's; an EIP's VIP is its alone")
    for other in session.scalars(
        select(PortForwardingRuleVO).where(
            PortForwardingRuleVO.vip_uuid == vip.uuid,
            PortForwardingRuleVO.protocol_type == protocol,
        )
    ):
        if other.vip_port_start <= p.vip_end and p.vip_start <= other.vip_port_end:
            raise operr(
                f"{protocol} ports {p.vip_start}-{p.vip_end} of VIP {vip.ip} overlap rule "
                f"{other.name} ({other.vip_port_start}-{other.vip_port_end})"
            )


def guest_nic(session: Session, nic_uuid: str) -> VmNicVO:
    nic = session.get(VmNicVO, nic_uuid)
    if nic is None or nic.type != "VNIC":
        raise argerr(f"vmNicUuid {nic_uuid} is not a VM's NIC")
    if nic.ip is None:
        raise argerr(f"NIC {nic_uuid} has no IP address")
    return nic


def check_nic_for(
    session: Session, access: VirtualRouterAccess, vip: VipVO, nic: VmNicVO, service: str
) -> None:
    """The NIC can be reached through the VIP: another network than the VIP's, served
    ``service`` by the virtual router, whose router's public network is the VIP's, and
    the network the VIP already serves (if any)."""
    l3 = session.get(L3NetworkVO, nic.l3_network_uuid)
    assert l3 is not None
    if nic.l3_network_uuid == vip.l3_network_uuid:
        raise argerr(f"the NIC is on L3 network {l3.name}, the VIP's own network")
    if services_of(session, l3.uuid).get(service) != VIRTUAL_ROUTER:
        raise operr(
            f"L3 network {l3.name} does not get {service} from the virtual router; "
            f"AttachNetworkServiceToL3Network with {service} first"
        )
    public = access.public_network_of(session, l3.uuid)
    if public != vip.l3_network_uuid:
        raise operr(
            f"the virtual router of L3 network {l3.name} has no address on the VIP's network "
            "(its offering names another public network)"
        )
    if vip.peer_l3_network_uuid not in (None, l3.uuid):
        raise operr(
            f"VIP {vip.ip} serves another guest network already; a VIP is held by one router"
        )


def check_rule_attach(
    session: Session, access: VirtualRouterAccess, rule: PortForwardingRuleVO, nic: VmNicVO
) -> None:
    if rule.vm_nic_uuid is not None:
        raise operr(f"port forwarding rule {rule.name} is attached already; detach it first")
    vip = session.get(VipVO, rule.vip_uuid)
    assert vip is not None
    check_nic_for(session, access, vip, nic, PORT_FORWARDING)
    others = session.scalars(
        select(PortForwardingRuleVO).where(
            PortForwardingRuleVO.vm_nic_uuid == nic.uuid,
            PortForwardingRuleVO.vip_uuid != rule.vip_uuid,
        )
    ).first()
    if others is not None:
        raise operr(
            f"the NIC's port forwarding uses VIP {others.vip_ip} already; all rules of one "
            "NIC use one VIP"
        )
    if rule.allowed_cidr:
        eip = session.scalars(select(EipVO).where(EipVO.vm_nic_uuid == nic.uuid)).first()
        if eip is not None:
            raise operr(
                f"the NIC has EIP {eip.vip_ip}; a rule with allowedCidr cannot be attached to it"
            )


def check_eip_attach(
    session: Session, access: VirtualRouterAccess, eip: EipVO, nic: VmNicVO
) -> None:
    if eip.vm_nic_uuid is not None:
        raise operr(f"EIP {eip.name} is attached already; detach it first")
    vip = session.get(VipVO, eip.vip_uuid)
    assert vip is not None
    check_nic_for(session, access, vip, nic, EIP)
    other = session.scalars(select(EipVO).where(EipVO.vm_nic_uuid == nic.uuid)).first()
    if other is not None:
        raise operr(f"the NIC has EIP {other.vip_ip} already; one EIP per NIC")
    restricted = session.scalars(
        select(PortForwardingRuleVO).where(
            PortForwardingRuleVO.vm_nic_uuid == nic.uuid,
            PortForwardingRuleVO.allowed_cidr.is_not(None),
        )
    ).first()
    if restricted is not None:
        raise operr(
            f"port forwarding rule {restricted.name} of the NIC has an allowedCidr; a NIC with "
            "such a rule takes no EIP"
        )

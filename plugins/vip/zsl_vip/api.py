"""The plugin's API messages, with ZStack's names and parameters."""

from __future__ import annotations

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from zsl_vip.models import EipVO, PortForwardingRuleVO, VipVO

PORTS = (1, 65535)
PROTOCOLS = ("TCP", "UDP")


class CreateVip(ApiMessage):
    """An address of a public network for port forwarding or an EIP (``requiredIp``, or
    the lowest free one).  Nothing happens in a router until a rule or EIP on it is
    attached to a guest NIC."""

    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    l3_network_uuid: str = param(required=True, resource_type="L3NetworkVO")
    required_ip: str = param(max_length=64)


class DeleteVip(ApiMessage):
    uuid: str = param(required=True, resource_type="VipVO")


class QueryVip(QueryMessage):
    model = VipVO


class CreatePortForwardingRule(ApiMessage):
    """VIP ports forwarded to a guest NIC's ports; with ``vmNicUuid`` attached at once.
    The private range defaults to the VIP range; an end port defaults to its start."""

    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    vip_uuid: str = param(required=True, resource_type="VipVO")
    vip_port_start: int = param(required=True, number_range=PORTS)
    vip_port_end: int = param(number_range=PORTS)
    private_port_start: int = param(number_range=PORTS)
    private_port_end: int = param(number_range=PORTS)
    protocol_type: str = param(required=True, valid_values=PROTOCOLS)
    allowed_cidr: str = param(max_length=64, description="only these sources are forwarded")
    vm_nic_uuid: str = param(resource_type="VmNicVO")
    timeout = 120.0


class AttachPortForwardingRule(ApiMessage):
    rule_uuid: str = param(required=True, resource_type="PortForwardingRuleVO")
    vm_nic_uuid: str = param(required=True, resource_type="VmNicVO")
    timeout = 120.0


class DetachPortForwardingRule(ApiMessage):
    uuid: str = param(required=True, resource_type="PortForwardingRuleVO")
    timeout = 120.0


class DeletePortForwardingRule(ApiMessage):
    uuid: str = param(required=True, resource_type="PortForwardingRuleVO")
    timeout = 120.0


class QueryPortForwardingRule(QueryMessage):
    model = PortForwardingRuleVO


class CreateEip(ApiMessage):
    """A VIP as a guest NIC's own public address: inbound to the VIP reaches the guest,
    and the guest's outbound traffic leaves as the VIP.  The VIP must be unused."""

    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    vip_uuid: str = param(required=True, resource_type="VipVO")
    vm_nic_uuid: str = param(resource_type="VmNicVO")
    timeout = 120.0


class AttachEip(ApiMessage):
    eip_uuid: str = param(required=True, resource_type="EipVO")
    vm_nic_uuid: str = param(required=True, resource_type="VmNicVO")
    timeout = 120.0


class DetachEip(ApiMessage):
    uuid: str = param(required=True, resource_type="EipVO")
    timeout = 120.0


class DeleteEip(ApiMessage):
    uuid: str = param(required=True, resource_type="EipVO")
    timeout = 120.0


class QueryEip(QueryMessage):
    model = EipVO

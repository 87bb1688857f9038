"""The security-group APIs, with ZStack's names.

Every change runs in one queue (``SecurityGroups``): a change reaches every affected host
before the API replies, and two changes never race to a host with different states.

``AddSecurityGroupRule`` takes one rule as flat parameters (``zcli AddSecurityGroupRule
securityGroupUuid=web type=Ingress protocol=TCP startPort=80 endPort=80
remoteSecurityGroupUuid=clients``): ZStack's ``rules`` list of objects has no form among
this API layer's parameter kinds (strings, numbers, lists of strings, maps).
"""

from __future__ import annotations

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from zsl_securitygroup.models import (
    SecurityGroupRuleVO,
    SecurityGroupVO,
    VmNicSecurityGroupRefVO,
)

QUEUE = "SecurityGroups"
PORT_RANGE = (-1, 65535)


class _Change(ApiMessage):
    def sync_signature(self) -> str:
        return QUEUE


class CreateSecurityGroup(_Change):
    """A group with no rules: its NICs get the default policies
    (``securityGroup.ingress.defaultPolicy``, ``securityGroup.egress.defaultPolicy``)."""

    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    ip_version: int = param(default=4, valid_values=(4,))


class DeleteSecurityGroup(_Change):
    """Delete a group with its rules, its NICs' and L3 networks' references, and the
    rules of other groups that name it as remote."""

    uuid: str = param(required=True, resource_type="SecurityGroupVO")


class AddSecurityGroupRule(_Change):
    """Add one rule: Ingress (who may reach the group's NICs) or Egress (whom they may
    reach), a protocol, a port range for TCP and UDP, and a peer: ``allowedCidr`` or
    ``remoteSecurityGroupUuid`` (the addresses of that group's NICs)."""

    security_group_uuid: str = param(required=True, resource_type="SecurityGroupVO")
    type: str = param(required=True, valid_values=("Ingress", "Egress"))
    protocol: str = param(required=True, valid_values=("TCP", "UDP", "ICMP", "ALL"))
    start_port: int = param(default=-1, number_range=PORT_RANGE)
    end_port: int = param(default=-1, number_range=PORT_RANGE)
    allowed_cidr: str = param(max_length=64, description="e.g. 10.0.10.0/24 (default: any)")
    remote_security_group_uuid: str = param(resource_type="SecurityGroupVO")


class DeleteSecurityGroupRule(_Change):
    """Delete rules by uuid."""

    rule_uuids: list[str] = param(required=True, non_empty=True)


class AddVmNicToSecurityGroup(_Change):
    """Put VM NICs in a group; the group must be attached to each NIC's L3 network."""

    security_group_uuid: str = param(required=True, resource_type="SecurityGroupVO")
    vm_nic_uuids: list[str] = param(required=True, non_empty=True, resource_type="VmNicVO")


class DeleteVmNicFromSecurityGroup(_Change):
    security_group_uuid: str = param(required=True, resource_type="SecurityGroupVO")
    vm_nic_uuids: list[str] = param(required=True, non_empty=True, resource_type="VmNicVO")


class AttachSecurityGroupToL3Network(_Change):
    """Let the NICs of an L3 network join the group."""

    security_group_uuid: str = param(required=True, resource_type="SecurityGroupVO")
    l3_network_uuid: str = param(required=True, resource_type="L3NetworkVO")


class DetachSecurityGroupFromL3Network(_Change):
    """The group's NICs on the L3 network leave it."""

    security_group_uuid: str = param(required=True, resource_type="SecurityGroupVO")
    l3_network_uuid: str = param(required=True, resource_type="L3NetworkVO")


class QuerySecurityGroup(QueryMessage):
    model = SecurityGroupVO


class QuerySecurityGroupRule(QueryMessage):
    model = SecurityGroupRuleVO


class QueryVmNicInSecurityGroup(QueryMessage):
    model = VmNicSecurityGroupRefVO

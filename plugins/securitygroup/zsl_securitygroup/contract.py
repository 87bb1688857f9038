"""What the core sends the host agent about security groups, and the names of the
nftables tables the agent makes for them.

One command carries a host's whole state for one lab (every NIC of a group on that host,
the groups those NICs are in, and the addresses of the remote groups their rules name):
the agent replaces its table with it in one nft transaction, so there is no partial
update to get wrong and a reconnect is the same call as a change.
"""

from __future__ import annotations

from typing import Final, Literal

from contracts.base import Ack, Reply, Request, Wire
from contracts.names import lab_table_name

APPLY: Final = "/securitygroup/apply"
"""{nics, groups, remoteMembers, ingressPolicy, egressPolicy} -> {}: the host's whole
security-group state for the agent's lab (an empty ``nics`` removes its tables)."""

SHOW: Final = "/securitygroup/show"
"""{} -> {ruleset, nics}: the lab's tables as applied (``nft list`` text on KVM, the
rendered text on the simulator) and the taps that have chains."""

TABLE_PREFIX: Final = "zsl_sg_"
"""``bridge zsl_sg_<lab>``: the per-NIC chains of a lab (the lab id from contracts.names)."""
CT_TABLE_PREFIX: Final = "zsl_sgct_"
"""``inet zsl_sgct_<lab>``: marks established/related packets for the bridge table (this
kernel has no conntrack in the bridge family; br_netfilter passes bridged IPv4 packets
through the inet hooks, where conntrack works)."""

RuleType = Literal["Ingress", "Egress"]
Protocol = Literal["TCP", "UDP", "ICMP", "ALL"]
Policy = Literal["accept", "drop"]


def table_name(lab: str) -> str:
    return lab_table_name(TABLE_PREFIX, lab)


def ct_table_name(lab: str) -> str:
    return lab_table_name(CT_TABLE_PREFIX, lab)


class RuleTO(Wire):
    """One rule of a group.  Exactly one of ``allowed_cidr`` and ``remote_group_uuid``
    says who the peer is (the source of an Ingress rule, the destination of an Egress
    one); ports apply to TCP and UDP only."""

    uuid: str
    type: RuleType
    protocol: Protocol
    start_port: int = -1
    end_port: int = -1
    allowed_cidr: str = ""
    remote_group_uuid: str = ""


class GroupTO(Wire):
    uuid: str
    rules: list[RuleTO] = []


class SgNicTO(Wire):
    """A NIC in one or more groups: its tap, its own addresses (anti-spoofing) and its
    router's address (DHCP and DNS to it always pass)."""

    uuid: str
    tap: str
    mac: str
    ip: str
    gateway: str = ""
    group_uuids: list[str]


class ApplyCmd(Request[Ack]):
    PATH = APPLY
    nics: list[SgNicTO] = []
    groups: list[GroupTO] = []
    remote_members: dict[str, list[str]] = {}
    """Group uuid -> the addresses of its NICs, for every group a rule names as remote."""
    ingress_policy: Policy = "drop"
    egress_policy: Policy = "accept"


class ShowRsp(Reply):
    ruleset: str = ""
    taps: list[str] = []


class ShowCmd(Request[ShowRsp]):
    PATH = SHOW

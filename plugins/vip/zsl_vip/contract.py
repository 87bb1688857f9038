"""The router agent's commands this plugin adds, and the names it owns in the appliance.

Every VIP, rule and EIP is known by its uuid on the wire and in the appliance (each nft
rule's comment is ``pf=<uuid>`` or ``eip=<uuid>``), so a replay can be compared rule by
rule.  ``sync`` commands replace the whole state of their kind; ``apply`` adds or replaces
entries by uuid; ``revoke`` removes them (unknown uuids are fine).  Each command is one
nftables transaction in the appliance.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from contracts.base import Ack, Request, Wire

NFT_TABLE: Final = "zsl_vr_vip"
"""The appliance's nftables table (family ``ip``) of port forwarding and EIPs."""

VIP_SYNC: Final = "/vip/sync"
"""{publicMac, vips} -> {}: the appliance holds exactly these VIPs, as /32 addresses on its
public interface (``publicMac``), each announced by gratuitous ARP when added; any other
/32 address there is removed."""
PF_SYNC: Final = "/portforwarding/sync"
PF_APPLY: Final = "/portforwarding/apply"
PF_REVOKE: Final = "/portforwarding/revoke"
EIP_SYNC: Final = "/eip/sync"
EIP_APPLY: Final = "/eip/apply"
EIP_REVOKE: Final = "/eip/revoke"

_MAC = r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"
_UUID = r"^[0-9a-f]{32}$"
MAX_SHIFTED_PORTS: Final = 1024
"""A rule whose VIP and private ranges start at different ports is one NAT entry per port:
at most this many."""


class VipTO(Wire):
    vip_uuid: str = Field(pattern=_UUID)
    ip: IPv4Address


class PortForwardingRuleTO(Wire):
    uuid: str = Field(pattern=_UUID)
    vip_ip: IPv4Address
    vip_port_start: int = Field(ge=1, le=65535)
    vip_port_end: int = Field(ge=1, le=65535)
    private_ip: IPv4Address
    private_port_start: int = Field(ge=1, le=65535)
    private_port_end: int = Field(ge=1, le=65535)
    protocol_type: Literal["TCP", "UDP"]
    allowed_cidr: IPv4Network | None = None
    """Only sources in it are forwarded; others are refused by the appliance."""

    @model_validator(mode="after")
    def _ranges(self) -> PortForwardingRuleTO:
        vip = self.vip_port_end - self.vip_port_start
        private = self.private_port_end - self.private_port_start
        if vip < 0 or private < 0 or vip != private:
            raise ValueError(
                f"rule {self.uuid}: port ranges {self.vip_port_start}-{self.vip_port_end} and "
                f"{self.private_port_start}-{self.private_port_end} must be ascending and "
                "of one size"
            )
        if self.vip_port_start != self.private_port_start and vip + 1 > MAX_SHIFTED_PORTS:
            raise ValueError(
                f"rule {self.uuid}: a range forwarded to other ports has at most "
                f"{MAX_SHIFTED_PORTS} ports, not {vip + 1}"
            )
        return self


class EipTO(Wire):
    uuid: str = Field(pattern=_UUID)
    vip_ip: IPv4Address
    guest_ip: IPv4Address
    public_mac: str = Field(pattern=_MAC)
    """The appliance's public interface: the guest's traffic leaving by it takes the EIP."""


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} names {value} twice")
        seen.add(value)


class SyncVipCmd(Request[Ack]):
    PATH = VIP_SYNC
    public_mac: str = Field(pattern=_MAC)
    vips: list[VipTO] = Field(max_length=4096)

    @field_validator("vips")
    @classmethod
    def _once(cls, vips: list[VipTO]) -> list[VipTO]:
        _unique([v.vip_uuid for v in vips], "vips")
        _unique([str(v.ip) for v in vips], "vips")
        return vips


class SyncPortForwardingCmd(Request[Ack]):
    PATH = PF_SYNC
    rules: list[PortForwardingRuleTO] = Field(max_length=65536)

    @field_validator("rules")
    @classmethod
    def _once(cls, rules: list[PortForwardingRuleTO]) -> list[PortForwardingRuleTO]:
        _unique([r.uuid for r in rules], "rules")
        return rules


class ApplyPortForwardingCmd(SyncPortForwardingCmd):
    PATH = PF_APPLY


class RevokePortForwardingCmd(Request[Ack]):
    PATH = PF_REVOKE
    uuids: list[str] = Field(max_length=65536)


class SyncEipCmd(Request[Ack]):
    PATH = EIP_SYNC
    eips: list[EipTO] = Field(max_length=4096)

    @field_validator("eips")
    @classmethod
    def _once(cls, eips: list[EipTO]) -> list[EipTO]:
        _unique([e.uuid for e in eips], "eips")
        _unique([str(e.vip_ip) for e in eips], "eips")
        _unique([str(e.guest_ip) for e in eips], "eips")
        return eips


class ApplyEipCmd(SyncEipCmd):
    PATH = EIP_APPLY


class RevokeEipCmd(Request[Ack]):
    PATH = EIP_REVOKE
    uuids: list[str] = Field(max_length=4096)

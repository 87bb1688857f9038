"""Public networks whose gateway is the host itself (system tag ``hostNat``).

The default public network made at first start works on any host without
configuration: its L2 network is an isolated bridge, the host holds the gateway
address on that bridge and forwards and masquerades the network's traffic through
its own routes, in the nftables table the host agent owns (``inet zsl_host_nat``,
contracts.kvm.HOSTNAT_SET).  The entries are set when the L3 network gets its
IP range and on every host connect, and removed with the range or the network.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from core.host.connect import HostConnectData
from core.host.models import HostVO
from core.host.plugin import HostPlugin
from core.kernel.flow import NoRollbackFlow
from core.network.l2.models import L2NetworkClusterRefVO, L2NetworkVO
from core.network.l3.models import IpRangeVO, L3NetworkVO
from core.network.l3.system_tags import HOST_NAT
from core.tag.models import SystemTagVO

log = logging.getLogger(__name__)


def host_nat_entries(
    session: Session,
    *,
    l3_uuid: str | None = None,
    host_uuid: str | None = None,
    connected_only: bool = True,
) -> list[tuple[str, dict[str, str]]]:
    """``(host uuid, {bridgeName, gatewayCidr})`` for every Connected host that should
    hold a host NAT gateway (of one L3 network, or on one host).  ``connected_only=False``
    for the host connect chain: the connecting host is still Connecting then."""
    stmt = (
        select(HostVO.uuid, L2NetworkVO.bridge_name, IpRangeVO.gateway, IpRangeVO.prefix_len)
        .select_from(L3NetworkVO)
        .join(SystemTagVO, SystemTagVO.resource_uuid == L3NetworkVO.uuid)
        .join(L2NetworkVO, L2NetworkVO.uuid == L3NetworkVO.l2_network_uuid)
        .join(IpRangeVO, IpRangeVO.l3_network_uuid == L3NetworkVO.uuid)
        .join(L2NetworkClusterRefVO, L2NetworkClusterRefVO.l2_network_uuid == L2NetworkVO.uuid)
        .join(HostVO, HostVO.cluster_uuid == L2NetworkClusterRefVO.cluster_uuid)
        .where(SystemTagVO.tag_is(HOST_NAT.pattern))
        .distinct()
    )
    if connected_only:
        stmt = stmt.where(HostVO.status == "Connected")
    if l3_uuid is not None:
        stmt = stmt.where(L3NetworkVO.uuid == l3_uuid)
    if host_uuid is not None:
        stmt = stmt.where(HostVO.uuid == host_uuid)
    return [
        (host, {"bridgeName": bridge, "gatewayCidr": f"{gateway}/{prefix}"})
        for host, bridge, gateway, prefix in session.execute(stmt)
    ]


def is_host_nat(session: Session, l3_uuid: str) -> bool:
    return (
        session.scalar(
            select(SystemTagVO.uuid).where(
                SystemTagVO.resource_uuid == l3_uuid, SystemTagVO.tag_is(HOST_NAT.pattern)
            )
        )
        is not None
    )


async def set_host_nat(node: Any, entries: list[tuple[str, dict[str, str]]]) -> None:
    hosts = node.plugin(HostPlugin)
    for host_uuid, body in entries:
        await (await hosts.agent_of(host_uuid)).send(kvm.SetHostNatCmd.model_validate(body))


async def remove_host_nat(node: Any, entries: list[tuple[str, dict[str, str]]]) -> None:
    """Best effort: a host that cannot be reached now keeps the entry (its gateway
    address and rules) until it is removed by hand or by a reset."""
    hosts = node.plugin(HostPlugin)
    for host_uuid, body in entries:
        try:
            cmd = kvm.RemoveHostNatCmd.model_validate(body)
            await (await hosts.agent_of(host_uuid)).send(cmd)
        except Exception as exc:
            log.warning("cannot remove host NAT %s on host %s: %s", body, host_uuid, exc)


class HostNatOnHostConnectFlow(NoRollbackFlow):
    """A connecting host gets the gateways of the host-NAT networks of its cluster (set
    anew: an address or a rule removed by hand while the host was away comes back)."""

    async def run(self, data: HostConnectData) -> None:  # type: ignore[override]
        node, host_uuid = data.node, data.host_uuid
        entries = await node.db.run(
            lambda s: host_nat_entries(s, host_uuid=host_uuid, connected_only=False)
        )
        await set_host_nat(node, entries)

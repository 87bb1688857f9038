"""The appliance flows (ZStack's appliance VM chain) for the namespace backend: NICs
from the database, then the namespace, veths and agent made by the host agent.

They run over :class:`ApplianceData` (a chain's data class derives from it, e.g. the
virtual router's ``RouterData``).  The chains are durable: after a crash a rollback runs
from the journal's record, for a step that may have done none, part or all of its work.
So every rollback finds what to undo by the appliance's uuid (its row, its NICs, its
namespace and agent on the host) and undoing twice is harmless.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from contracts.names import veth_name
from core.appliance.models import ApplianceVmVO
from core.host.plugin import HostPlugin
from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow
from core.kernel.flow_data import FlowData
from core.kernel.rest import AgentClient
from core.network.l3.ipam import allocate_ip, prefix_length
from core.network.l3.models import IpRangeVO
from core.network.l3.nics import APPLIANCE_NIC, complete_nic, create_nic, delete_nics, nics_of
from core.tag.plugin import delete_all_tags

GUEST = "guest"
"""A NIC that is its network's gateway (it takes the range's gateway address)."""


class ApplianceData(FlowData):
    """What the appliance flows share."""

    appliance: dict[str, Any]
    """The ApplianceVmVO inventory, as the last flow that changed the row left it."""
    networks: list[tuple[str, str]] = []
    """Create: ``[l3 uuid, role]`` of each NIC to make, public first."""
    nics: dict[str, dict[str, Any]] = {}
    """Role -> NIC (``nics_of``), once allocated (create) or read (reconnect)."""

    def hosts(self) -> list[str]:
        host = self.appliance.get("hostUuid")
        return [host] if host else []


async def _agent(data: ApplianceData) -> AgentClient:
    return await data.node.plugin(HostPlugin).agent_of(data.appliance["hostUuid"])


def nics_by_role(session: Session, appliance_uuid: str) -> dict[str, dict[str, Any]]:
    """An appliance's NICs by role (``public``, ``guest``)."""
    return {nic["metaData"]: nic for nic in nics_of(session, appliance_uuid)}


def forget_appliance(session: Session, uuid: str) -> bool:
    """Delete an appliance's row and tags (no-op if gone); whether the row was there."""
    row = session.get(ApplianceVmVO, uuid)
    if row is not None:
        session.delete(row)
    delete_all_tags(session, [uuid])
    return row is not None


class ApplianceVmRowFlow(Flow):
    """The appliance's row, made (in ``Creating``) by the caller just before the chain:
    its rollback, the chain's last, takes the row away, so a failed or interrupted
    create leaves no appliance behind."""

    async def run(self, data: ApplianceData) -> None:  # type: ignore[override]
        return None

    async def rollback(self, data: ApplianceData) -> None:  # type: ignore[override]
        uuid = data.appliance["uuid"]
        await data.node.db.run(lambda s: forget_appliance(s, uuid))


class ApplianceVmAllocateNicFlow(Flow):
    """One NIC per network: a guest NIC takes its network's gateway address, any other
    an address from IPAM.  Undone by the appliance's uuid (its NICs' owner)."""

    async def run(self, data: ApplianceData) -> None:  # type: ignore[override]
        appliance = data.appliance

        def allocate(session: Session) -> dict[str, dict[str, Any]]:
            for device_id, (l3_uuid, role) in enumerate(data.networks):
                name = veth_name(appliance["uuid"], device_id)
                common = {
                    "owner_uuid": appliance["uuid"],
                    "l3_uuid": l3_uuid,
                    "device_id": device_id,
                    "internal_name": name,
                    "nic_type": APPLIANCE_NIC,
                    "meta_data": role,
                }
                if role == GUEST:
                    r = session.scalars(
                        select(IpRangeVO).where(IpRangeVO.l3_network_uuid == l3_uuid)
                    ).first()
                    if r is None:
                        raise operr(f"L3 network {l3_uuid} has no IP range, so no gateway")
                    create_nic(
                        session,
                        **common,
                        used_ip=None,
                        ip=r.gateway,
                        netmask=r.netmask,
                        gateway=r.gateway,
                    )
                else:
                    used = allocate_ip(session, l3_uuid, "ApplianceVmNic")
                    create_nic(session, **common, used_ip=used)
            return nics_by_role(session, appliance["uuid"])

        data.nics = await data.node.db.run(allocate)

    async def rollback(self, data: ApplianceData) -> None:  # type: ignore[override]
        uuid = data.appliance["uuid"]
        await data.node.db.run(lambda s: delete_nics(s, uuid))
        data.nics = {}


def _create_cmd(data: ApplianceData) -> kvm.CreateApplianceCmd:
    nics = sorted(data.nics.values(), key=lambda n: n["deviceId"])
    public = [n for n in nics if n["metaData"] != GUEST]
    return kvm.CreateApplianceCmd(
        appliance_uuid=data.appliance["uuid"],
        nics=[
            complete_nic(
                data.node.registry,
                n,
                kvm.ApplianceNicTO(
                    bridge_name=n["bridgeName"],
                    mac=n["mac"],
                    ip=n["ip"],
                    prefix_length=prefix_length(n["netmask"]),
                    role="guest" if n["metaData"] == GUEST else "public",
                ),
            )
            for n in nics
        ],
        default_gateway=public[0]["gateway"] if public else "",
    )


async def _create_on_host(data: ApplianceData) -> None:
    """APPLIANCE_CREATE (make what is missing), and where the host agent put the
    appliance's agent written on its row."""
    answer = await (await _agent(data)).send(_create_cmd(data), timeout=90)
    uuid = data.appliance["uuid"]

    def record(session: Session) -> dict[str, Any]:
        row = session.get(ApplianceVmVO, uuid)
        if row is None:
            raise operr(f"appliance {data.appliance['name']} is gone")
        row.namespace = answer.namespace or None
        row.agent_socket_path = answer.socket_path
        row.agent_token_file = answer.token_file
        row.agent_pid = answer.agent_pid
        return row.to_inventory()

    data.appliance = await data.node.db.run(record)


async def destroy_on_host(data: ApplianceData) -> None:
    """The host agent ends the appliance's processes and removes its veths, namespace and
    directory; an appliance it does not have (never made, or gone already) is fine."""
    cmd = kvm.DestroyApplianceCmd(appliance_uuid=data.appliance["uuid"])
    await (await _agent(data)).send(cmd, timeout=90)


class ApplianceVmCreateOnHostFlow(Flow):
    """The host agent makes the namespace, a veth per NIC into its bridge, and starts the
    appliance's agent; undone by destroying all of it (whatever part of it exists)."""

    async def run(self, data: ApplianceData) -> None:  # type: ignore[override]
        await _create_on_host(data)

    async def rollback(self, data: ApplianceData) -> None:  # type: ignore[override]
        await destroy_on_host(data)


class ApplianceVmEnsureOnHostFlow(NoRollbackFlow):
    """Reconnect: the host agent makes whatever is missing (the namespace after a host
    reboot, a veth deleted by hand, a dead agent) and leaves the rest (so running it
    again after a crash is harmless)."""

    async def run(self, data: ApplianceData) -> None:  # type: ignore[override]
        uuid = data.appliance["uuid"]
        data.nics = await data.node.db.run(lambda s: nics_by_role(s, uuid))
        await _create_on_host(data)


class ApplianceVmDestroyOnHostFlow(NoRollbackFlow):
    """Ends the appliance's processes and removes its veths, namespace and directory."""

    def skip(self, data: ApplianceData) -> bool:  # type: ignore[override]
        return data.appliance["hostUuid"] is None

    async def run(self, data: ApplianceData) -> None:  # type: ignore[override]
        await destroy_on_host(data)


class ApplianceVmReleaseNicFlow(NoRollbackFlow):
    """Deletes the appliance's NICs; its public address goes back to IPAM."""

    async def run(self, data: ApplianceData) -> None:  # type: ignore[override]
        uuid = data.appliance["uuid"]
        await data.node.db.run(lambda s: delete_nics(s, uuid))
        data.nics = {}

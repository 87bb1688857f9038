"""The appliance flows (ZStack's appliance VM chain) for the namespace backend: NICs
from the database, then the namespace, veths and agent made by the host agent.

Data keys: ``node``, ``appliance`` (the ApplianceVmVO inventory), ``networks``
(``[(l3 uuid, role)]``, public first), and ``nics`` (role -> NIC) once allocated.
Each flow undoes exactly what its ``run`` did.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent import protocol
from agent.network.names import veth_name
from core.appliance.models import ApplianceVmVO
from core.host.plugin import HostPlugin
from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow
from core.network.l3.ipam import allocate_ip, prefix_length
from core.network.l3.models import IpRangeVO
from core.network.l3.nics import APPLIANCE_NIC, create_nic, delete_nics, nics_of

GUEST = "guest"
"""A NIC that is its network's gateway (it takes the range's gateway address)."""


async def _agent(data: dict[str, Any]) -> Any:
    return await data["node"].plugin(HostPlugin).agent_of(data["appliance"]["hostUuid"])


def nics_by_role(session: Session, appliance_uuid: str) -> dict[str, dict[str, Any]]:
    """An appliance's NICs by role (``public``, ``guest``)."""
    return {nic["metaData"]: nic for nic in nics_of(session, appliance_uuid)}


class ApplianceVmAllocateNicFlow(Flow):
    """One NIC per network: a guest NIC takes its network's gateway address, any other
    an address from IPAM."""

    async def run(self, data: dict[str, Any]) -> None:
        appliance = data["appliance"]

        def allocate(session: Session) -> dict[str, dict[str, Any]]:
            for device_id, (l3_uuid, role) in enumerate(data["networks"]):
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

        data["nics_allocated"] = True
        data["nics"] = await data["node"].db.run(allocate)

    async def rollback(self, data: dict[str, Any]) -> None:
        if data.pop("nics_allocated", False):
            uuid = data["appliance"]["uuid"]
            await data["node"].db.run(lambda s: delete_nics(s, uuid))
            data.pop("nics", None)


def _create_body(data: dict[str, Any]) -> dict[str, Any]:
    nics = sorted(data["nics"].values(), key=lambda n: n["deviceId"])
    public = [n for n in nics if n["metaData"] != GUEST]
    return {
        "applianceUuid": data["appliance"]["uuid"],
        "nics": [
            {
                "bridgeName": n["bridgeName"],
                "mac": n["mac"],
                "ip": n["ip"],
                "prefixLength": prefix_length(n["netmask"]),
                "role": "guest" if n["metaData"] == GUEST else "public",
            }
            for n in nics
        ],
        "defaultGateway": public[0]["gateway"] if public else "",
    }


async def _record_agent(data: dict[str, Any], answer: dict[str, Any]) -> None:
    uuid = data["appliance"]["uuid"]

    def record(session: Session) -> dict[str, Any]:
        row = session.get(ApplianceVmVO, uuid)
        assert row is not None
        row.namespace = answer.get("namespace") or None
        row.agent_socket_path = answer["socketPath"]
        row.agent_token_file = answer["tokenFile"]
        row.agent_pid = answer.get("agentPid")
        return row.to_inventory()

    data["appliance"] = await data["node"].db.run(record)


class ApplianceVmCreateOnHostFlow(Flow):
    """The host agent makes the namespace, a veth per NIC into its bridge, and starts the
    appliance's agent; undone by destroying all of it."""

    async def run(self, data: dict[str, Any]) -> None:
        agent = await _agent(data)
        data["on_host"] = True
        answer = await agent.call(protocol.APPLIANCE_CREATE, _create_body(data), timeout=90)
        await _record_agent(data, answer)

    async def rollback(self, data: dict[str, Any]) -> None:
        if data.pop("on_host", False):
            agent = await _agent(data)
            await agent.call(
                protocol.APPLIANCE_DESTROY,
                {"applianceUuid": data["appliance"]["uuid"]},
                timeout=90,
            )


class ApplianceVmEnsureOnHostFlow(NoRollbackFlow):
    """Reconnect: the host agent makes whatever is missing (the namespace after a host
    reboot, a veth deleted by hand, a dead agent) and leaves the rest."""

    async def run(self, data: dict[str, Any]) -> None:
        uuid = data["appliance"]["uuid"]
        data["nics"] = await data["node"].db.run(lambda s: nics_by_role(s, uuid))
        answer = await (await _agent(data)).call(
            protocol.APPLIANCE_CREATE, _create_body(data), timeout=90
        )
        await _record_agent(data, answer)


class ApplianceVmDestroyOnHostFlow(NoRollbackFlow):
    """Ends the appliance's processes and removes its veths, namespace and directory."""

    def skip(self, data: dict[str, Any]) -> bool:
        return data["appliance"]["hostUuid"] is None

    async def run(self, data: dict[str, Any]) -> None:
        await (await _agent(data)).call(
            protocol.APPLIANCE_DESTROY, {"applianceUuid": data["appliance"]["uuid"]}, timeout=90
        )


class ApplianceVmReleaseNicFlow(NoRollbackFlow):
    """Deletes the appliance's NICs; its public address goes back to IPAM."""

    async def run(self, data: dict[str, Any]) -> None:
        uuid = data["appliance"]["uuid"]
        await data["node"].db.run(lambda s: delete_nics(s, uuid))

"""The management node's side: the vSwitch type OpenvSwitch, its bridges on KVM hosts, its
NICs as (VLAN access) ports, and a host connect that needs ovs-vswitchd.

Bridges: the VLAN networks of a zone on one interface (or on none) share one OVS bridge,
whose uplink is the interface (a trunk), each network's ports access ports of its VLAN;
an untagged network has a bridge of its own (an untagged OVS port would be a trunk of
every VLAN on the bridge).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.host.extension_points import HostConnectContext, KVMHostConnectExtensionPoint
from core.host.models import HostVO
from core.kernel.errors import OperationError, argerr, operr
from core.kernel.extensions import Plugin
from core.kernel.rest import AgentClient
from core.kvm.extension_points import KVMCompleteNicInformationExtensionPoint, NicKey, NicT
from core.network.l2.extension_points import (
    L2NetworkRealizationExtensionPoint,
    RealizationKey,
    VSwitchFactory,
)
from core.network.l2.models import L2NetworkClusterRefVO, L2NetworkVO, L2VlanNetworkVO
from zsl_openvswitch.contract import (
    V_SWITCH_TYPE,
    VIRTUAL_PORT_TYPE,
    CheckCmd,
    CreateBridgeCmd,
    DeleteBridgeCmd,
    bridge_name,
)

L2_TYPES = ("L2NoVlanNetwork", "L2VlanNetwork")


class OpenvSwitchPlugin(Plugin, KVMHostConnectExtensionPoint):
    implements = (
        VSwitchFactory,
        L2NetworkRealizationExtensionPoint,
        KVMCompleteNicInformationExtensionPoint,
        KVMHostConnectExtensionPoint,
    )
    v_switch_type = V_SWITCH_TYPE
    realization_keys = tuple(RealizationKey(t, V_SWITCH_TYPE, "KVM") for t in L2_TYPES)
    nic_keys = tuple(NicKey(t, V_SWITCH_TYPE) for t in L2_TYPES)

    # -- VSwitchFactory ----------------------------------------------------------------
    def switch_name(self, session: Session, l2: L2NetworkVO, vlan: int | None) -> str:
        iface = l2.physical_interface
        if iface:
            for other in session.scalars(
                select(L2NetworkVO).where(
                    L2NetworkVO.zone_uuid == l2.zone_uuid, L2NetworkVO.physical_interface == iface
                )
            ):
                tagged = session.get(L2VlanNetworkVO, other.uuid) is not None
                if other.v_switch_type != V_SWITCH_TYPE or not tagged or vlan is None:
                    raise argerr(
                        f"interface {iface} is the uplink of L2 network {other.name} "
                        f"({other.v_switch_type}{', VLAN' if tagged else ''}) already; only "
                        "Open vSwitch VLAN networks share an interface"
                    )
        if vlan is None:
            # Untagged ports of a shared bridge would be trunks of every VLAN on it: an
            # untagged network has a bridge of its own.
            return bridge_name(l2.zone_uuid, f"network {l2.uuid}")
        return bridge_name(l2.zone_uuid, iface)

    # -- L2NetworkRealizationExtensionPoint ---------------------------------------------
    async def realize(self, l2: dict[str, Any], host_uuid: str, agent: AgentClient) -> None:
        await agent.send(
            CreateBridgeCmd(
                bridge_name=l2["bridgeName"], physical_interface=l2["physicalInterface"]
            )
        )

    async def unrealize(self, l2: dict[str, Any], host_uuid: str, agent: AgentClient) -> None:
        """The bridge goes with the last network on it attached to the host's cluster."""

        def shared(session: Session) -> bool:
            cluster = session.scalar(select(HostVO.cluster_uuid).where(HostVO.uuid == host_uuid))
            other = session.scalars(
                select(L2NetworkVO.uuid)
                .join(
                    L2NetworkClusterRefVO, L2NetworkClusterRefVO.l2_network_uuid == L2NetworkVO.uuid
                )
                .where(
                    L2NetworkClusterRefVO.cluster_uuid == cluster,
                    L2NetworkVO.bridge_name == l2["bridgeName"],
                    L2NetworkVO.uuid != l2["uuid"],
                )
            ).first()
            return other is not None

        if not await self.node.db.run(shared):
            await agent.send(DeleteBridgeCmd(bridge_name=l2["bridgeName"]))

    # -- KVMCompleteNicInformationExtensionPoint ----------------------------------------
    def complete_nic_information(self, nic: dict[str, Any], to: NicT) -> NicT:
        """An OVS port on the network's bridge: an access port of its VLAN, if it has one."""
        return to.model_copy(
            update={"virtual_port_type": VIRTUAL_PORT_TYPE, "vlan_id": nic["vlan"]}
        )

    # -- KVMHostConnectExtensionPoint ---------------------------------------------------
    async def kvm_host_connected(self, context: HostConnectContext) -> None:
        """Refused, naming Open vSwitch, when the host's cluster has OVS networks and the
        host cannot forward them (ovs-vswitchd stopped, or an agent without the plugin)."""

        def networks(session: Session) -> list[str]:
            return list(
                session.scalars(
                    select(L2NetworkVO.name)
                    .join(
                        L2NetworkClusterRefVO,
                        L2NetworkClusterRefVO.l2_network_uuid == L2NetworkVO.uuid,
                    )
                    .where(
                        L2NetworkClusterRefVO.cluster_uuid == context.cluster_uuid,
                        L2NetworkVO.v_switch_type == V_SWITCH_TYPE,
                    )
                    .order_by(L2NetworkVO.name)
                )
            )

        names = await self.node.db.run(networks)
        if not names:
            return
        needs = f"the Open vSwitch L2 network(s) {', '.join(names)} of its cluster"
        try:
            check = await context.agent.send(CheckCmd(), timeout=30)
        except OperationError as exc:
            raise operr(
                f"host {context.host_name} cannot serve {needs}: its agent cannot check "
                "Open vSwitch (is the openvswitch plugin installed on the host?)",
                cause=exc.error,
            ) from None
        if not check.vswitchd_running:
            raise operr(
                f"host {context.host_name} cannot serve {needs}: ovs-vswitchd does not run "
                f"there ({check.error or 'no reason given'}); start it, then reconnect the host"
            )

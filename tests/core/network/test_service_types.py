"""A plugin adds service types to a provider it does not own (as port forwarding and EIP
come to the virtual router): the provider's row lists them and L3 networks may use them;
without the plugin they are unknown."""

from __future__ import annotations

from core.kernel.errors import SysErrors
from core.kernel.extensions import Plugin
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.network.service.extension_points import NetworkServiceTypeExtensionPoint
from tests.conftest import fails, make_node, ok


class PortsPlugin(Plugin):
    implements = (NetworkServiceTypeExtensionPoint,)
    provider_type = "VirtualRouter"
    service_types = ("TestPorts", "DHCP")  # DHCP is the provider's own: listed once


async def _private_l3(node: ManagementNode) -> dict[str, str]:
    zone = await ok(node, "CreateZone", name="z")
    l2 = await ok(node, "CreateL2NoVlanNetwork", name="l2", zoneUuid=zone["uuid"])
    return await ok(node, "CreateL3Network", name="priv", l2NetworkUuid=l2["uuid"])


async def _router(node: ManagementNode) -> dict[str, str]:
    [vr] = await ok(node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"])
    return vr


async def test_the_added_type_is_offered_and_attachable(props: Properties) -> None:
    async with make_node(props, {"testPorts": PortsPlugin}) as node:
        vr = await _router(node)
        types = vr["networkServiceTypes"].split(",")
        # The router's own first; installed plugins (plugins/*) add theirs, as this one does.
        assert types[:3] == ["DHCP", "DNS", "SNAT"] and "TestPorts" in types
        l3 = await _private_l3(node)
        await ok(
            node,
            "AttachNetworkServiceToL3Network",
            l3NetworkUuid=l3["uuid"],
            networkServices={vr["uuid"]: ["TestPorts"]},
        )
        [ref] = await ok(
            node, "QueryNetworkServiceL3NetworkRef", conditions=[f"l3NetworkUuid={l3['uuid']}"]
        )
        assert ref["networkServiceType"] == "TestPorts"


async def test_without_the_plugin_the_type_is_refused(props: Properties) -> None:
    async with make_node(props) as node:
        vr = await _router(node)
        assert "TestPorts" not in vr["networkServiceTypes"].split(",")
        l3 = await _private_l3(node)
        err = await fails(
            node,
            "AttachNetworkServiceToL3Network",
            SysErrors.INVALID_ARGUMENT,
            l3NetworkUuid=l3["uuid"],
            networkServices={vr["uuid"]: ["TestPorts"]},
        )
        assert "does not offer TestPorts" in err

"""Reaching guests from ztui on a simulator lab whose private network gets port forwarding
and EIPs from its virtual router: the port-forward dialog and verb (a new VIP, then the
NIC's own VIP again; a refused rule leaves no VIP behind), the EIP toggle, and the
networks view's Reach tab (its rows, delete and detach); each checked against what the
API holds afterwards.  The VIP plugin is installed in the venv, so the node has its APIs;
a node without them is made by hiding them from the session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, Select

from core.kernel.api import ApiReply
from core.kernel.errors import ErrorCode, SysErrors
from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.virtual_router.conftest import NetLab, make_net_lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from tests.ztui.test_keys import notifications
from ztui.dialogs.confirm import ConfirmDialog
from ztui.dialogs.port_forward import PortForwardDialog, check_form
from ztui.reach import ReachData, default_vip_port, reach_line
from ztui.screens.networks import NetworksScreen
from ztui.screens.vm_detail import VmDetailScreen
from ztui.screens.vms import VmsScreen


async def make_reach_lab(node: ManagementNode, root: Path) -> NetLab:
    """The virtual-router lab, its private network also given PortForwarding and Eip
    (as the default lab's is at first start)."""
    lab = await make_net_lab(node, root)
    [provider] = await ok(node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"])
    await ok(
        node,
        "AttachNetworkServiceToL3Network",
        l3NetworkUuid=lab.private_l3["uuid"],
        networkServices={provider["uuid"]: ["PortForwarding", "Eip"]},
    )
    return lab


@pytest.fixture
async def reach_lab(node: ManagementNode, tmp_path: Path) -> AsyncIterator[NetLab]:
    lab = await make_reach_lab(node, tmp_path)
    await lab.create_vm("web")
    yield lab
    if node.running:  # VIPs, rules and EIPs go before the lab's networks
        for api, kind in (
            ("QueryPortForwardingRule", "DeletePortForwardingRule"),
            ("QueryEip", "DeleteEip"),
            ("QueryVip", "DeleteVip"),
        ):
            for row in await ok(node, api):
                await ok(node, kind, uuid=row["uuid"])


async def web_nic(lab: NetLab) -> dict[str, Any]:
    [vm] = await ok(lab.node, "QueryVmInstance", conditions=["name=web"])
    [nic] = await ok(lab.node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    return dict(nic)


async def vms_view(pilot: Pilot) -> VmsScreen:
    await pilot.press("2")
    screen = await shown(pilot, VmsScreen)
    await wait_until(pilot, lambda: screen.table.row_count == 1, what="the VM's row")
    return screen


async def open_dialog(pilot: Pilot) -> PortForwardDialog:
    await pilot.press("f")
    return await shown(pilot, PortForwardDialog)


def field(dialog: PortForwardDialog, name: str) -> Input:
    return dialog.query_one(f"#{name}", Input)


async def retype(pilot: Pilot, dialog: PortForwardDialog, name: str, text: str) -> None:
    box = field(dialog, name)
    box.focus()
    box.value = ""
    await pilot.press(*text)


# -- the dialog ---------------------------------------------------------------------------


def test_the_forms_checks_and_the_reach_lines() -> None:
    assert check_form("22", "2222", "TCP") is None
    assert check_form("", "2222", "TCP") == "guest port: a whole number from 1 to 65535"
    assert check_form("70000", "2222", "TCP") == "guest port: a whole number from 1 to 65535"
    assert check_form("0", "2222", "TCP") == "guest port: a whole number from 1 to 65535"
    assert check_form("80", "", "UDP") == "VIP port: a whole number from 1 to 65535"
    assert check_form("80", "80", "SCTP") == "protocol: TCP or UDP"
    assert (default_vip_port(22), default_vip_port(8080)) == (2222, 8080)
    assert reach_line("192.168.253.10", 2222, 22, "TCP") == "ssh -p 2222 root@192.168.253.10"
    assert reach_line("192.168.253.10", 8080, 80, "TCP") == "192.168.253.10:8080"
    assert reach_line("192.168.253.10", 53, 53, "UDP") == "192.168.253.10:53/udp"


async def test_the_dialog_offers_ports_and_says_what_is_wrong(reach_lab: NetLab) -> None:
    app = app_on(reach_lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await vms_view(pilot)
        dialog = await open_dialog(pilot)
        nic = await web_nic(reach_lab)
        where = str(dialog.query_one("#where").render())
        assert where == f"To {nic['ip']} on private, from a new VIP on public."
        assert (field(dialog, "guest-port").value, field(dialog, "vip-port").value) == (
            "22",
            "2222",
        )
        assert dialog.query_one("#protocol", Select).value == "TCP"
        await retype(pilot, dialog, "guest-port", "8080")
        assert field(dialog, "vip-port").value == "8080"  # follows the guest port
        await retype(pilot, dialog, "vip-port", "9000")
        await retype(pilot, dialog, "guest-port", "80")
        assert field(dialog, "vip-port").value == "9000"  # typed: it stays
        await retype(pilot, dialog, "guest-port", "99999")
        await pilot.press("ctrl+s")
        error = str(dialog.query_one("#error", Label).render())
        assert error == "guest port: a whole number from 1 to 65535"
        assert app.screen is dialog
        await pilot.press("escape")
        await shown(pilot, VmsScreen)
        assert await ok(reach_lab.node, "QueryVip") == []
        assert await ok(reach_lab.node, "QueryPortForwardingRule") == []


# -- the port-forward verb ----------------------------------------------------------------


async def test_port_forward_makes_a_vip_and_a_rule_then_reuses_the_vip(
    reach_lab: NetLab,
) -> None:
    node = reach_lab.node
    nic = await web_nic(reach_lab)
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await vms_view(pilot)
        await open_dialog(pilot)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "reach it" in screen.status.text, what="the reach line")
        [vip] = await ok(node, "QueryVip")
        assert vip["l3NetworkUuid"] == reach_lab.public_l3["uuid"]
        [rule] = await ok(node, "QueryPortForwardingRule")
        assert (
            rule["vipUuid"],
            rule["vipPortStart"],
            rule["privatePortStart"],
            rule["protocolType"],
            rule["vmNicUuid"],
            rule["name"],
        ) == (vip["uuid"], 2222, 22, "TCP", nic["uuid"], "web-tcp-2222")
        line = f"ssh -p 2222 root@{vip['ip']}"
        assert screen.status.text == (
            f"web: TCP {vip['ip']}:2222 → {nic['ip']}:22 · reach it: {line}"
        )
        assert line in notifications(app)[-1]

        dialog = await open_dialog(pilot)  # the NIC's VIP is used again
        assert "from VIP " + vip["ip"] + " (that of its other rules)" in str(
            dialog.query_one("#where").render()
        )
        await retype(pilot, dialog, "guest-port", "80")
        dialog.query_one("#protocol", Select).value = "UDP"
        await pilot.press("ctrl+s")
        await wait_until(
            pilot, lambda: f"reach it: {vip['ip']}:80/udp" in screen.status.text, what="UDP 80"
        )
        assert [v["uuid"] for v in await ok(node, "QueryVip")] == [vip["uuid"]]
        rules = await ok(node, "QueryPortForwardingRule", sortBy="vipPortStart")
        assert [(r["vipPortStart"], r["protocolType"], r["vipUuid"]) for r in rules] == [
            (80, "UDP", vip["uuid"]),
            (2222, "TCP", vip["uuid"]),
        ]


async def test_a_refused_rule_leaves_no_vip_behind(
    reach_lab: NetLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node refuses the rule (as it would for any reason): the refusal is shown and
    the VIP made for the rule is deleted again."""
    node = reach_lab.node
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        session = app.session
        call = session.call

        async def refusing(api: str, params: Any = None) -> ApiReply:
            if api == "CreatePortForwardingRule":
                return ApiReply.failure(ErrorCode(SysErrors.OPERATION_ERROR, "refused here"))
            return await call(api, params)

        monkeypatch.setattr(session, "call", refusing)
        screen = await vms_view(pilot)
        await open_dialog(pilot)
        await pilot.press("ctrl+s")
        await wait_until(
            pilot,
            lambda: any(o.get("apiName") == "DeleteVip" for o in app.operations.newest_first()),
            what="the VIP's deletion",
        )
        assert screen.status.has_class("-error")
        assert screen.status.text.startswith("CreatePortForwardingRule: ")
        assert "refused here" in screen.status.text
        assert [o.get("apiName") for o in app.operations.newest_first()][:2] == [
            "DeleteVip",
            "CreateVip",
        ]
        assert await ok(node, "QueryVip") == []
        assert await ok(node, "QueryPortForwardingRule") == []


async def test_port_forward_from_the_vm_detail_view(reach_lab: NetLab) -> None:
    app = app_on(reach_lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await vms_view(pilot)
        await pilot.press("enter")
        screen = await shown(pilot, VmDetailScreen)
        dialog = await open_dialog(pilot)
        await retype(pilot, dialog, "guest-port", "8080")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "reach it" in screen.status.text, what="the reach line")
        [rule] = await ok(reach_lab.node, "QueryPortForwardingRule")
        assert screen.status.text.endswith(f"reach it: {rule['vipIp']}:8080")


async def test_a_vm_without_a_forwarding_network_is_told(reach_lab: NetLab) -> None:
    vm = await ok(
        reach_lab.node,
        "CreateVmInstance",
        name="flat",
        instanceOfferingUuid=reach_lab.lab.offering["uuid"],
        imageUuid=reach_lab.lab.image_uuid,
        l3NetworkUuids=[reach_lab.public_l3["uuid"]],
    )
    app = app_on(reach_lab.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await wait_until(pilot, lambda: screen.table.row_count == 2, what="two VMs")
        screen.table.select_key(vm["uuid"])
        await pilot.press("f")
        await wait_until(pilot, lambda: bool(notifications(app)), what="a notification")
        assert (
            "VM flat has no NIC with an address on a network that gets PortForwarding"
            in (notifications(app)[-1])
        )
        assert isinstance(app.screen, VmsScreen)


# -- the EIP toggle -------------------------------------------------------------------------


async def test_eip_on_and_off(reach_lab: NetLab) -> None:
    node = reach_lab.node
    nic = await web_nic(reach_lab)
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await vms_view(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: "reach it at" in screen.status.text, what="the EIP")
        [eip] = await ok(node, "QueryEip")
        [vip] = await ok(node, "QueryVip")
        assert (eip["vmNicUuid"], eip["vipUuid"], eip["guestIp"]) == (
            nic["uuid"],
            vip["uuid"],
            nic["ip"],
        )
        assert vip["l3NetworkUuid"] == reach_lab.public_l3["uuid"]
        assert screen.status.text == f"web: EIP {vip['ip']} attached · reach it at {vip['ip']}"

        await pilot.press("e")  # it has one: detach it, after a question
        dialog = await shown(pilot, ConfirmDialog)
        assert dialog.question.startswith(f"Detach EIP {vip['ip']} from VM web?")
        await pilot.press("n")
        await shown(pilot, VmsScreen)
        assert len(await ok(node, "QueryEip")) == 1
        await pilot.press("e")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: "detached" in screen.status.text, what="the detach")
        assert screen.status.text == f"web: EIP {vip['ip']} detached and deleted, with its VIP"
        assert await ok(node, "QueryEip") == []
        assert await ok(node, "QueryVip") == []


# -- the Reach tab --------------------------------------------------------------------------


async def reach_tab(pilot: Pilot) -> NetworksScreen:
    await pilot.press("4")
    screen = await shown(pilot, NetworksScreen)
    screen.show_tab("reach")
    await wait_until(pilot, lambda: screen.active_tab == "reach", what="the Reach tab")
    return screen


async def test_the_reach_tab_lists_rules_eips_and_unused_vips(reach_lab: NetLab) -> None:
    node = reach_lab.node
    nic = await web_nic(reach_lab)
    public = reach_lab.public_l3["uuid"]
    pf_vip = await ok(node, "CreateVip", name="pf", l3NetworkUuid=public)
    await ok(
        node,
        "CreatePortForwardingRule",
        name="ssh",
        vipUuid=pf_vip["uuid"],
        vipPortStart=2222,
        privatePortStart=22,
        protocolType="TCP",
        vmNicUuid=nic["uuid"],
    )
    await ok(
        node,
        "CreatePortForwardingRule",
        name="dns",
        vipUuid=pf_vip["uuid"],
        vipPortStart=5300,
        vipPortEnd=5301,
        privatePortStart=53,
        protocolType="UDP",
        allowedCidr="203.0.113.0/24",
    )
    eip_vip = await ok(node, "CreateVip", name="eip", l3NetworkUuid=public)
    await ok(node, "CreateEip", name="web-eip", vipUuid=eip_vip["uuid"], vmNicUuid=nic["uuid"])
    spare = await ok(node, "CreateVip", name="spare", l3NetworkUuid=public)
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await reach_tab(pilot)
        table = screen.table_of("reach")
        assert screen.table is table
        fields = ("kind", "vip", "target", "protocol", "reach", "allowed", "attached", "name")
        rows = list(zip(*(table.column_values(f) for f in fields), strict=True))
        p, e, s = pf_vip["ip"], eip_vip["ip"], spare["ip"]
        assert rows == [
            ("forward", f"{p}:2222", f"web {nic['ip']}:22", "TCP", f"ssh -p 2222 root@{p}",
             "any", "yes", "ssh"),
            ("forward", f"{p}:5300-5301", "(none):53-54", "UDP", "", "203.0.113.0/24", "no",
             "dns"),
            ("EIP", e, f"web {nic['ip']}", "all", e, "any", "yes", "web-eip"),
            ("VIP", s, "unused (on public)", "", "", "", "", "spare"),
        ]  # fmt: skip
        assert screen.summary() == "4 items"
        assert str(screen.query_one("#reach-detail").render()) == (
            f"port forwarding rule ssh: TCP {p}:2222 → web {nic['ip']}:22 · from any · "
            f"reach it: ssh -p 2222 root@{p}"
        )

        # Detach the EIP, then delete the unused VIP and the detached rule, marked.
        table.select_key(next(k for k, r in table.rows_by_key.items() if r["kind"] == "EIP"))
        await pilot.press("x")
        await wait_until(pilot, lambda: "detached EIP" in screen.status.text, what="the detach")
        [eip] = await ok(node, "QueryEip")
        assert eip["vmNicUuid"] is None
        names, attached = table.column_values("name"), table.column_values("attached")
        assert dict(zip(names, attached, strict=True))["web-eip"] == "no"
        for name in ("dns", "spare"):
            table.select_key(next(k for k, r in table.rows_by_key.items() if r["name"] == name))
            await pilot.press("space")
        await pilot.press("d")
        dialog = await shown(pilot, ConfirmDialog)
        assert dialog.question.startswith("Delete 2 items: port forwarding rule dns")
        await pilot.press("y")
        await wait_until(pilot, lambda: "deleted" in screen.status.text, what="the deletes")
        assert sorted(table.column_values("name")) == ["ssh", "web-eip"]
        assert [r["name"] for r in await ok(node, "QueryPortForwardingRule")] == ["ssh"]
        assert sorted(v["name"] for v in await ok(node, "QueryVip")) == ["eip", "pf"]

        # A VM verb elsewhere shows here too (the operation's end refreshes the tab).
        await ok(node, "DeleteEip", uuid=eip["uuid"])
        await wait_until(
            pilot,
            lambda: table.column_values("kind") == ["forward", "VIP"],
            what="the EIP to go and its VIP to show unused",
        )


async def test_deleting_a_used_vip_is_refused_and_shown(reach_lab: NetLab) -> None:
    """A VIP row is an unused VIP; one that became used meanwhile is refused by the node."""
    node = reach_lab.node
    vip = await ok(node, "CreateVip", name="spare", l3NetworkUuid=reach_lab.public_l3["uuid"])
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await reach_tab(pilot)
        await ok(
            node,
            "CreatePortForwardingRule",
            name="late",
            vipUuid=vip["uuid"],
            vipPortStart=80,
            protocolType="TCP",
        )
        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.status.has_class("-error"), what="the refusal")
        assert screen.status.text.startswith(f"DeleteVip {vip['ip']}: ")
        assert "late" in screen.status.text
        assert len(await ok(node, "QueryVip")) == 1


async def test_a_node_without_the_vip_apis_has_no_reach_tab(
    reach_lab: NetLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the node answers an API it does not have: no error shown, no Reach tab, and
    the VM verbs say the node has no port forwarding."""
    app = app_on(reach_lab.node)
    async with app.run_test(size=SMALL) as pilot:
        session = app.session
        call = session.call

        async def without_plugin(api: str, params: Any = None) -> ApiReply:
            if "Vip" in api or "PortForwarding" in api or "Eip" in api:
                return ApiReply.failure(
                    ErrorCode(SysErrors.INVALID_ARGUMENT, f"no API named {api}")
                )
            return await call(api, params)

        monkeypatch.setattr(session, "call", without_plugin)
        await pilot.press("4")
        screen = await shown(pilot, NetworksScreen)
        assert not screen.status.has_class("-error")
        assert screen.reach is None
        assert [t.id for t in screen.shown_tabs] == ["l3", "l2", "ranges", "routers", "sg"]
        await pilot.press("left_square_bracket")
        assert screen.active_tab == "sg"
        await pilot.press("right_square_bracket")
        assert screen.active_tab == "l3"
        assert not notifications(app)
        await pilot.press("2")
        await vms_view(pilot)
        await pilot.press("f")
        await wait_until(pilot, lambda: bool(notifications(app)), what="a notification")
        assert notifications(app)[-1].startswith("This node has no port forwarding")
        await pilot.press("e")
        await wait_until(pilot, lambda: len(notifications(app)) == 2, what="a notification")
        assert notifications(app)[-1].startswith("This node has no EIPs")


def test_reach_rows_without_a_known_nic() -> None:
    """A rule whose NIC is not among the NICs read still shows its guest address."""
    rule = {
        "uuid": "r",
        "name": "x",
        "vipIp": "192.168.253.10",
        "vipPortStart": 2222,
        "vipPortEnd": 2222,
        "privatePortStart": 22,
        "privatePortEnd": 22,
        "protocolType": "TCP",
        "vmNicUuid": "gone",
        "guestIp": "10.0.10.5",
    }
    [row] = ReachData([], [rule], []).rows()
    assert (row["target"], row["reach"]) == ("10.0.10.5:22", "ssh -p 2222 root@192.168.253.10")


async def test_read_only_disables_the_reach_verbs(reach_lab: NetLab) -> None:
    app = app_on(reach_lab.node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        screen = await vms_view(pilot)
        assert screen.check_action("port_forward", ()) is None
        assert screen.check_action("eip", ()) is None
        await pilot.press("f", "e")
        await pilot.pause(0.2)
        assert isinstance(app.screen, VmsScreen)
        networks = await reach_tab(pilot)
        assert networks.check_action("delete_reach", ()) is None
        assert networks.check_action("detach", ()) is None
        assert await ok(reach_lab.node, "QueryVip") == []

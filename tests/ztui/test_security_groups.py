"""Security groups in ztui, on a simulator lab with a Private L3 network and two VMs: the
networks view's Sec. groups tab (groups, and the rules and NICs of the group under
the cursor), its verbs through their dialogs (new group, add and delete a rule, add and
remove a NIC, delete the group), a refusal shown as the other verbs show theirs, and a
node without the plugin's APIs; each checked against what the API holds afterwards.  The
securitygroup plugin is installed in the venv, so the node has its APIs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select

from core.kernel.api import ApiReply
from core.kernel.errors import ErrorCode, SysErrors
from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.vm.conftest import Lab, make_lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from tests.ztui.test_keys import notifications
from ztui.dialogs.choice import ChoiceDialog
from ztui.dialogs.confirm import ConfirmDialog
from ztui.dialogs.security_group import NewGroupDialog, RuleDialog, check_rule
from ztui.screens.networks import NetworksScreen
from ztui.security_groups import parse_ports, rule_ports
from ztui.widgets.resource_table import ResourceTable


@dataclass
class SgLab:
    lab: Lab
    node: ManagementNode
    l3: dict[str, Any]
    nics: dict[str, dict[str, Any]]
    """VM name -> its NIC."""


async def make_sg_lab(node: ManagementNode, root: Path, vms: tuple[str, ...]) -> SgLab:
    """A simulator host, a Private L3 network ``private`` (10.9.0.0/24, no services) and
    a VM on it for each name."""
    lab = await make_lab(node, root)
    [zone] = await ok(node, "QueryZone")
    l2 = await ok(node, "CreateL2NoVlanNetwork", name="private-l2", zoneUuid=zone["uuid"])
    await ok(
        node,
        "AttachL2NetworkToCluster",
        l2NetworkUuid=l2["uuid"],
        clusterUuid=lab.host["clusterUuid"],
    )
    l3 = await ok(node, "CreateL3Network", name="private", l2NetworkUuid=l2["uuid"])
    await ok(
        node, "AddIpRangeByNetworkCidr", name="r", l3NetworkUuid=l3["uuid"],
        networkCidr="10.9.0.0/24",
    )  # fmt: skip
    nics = {}
    for name in vms:
        vm = await ok(
            node,
            "CreateVmInstance",
            name=name,
            instanceOfferingUuid=lab.offering["uuid"],
            imageUuid=lab.image_uuid,
            l3NetworkUuids=[l3["uuid"]],
        )
        [nics[name]] = await ok(node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    return SgLab(lab, node, l3, nics)


@pytest.fixture
async def sg(node: ManagementNode, tmp_path: Path) -> SgLab:
    return await make_sg_lab(node, tmp_path, ("a", "b"))


async def sg_tab(pilot: Pilot) -> NetworksScreen:
    await pilot.press("4")
    screen = await shown(pilot, NetworksScreen)
    screen.show_tab("sg")
    await wait_until(pilot, lambda: screen.active_tab == "sg", what="the Sec. groups tab")
    return screen


def members(screen: NetworksScreen, which: str, *fields: str) -> list[tuple[str, ...]]:
    table = screen.query_one(f"#sg-{which}", ResourceTable)
    return list(zip(*(table.column_values(f) for f in fields), strict=True))


# -- pure ---------------------------------------------------------------------------------


def test_rule_forms_and_ports() -> None:
    assert check_rule("Ingress", "TCP", "80", "10.0.10.7/32", None) == {
        "type": "Ingress", "protocol": "TCP", "startPort": 80, "endPort": 80,
        "allowedCidr": "10.0.10.7/32",
    }  # fmt: skip
    assert check_rule("Egress", "UDP", "", "", "g1") == {
        "type": "Egress", "protocol": "UDP", "remoteSecurityGroupUuid": "g1",
    }  # fmt: skip
    assert check_rule("Ingress", "ICMP", "", "", None) == {"type": "Ingress", "protocol": "ICMP"}
    assert check_rule("Ingress", "ICMP", "8", "", None) == "ports: ICMP has none (leave it empty)"
    assert check_rule("Ingress", "TCP", "90-80", "", None).startswith("ports: a port")  # type: ignore[union-attr]
    assert check_rule("Ingress", "TCP", "", "10.0.0.0/8", "g1") == (
        "from/to: a CIDR or a remote group, not both"
    )
    assert check_rule("Sideways", "TCP", "", "", None) == "direction: Ingress or Egress"
    assert parse_ports("8000-8100") == (8000, 8100)
    assert parse_ports("0") is None
    assert rule_ports({"protocol": "TCP", "startPort": -1, "endPort": -1}) == "all"
    assert rule_ports({"protocol": "UDP", "startPort": 53, "endPort": 53}) == "53"
    assert rule_ports({"protocol": "ICMP", "startPort": -1, "endPort": -1}) == ""


async def two_groups(
    node: ManagementNode, l3_uuid: str, name: str, nic_uuid: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Groups ``name`` and ``clients`` on the L3: ``name`` admits TCP 80 from ``clients``
    and 8000-8100 from 10.0.10.0/24, lets ICMP out, and holds the NIC."""
    main = await ok(node, "CreateSecurityGroup", name=name)
    clients = await ok(node, "CreateSecurityGroup", name="clients")
    for group in (main, clients):
        await ok(node, "AttachSecurityGroupToL3Network", securityGroupUuid=group["uuid"],
                 l3NetworkUuid=l3_uuid)  # fmt: skip
    for params in (
        {"type": "Ingress", "protocol": "TCP", "startPort": 80, "endPort": 80,
         "remoteSecurityGroupUuid": clients["uuid"]},
        {"type": "Ingress", "protocol": "TCP", "startPort": 8000, "endPort": 8100,
         "allowedCidr": "10.0.10.0/24"},
        {"type": "Egress", "protocol": "ICMP"},
    ):  # fmt: skip
        await ok(node, "AddSecurityGroupRule", securityGroupUuid=main["uuid"], **params)
    await ok(node, "AddVmNicToSecurityGroup", securityGroupUuid=main["uuid"],
             vmNicUuids=[nic_uuid])  # fmt: skip
    return main, clients


# -- the tab --------------------------------------------------------------------------------


async def test_the_tab_lists_groups_with_their_rules_and_nics(sg: SgLab) -> None:
    node = sg.node
    web, clients = await two_groups(node, sg.l3["uuid"], "web", sg.nics["a"]["uuid"])
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await sg_tab(pilot)
        table = screen.table_of("sg")
        assert screen.table is table
        fields = ("name", "l3Names", "ruleCount", "nicCount")
        assert list(zip(*(table.column_values(f) for f in fields), strict=True)) == [
            ("clients", "", "0", "0"),  # attached, but the node does not say so
            ("web", "private", "3", "1"),
        ]
        assert screen.summary() == "2 security groups"
        table.select_key(web["uuid"])
        await pilot.pause()
        assert members(screen, "rules", "direction", "protocol", "ports", "peer") == [
            ("Ingress", "TCP", "80", "group clients"),
            ("Ingress", "TCP", "8000-8100", "10.0.10.0/24"),
            ("Egress", "ICMP", "", "any"),
        ]
        assert members(screen, "nics", "vmName", "ip", "l3Name") == [
            ("a", sg.nics["a"]["ip"], "private")
        ]
        title = str(screen.query_one("#sg-title").render())
        assert title.startswith("web: 3 rules · 1 NIC · on private")

        # A filter that leaves only clients shows clients' (no) rules and NICs.
        await pilot.press("slash", *"cli", "enter")
        await pilot.pause()
        assert table.row_count == 1
        assert members(screen, "rules", "direction") == []
        assert str(screen.query_one("#sg-title").render()).startswith("clients: 0 rules")
        await pilot.press("escape")
        await pilot.pause()

        # A change from elsewhere shows here (the operation's end refreshes the tab).
        await ok(node, "DeleteSecurityGroup", uuid=clients["uuid"])
        await wait_until(
            pilot,
            lambda: table.column_values("ruleCount") == ["2"],
            what="clients and the rule naming it to go",
        )


async def test_the_verbs_through_their_dialogs(sg: SgLab) -> None:
    node = sg.node
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await sg_tab(pilot)
        assert str(screen.query_one("#sg-title").render()) == "No security group: n makes one."

        # New group, attached to private.
        await pilot.press("n")
        dialog = await shown(pilot, NewGroupDialog)
        assert dialog.query_one("#l3", Select).value == sg.l3["uuid"]
        await pilot.press("ctrl+s")
        assert str(dialog.query_one("#error").render()) == "name: required"
        await pilot.press(*"web")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "created" in screen.status.text, what="the group")
        assert screen.status.text == "created security group web on private"
        [web] = await ok(node, "QuerySecurityGroup")
        assert web["name"] == "web"
        assert screen.table_of("sg").column_values("l3Names") == ["private"]

        # A rule: TCP 80 from a CIDR.
        await pilot.press("a")
        rule_dialog = await shown(pilot, RuleDialog)
        await pilot.press(*"80")
        rule_dialog.query_one("#cidr", Input).value = "10.0.10.7/32"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "added" in screen.status.text, what="the rule")
        assert screen.status.text == "web: added Ingress TCP 80 from 10.0.10.7/32"
        [rule] = await ok(node, "QuerySecurityGroupRule")
        assert (rule["securityGroupUuid"], rule["type"], rule["protocol"], rule["startPort"],
                rule["endPort"], rule["allowedCidr"]) == (
            web["uuid"], "Ingress", "TCP", 80, 80, "10.0.10.7/32")  # fmt: skip
        assert members(screen, "rules", "ports", "peer") == [("80", "10.0.10.7/32")]

        # The same rule again: the node's refusal is shown, nothing changes.
        await pilot.press("a")
        rule_dialog = await shown(pilot, RuleDialog)
        await pilot.press(*"80")
        rule_dialog.query_one("#cidr", Input).value = "10.0.10.7/32"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: screen.status.has_class("-error"), what="the refusal")
        assert screen.status.text.startswith("AddSecurityGroupRule: ")
        assert "has this rule already" in screen.status.text
        assert len(await ok(node, "QuerySecurityGroupRule")) == 1

        # Add b's NIC (the second choice), then remove it.
        await pilot.press("i")
        choice = await shown(pilot, ChoiceDialog)
        assert [label for label, _ in choice.choices] == [
            f"a {sg.nics['a']['ip']} on private",
            f"b {sg.nics['b']['ip']} on private",
        ]
        choice.query_one("#choice", Select).value = sg.nics["b"]["uuid"]
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "added NIC" in screen.status.text, what="the NIC")
        [ref] = await ok(node, "QueryVmNicInSecurityGroup")
        assert (ref["vmNicUuid"], ref["securityGroupUuid"]) == (sg.nics["b"]["uuid"], web["uuid"])
        assert members(screen, "nics", "vmName", "ip") == [("b", sg.nics["b"]["ip"])]
        assert screen.table_of("sg").column_values("nicCount") == ["1"]
        await pilot.press("u")
        await shown(pilot, ChoiceDialog)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "removed NIC" in screen.status.text, what="the removal")
        assert await ok(node, "QueryVmNicInSecurityGroup") == []

        # Delete the rule, then the group (after a question).
        await pilot.press("x")
        choice = await shown(pilot, ChoiceDialog)
        assert choice.choices == [("Ingress TCP 80 from 10.0.10.7/32", rule["uuid"])]
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "deleted" in screen.status.text, what="the rule's end")
        assert await ok(node, "QuerySecurityGroupRule") == []
        await pilot.press("d")
        confirm = await shown(pilot, ConfirmDialog)
        assert confirm.question.startswith("Delete security group web?")
        await pilot.press("y")
        await wait_until(
            pilot, lambda: screen.status.text == "deleted security group web", what="the delete"
        )
        assert await ok(node, "QuerySecurityGroup") == []
        assert screen.table_of("sg").row_count == 0


async def test_a_refused_attach_leaves_no_group_behind(
    sg: SgLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_on(sg.node)
    async with app.run_test(size=SMALL) as pilot:
        session = app.session
        call = session.call

        async def refusing(api: str, params: Any = None) -> ApiReply:
            if api == "AttachSecurityGroupToL3Network":
                return ApiReply.failure(ErrorCode(SysErrors.OPERATION_ERROR, "refused here"))
            return await call(api, params)

        monkeypatch.setattr(session, "call", refusing)
        screen = await sg_tab(pilot)
        await pilot.press("n")
        await shown(pilot, NewGroupDialog)
        await pilot.press(*"web", "ctrl+s")
        await wait_until(
            pilot,
            lambda: any(
                o.get("apiName") == "DeleteSecurityGroup" for o in app.operations.newest_first()
            ),
            what="the group's deletion",
        )
        await wait_until(pilot, lambda: screen.status.has_class("-error"), what="the refusal")
        assert screen.status.text.startswith("AttachSecurityGroupToL3Network web: ")
        assert "refused here" in screen.status.text
        assert await ok(sg.node, "QuerySecurityGroup") == []


async def test_a_node_without_security_groups_has_no_tab(
    sg: SgLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_on(sg.node)
    async with app.run_test(size=SMALL) as pilot:
        session = app.session
        call = session.call

        async def without_plugin(api: str, params: Any = None) -> ApiReply:
            if "SecurityGroup" in api:
                return ApiReply.failure(
                    ErrorCode(SysErrors.INVALID_ARGUMENT, f"no API named {api}")
                )
            return await call(api, params)

        monkeypatch.setattr(session, "call", without_plugin)
        await pilot.press("4")
        screen = await shown(pilot, NetworksScreen)
        assert not screen.status.has_class("-error")
        assert screen.sg is None
        assert "sg" not in [t.id for t in screen.shown_tabs]
        assert not notifications(app)


async def test_read_only_disables_the_security_group_verbs(sg: SgLab) -> None:
    app = app_on(sg.node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        screen = await sg_tab(pilot)
        for action in ("new_sg", "add_sg_rule", "delete_sg_rule", "add_sg_nic",
                       "remove_sg_nic", "delete_sg"):  # fmt: skip
            assert screen.check_action(action, ()) is None
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.screen is screen
        screen.show_tab("l3")
        await pilot.pause()
        assert screen.check_action("new_sg", ()) is False

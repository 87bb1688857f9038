"""The security-group dialogs of the networks view: a new group (name, the L3 network to
attach it to), a rule (direction, protocol, ports, a CIDR or a remote group), and a
choice among a few things (the rule to delete, the NIC to add or remove).

Each is dismissed with what to send, or None when cancelled; the view calls the APIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select

from ztui.dialogs.choice import Choice
from ztui.dialogs.form import FormDialog
from ztui.security_groups import DIRECTIONS, PORT_MAX, PORTED, PROTOCOLS, parse_ports


@dataclass(frozen=True)
class NewGroup:
    name: str
    l3_uuid: str | None


class SgDialog(FormDialog[Any]):
    """What the security-group dialogs share: their keys, title and buttons."""

    DEFAULT_CSS = """
    SgDialog > VerticalScroll {
        width: 64;
    }
    SgDialog #kind {
        align-horizontal: left;
    }
    SgDialog #kind > Vertical {
        width: 1fr;
        height: auto;
    }
    SgDialog Label.tight {
        margin-top: 0;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="ztui.security-group.cancel"),
        Binding("ctrl+s", "submit", "OK", id="ztui.security-group.submit"),
    ]

    binding_group = "ztui.security-group"


class NewGroupDialog(SgDialog):
    """Dismissed with a :class:`NewGroup`."""

    form_title = "New security group"
    verb = "Create"

    def __init__(self, l3s: list[Choice]) -> None:
        """``l3s``: the Private L3 networks it may be attached to."""
        super().__init__()
        self.l3s = l3s

    def fields(self) -> ComposeResult:
        yield Label("Name")
        yield Input("", id="name", max_length=255)
        yield Label("Attach to L3 network (its VMs' NICs may then join)")
        yield Select[str](
            self.l3s,
            value=self.l3s[0][1] if self.l3s else Select.NULL,
            prompt="(none: attach later)",
            id="l3",
        )

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def action_submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        if not name:
            self.problem("name: required")
            return
        l3 = self.query_one("#l3", Select).value
        self.dismiss(NewGroup(name, None if l3 is Select.NULL else str(l3)))


def check_rule(
    direction: object, protocol: object, ports: str, cidr: str, remote: object
) -> dict[str, Any] | str:
    """The parameters of AddSecurityGroupRule (without the group), or why the form cannot
    be sent.  Empty ports: every port (TCP, UDP); empty CIDR and no group: any peer."""
    if direction not in DIRECTIONS:
        return f"direction: {' or '.join(DIRECTIONS)}"
    if protocol not in PROTOCOLS:
        return f"protocol: {', '.join(PROTOCOLS)}"
    params: dict[str, Any] = {"type": direction, "protocol": protocol}
    if protocol in PORTED:
        found = parse_ports(ports)
        if found is None:
            return f"ports: a port or a range like 8000-8100, from 1 to {PORT_MAX} (empty: all)"
        if found != (-1, -1):
            params["startPort"], params["endPort"] = found
    elif ports.strip():
        return f"ports: {protocol} has none (leave it empty)"
    cidr = cidr.strip()
    if cidr and remote:
        return "from/to: a CIDR or a remote group, not both"
    if cidr:
        params["allowedCidr"] = cidr
    elif remote:
        params["remoteSecurityGroupUuid"] = str(remote)
    return params


class RuleDialog(SgDialog):
    """Dismissed with AddSecurityGroupRule's parameters (without the group)."""

    verb = "Add"

    def __init__(self, group_name: str, groups: list[Choice]) -> None:
        """``groups``: the groups a rule may name as its peer."""
        super().__init__()
        self.form_title = f"Rule for security group {group_name}"
        self.groups = groups

    def fields(self) -> ComposeResult:
        with Horizontal(id="kind"):
            with Vertical():
                yield Label("Direction", classes="tight")
                yield Select[str](
                    [(d, d) for d in DIRECTIONS],
                    value=DIRECTIONS[0],
                    allow_blank=False,
                    id="direction",
                )
            with Vertical():
                yield Label("Protocol", classes="tight")
                yield Select[str](
                    [(p, p) for p in PROTOCOLS],
                    value=PROTOCOLS[0],
                    allow_blank=False,
                    id="protocol",
                )
        yield Label("Ports (80, or 8000-8100; empty: all)", classes="tight")
        yield Input("", id="ports", restrict=r"[0-9-]*", max_length=11)
        yield Label("CIDR (empty: any)", classes="tight")
        yield Input("", id="cidr", max_length=64, placeholder="e.g. 10.0.10.0/24")
        yield Label("or remote group (its NICs' addresses)", classes="tight")
        yield Select[str](self.groups, prompt="(none)", id="remote")

    def on_mount(self) -> None:
        self.query_one("#ports", Input).focus()

    def action_submit(self) -> None:
        remote = self.query_one("#remote", Select).value
        found = check_rule(
            self.query_one("#direction", Select).value,
            self.query_one("#protocol", Select).value,
            self.query_one("#ports", Input).value,
            self.query_one("#cidr", Input).value,
            None if remote is Select.NULL else remote,
        )
        if isinstance(found, str):
            self.problem(found)
            return
        self.dismiss(found)

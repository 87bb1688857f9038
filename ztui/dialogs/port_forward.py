"""The port-forward dialog: which guest port, over which protocol, from which VIP port.

Its head says which NIC the rule forwards to and which VIP it comes from (the one the
NIC's other rules use, or a new one on the router's public network); the VIP port
follows the guest port (2222 for 22, else the same port) until it is edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from ztui.dialogs.create_vm import spelled
from ztui.dialogs.form import FormDialog
from ztui.reach import PROTOCOLS, SSH_PORT, default_vip_port

TITLE = "Port forward"
PORT_MAX = 65535


@dataclass(frozen=True)
class ForwardRequest:
    """What the dialog asks for: one CreatePortForwardingRule."""

    guest_port: int
    vip_port: int
    protocol: str


def port_of(text: str) -> int | None:
    """The port a field holds, or None when it is not one (1 to 65535)."""
    text = text.strip()
    return int(text) if text.isdigit() and 1 <= int(text) <= PORT_MAX else None


def check_form(guest: str, vip: str, protocol: object) -> str | None:
    """Why the form cannot be sent, or None."""
    if port_of(guest) is None:
        return f"guest port: a whole number from 1 to {PORT_MAX}"
    if protocol not in PROTOCOLS:
        return f"protocol: {' or '.join(PROTOCOLS)}"
    if port_of(vip) is None:
        return f"VIP port: a whole number from 1 to {PORT_MAX}"
    return None


class PortForwardDialog(FormDialog[ForwardRequest]):
    """Dismissed with a :class:`ForwardRequest`, or None when cancelled."""

    DEFAULT_CSS = """
    PortForwardDialog > VerticalScroll {
        width: 64;
    }
    PortForwardDialog #where {
        margin-top: 1;
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="ztui.port-forward.cancel"),
        Binding("ctrl+s", "submit", "Forward", id="ztui.port-forward.submit"),
    ]

    def __init__(self, vm_name: str, where: str) -> None:
        """``where``: the NIC and the VIP the rule would use, in words."""
        super().__init__()
        self.vm_name = vm_name
        self.where = where
        self.offered_for = SSH_PORT
        """The guest port whose default VIP port was offered last (a VIP port that holds
        anything else was typed, and stays)."""

    def compose(self) -> ComposeResult:
        from ztui.screens.help import keys_of

        submit = spelled(keys_of(self.app, "ztui.port-forward.submit", "ctrl+s"))
        cancel = spelled(keys_of(self.app, "ztui.port-forward.cancel", "esc"))
        with VerticalScroll() as box:
            box.border_title = f"{TITLE} to VM {self.vm_name}"
            box.border_subtitle = f"{submit} forward · {cancel} cancel"
            yield Static(self.where, id="where", markup=False)
            yield Label("Guest port")
            yield Input(str(SSH_PORT), id="guest-port", restrict=r"[0-9]*", max_length=5)
            yield Label("Protocol")
            yield Select[str](
                [(p, p) for p in PROTOCOLS], value=PROTOCOLS[0], allow_blank=False, id="protocol"
            )
            yield Label("VIP port (what is reached from outside)")
            yield Input(
                str(default_vip_port(SSH_PORT)), id="vip-port", restrict=r"[0-9]*", max_length=5
            )
            yield Label("", id="error")
            with Horizontal():
                yield Button(f"Cancel ({cancel})", id="cancel")
                yield Button(f"Forward ({submit})", variant="primary", id="forward")

    def on_mount(self) -> None:
        self.query_one("#guest-port", Input).focus()

    @on(Input.Changed, "#guest-port")
    def _guest_port_changed(self, event: Input.Changed) -> None:
        """The VIP port follows the guest port while it holds what was offered."""
        port = port_of(event.value)
        if port is None:
            return
        vip = self.query_one("#vip-port", Input)
        if vip.value == str(default_vip_port(self.offered_for)):
            vip.value = str(default_vip_port(port))
        self.offered_for = port

    def action_submit(self) -> None:
        guest = self.query_one("#guest-port", Input).value
        vip = self.query_one("#vip-port", Input).value
        protocol = self.query_one("#protocol", Select).value
        problem = check_form(guest, vip, protocol)
        if problem is not None:
            self.query_one("#error", Label).update(problem)
            return
        guest_port, vip_port = port_of(guest), port_of(vip)
        assert guest_port is not None and vip_port is not None
        self.dismiss(ForwardRequest(guest_port, vip_port, str(protocol)))

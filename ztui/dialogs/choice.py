"""A choice among a few things (the VM to attach a volume to, a rule or NIC of a security
group): dismissed with the chosen value, or None when cancelled."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Select

from ztui.dialogs.form import FormDialog

Choice = tuple[str, str]
"""(what is shown, the value sent)."""


class ChoiceDialog(FormDialog[str]):
    DEFAULT_CSS = """
    ChoiceDialog > VerticalScroll {
        width: 64;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="ztui.choice.cancel"),
        Binding("ctrl+s", "submit", "OK", id="ztui.choice.submit"),
    ]

    binding_group = "ztui.choice"

    def __init__(self, title: str, what: str, choices: list[Choice], verb: str) -> None:
        super().__init__()
        self.form_title, self.what, self.choices, self.verb = title, what, choices, verb

    def fields(self) -> ComposeResult:
        yield Select[str](self.choices, value=self.choices[0][1], allow_blank=False, id="choice")

    def on_mount(self) -> None:
        self.query_one("#choice", Select).focus()

    def action_submit(self) -> None:
        self.dismiss(str(self.query_one("#choice", Select).value))

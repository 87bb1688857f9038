"""The edit dialog of one global config: its description, type and rules, and its value.

The value is sent with UpdateGlobalConfig; a refusal (the config's rules, or a
plugin that vetoes the change) is shown in the dialog, which stays open so the
value can be fixed.  Success dismisses it with the config's new inventory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from ztui.context import ZtuiContext, context_of
from ztui.dialogs.import_image import describe_error


def rules_text(options: Mapping[str, Any]) -> str:
    """``Integer in [1, 10]`` or ``String, one of: Direct | Delay | Never``."""
    valid = options.get("validValues") or []
    if valid:
        return f"{options.get('type', 'String')}, one of: {' | '.join(map(str, valid))}"
    return str(options.get("rules") or options.get("type") or "")


class EditConfigDialog(ModalScreen[dict[str, Any] | None]):
    """Dismissed with the updated inventory, or None when cancelled."""

    DEFAULT_CSS = """
    EditConfigDialog {
        align: center middle;
    }
    EditConfigDialog > VerticalScroll {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        border-title-align: left;
        background: $surface;
        padding: 0 1;
    }
    EditConfigDialog #description {
        width: 100%;
        margin-top: 1;
    }
    EditConfigDialog .facts {
        color: $text-muted;
    }
    EditConfigDialog Input {
        margin-top: 1;
    }
    EditConfigDialog #error {
        width: 100%;
        color: $text-error;
    }
    EditConfigDialog #buttons {
        height: auto;
        align-horizontal: right;
        margin-top: 1;
    }
    EditConfigDialog #buttons Button {
        margin-left: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="ztui.edit-config.cancel"),
        Binding("ctrl+s", "submit", "Save", id="ztui.edit-config.submit"),
    ]

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.category = str(config["category"])
        self.config_name = str(config["name"])
        self.config = dict(config)
        self.loaded = False
        """True once the config's options (type, rules) are shown (tests wait on it)."""
        self.saving = False

    @property
    def identity(self) -> str:
        return f"{self.category}.{self.config_name}"

    def compose(self) -> ComposeResult:
        default = self.config.get("defaultValue", "")
        with VerticalScroll() as box:
            box.border_title = self.identity
            yield Label(str(self.config.get("description") or ""), id="description")
            yield Label("", id="rules", classes="facts")
            yield Label(f"default: {default}", id="default", classes="facts")
            yield Input(str(self.config.get("value", "")), id="value", select_on_focus=False)
            yield Label("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", variant="primary", id="save")

    def on_mount(self) -> None:
        self.query_one("#value", Input).focus()
        self._load_options()

    @property
    def context(self) -> ZtuiContext:
        return context_of(self.app)

    @work(exclusive=True, group="options", exit_on_error=False)
    async def _load_options(self) -> None:
        reply = await self.context.session.call(
            "GetGlobalConfigOptions", {"category": self.category, "name": self.config_name}
        )
        if reply.success and reply.inventory is not None:
            self.query_one("#rules", Label).update(f"type: {rules_text(reply.inventory)}")
        self.loaded = True

    @property
    def error_text(self) -> str:
        return str(self.query_one("#error", Label).content)

    def action_submit(self) -> None:
        """Send the value (binding ``ztui.edit-config.submit``)."""
        if not self.saving:
            self._save(self.query_one("#value", Input).value)

    @work(exclusive=True, group="save", exit_on_error=False)
    async def _save(self, value: str) -> None:
        self.saving = True
        button = self.query_one("#save", Button)
        button.disabled = True
        try:
            reply = await self.context.session.call(
                "UpdateGlobalConfig",
                {"category": self.category, "name": self.config_name, "value": value},
            )
        finally:
            self.saving = False
            button.disabled = False
        if reply.success:
            self.dismiss(reply.inventory or {**self.config, "value": value})
            return
        self.query_one("#error", Label).update(describe_error(reply.error))
        self.query_one("#value", Input).focus()

    def action_cancel(self) -> None:
        """Close without saving (binding ``ztui.edit-config.cancel``)."""
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    def _save_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted, "#value")
    def _enter(self) -> None:
        self.action_submit()

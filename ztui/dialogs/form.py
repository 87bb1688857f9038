"""What the form dialogs share: Enter in a field or the submit button sends the form,
Esc or the button ``#cancel`` closes the dialog with None."""

from __future__ import annotations

from typing import TypeVar

from textual import on
from textual.screen import ModalScreen
from textual.widgets import Button, Input

T = TypeVar("T")


class FormDialog(ModalScreen[T | None]):
    """A modal form: a subclass checks and sends it in :meth:`action_submit` (its error
    line ``#error`` says what is wrong), and binds its own keys to ``submit`` and
    ``cancel``.  Its fields sit in a bordered VerticalScroll whose title says what it is
    and whose subtitle which keys send and cancel, the buttons in a Horizontal under it."""

    DEFAULT_CSS = """
    FormDialog {
        align: center middle;
    }
    FormDialog > VerticalScroll {
        width: 70;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
        border-title-align: left;
        border-subtitle-align: right;
    }
    FormDialog Label {
        margin-top: 1;
    }
    FormDialog #error {
        color: $text-error;
        margin-top: 0;
    }
    FormDialog Horizontal {
        height: auto;
        align-horizontal: right;
    }
    FormDialog Button {
        margin-left: 1;
    }
    """

    def action_submit(self) -> None:
        raise NotImplementedError

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.action_cancel()
        else:
            self.action_submit()

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_submit()

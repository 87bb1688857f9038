"""What the form dialogs share: Enter in a field or the submit button sends the form,
Esc or the button ``#cancel`` closes the dialog with None."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

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
    FormDialog #what {
        margin-top: 1;
        color: $text-muted;
    }
    FormDialog Horizontal {
        height: auto;
        align-horizontal: right;
    }
    FormDialog Button {
        margin-left: 1;
    }
    """

    form_title: ClassVar[str] = ""
    verb: ClassVar[str] = "OK"
    what: ClassVar[str] = ""
    """A line under the title that says what the verb does ("": none)."""
    binding_group: ClassVar[str] = ""
    """The id prefix of the dialog's ``submit`` and ``cancel`` bindings
    (``ztui.volume-dialog``): :meth:`compose` shows the keys the keymap gives them."""

    def keys(self) -> tuple[str, str]:
        """The keys that send and cancel the form, as a newcomer reads them."""
        from ztui.dialogs.create_vm import spelled
        from ztui.screens.help import keys_of

        return (
            spelled(keys_of(self.app, f"{self.binding_group}.submit", "ctrl+s")),
            spelled(keys_of(self.app, f"{self.binding_group}.cancel", "esc")),
        )

    def compose(self) -> ComposeResult:
        """The title, :attr:`what`, the :meth:`fields`, the error line and the buttons."""
        submit, cancel = self.keys()
        with VerticalScroll() as box:
            box.border_title = self.form_title
            box.border_subtitle = f"{submit} {self.verb.lower()} · {cancel} cancel"
            if self.what:
                yield Static(self.what, id="what", markup=False)
            yield from self.fields()
            yield Label("", id="error")
            with Horizontal():
                yield Button(f"Cancel ({cancel})", id="cancel")
                yield Button(f"{self.verb} ({submit})", variant="primary", id="ok")

    def fields(self) -> ComposeResult:
        yield from ()

    def problem(self, text: str) -> None:
        """Say on the error line what is wrong with the form."""
        self.query_one("#error", Label).update(text)

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

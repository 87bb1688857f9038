"""Asks yes or no before something that cannot be undone.

The question wraps and the dialog grows to fit it (at 80x24 too); a question longer than
the screen scrolls, with the buttons always shown.  :func:`question` words one for one
resource and for several marked ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


@dataclass(frozen=True)
class Wording:
    """What to say about one resource, and about several."""

    one: str
    many: str

    def of(self, count: int) -> str:
        return self.one if count == 1 else self.many


NAMES_SHOWN = 12
"""How many names a question lists before ``and 30 more`` (so its warning stays in view)."""


def question(verb: str, noun: Wording, names: Sequence[str], warning: Wording | None = None) -> str:
    """``Destroy VM web?`` or ``Destroy 2 VMs: web, db?``, then the warning for that many."""
    if len(names) == 1:
        text = f"{verb} {noun.one} {names[0]}?"
    else:
        listed = ", ".join(names[:NAMES_SHOWN])
        if len(names) > NAMES_SHOWN:
            listed += f" and {len(names) - NAMES_SHOWN} more"
        text = f"{verb} {len(names)} {noun.many}: {listed}?"
    return f"{text}\n{warning.of(len(names))}" if warning is not None else text


class ConfirmDialog(ModalScreen[bool]):
    """Dismissed with True only by the confirm button or ``y``; Esc or ``n`` says no."""

    DEFAULT_CSS = """
    ConfirmDialog {
        align: center middle;
    }
    ConfirmDialog > Vertical {
        width: 64;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $error;
        background: $surface;
        padding: 1 2;
    }
    ConfirmDialog #question-box {
        height: auto;
    }
    ConfirmDialog #question {
        width: 100%;
        height: auto;
    }
    ConfirmDialog Horizontal {
        dock: bottom;
        height: auto;
        align-horizontal: right;
        margin-top: 1;
    }
    ConfirmDialog Button {
        margin-left: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="ztui.confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="ztui.confirm.no"),
    ]

    def __init__(self, question: str, confirm_label: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll(id="question-box", can_focus=False):
                yield Static(self.question, id="question", markup=False)
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button(self.confirm_label, variant="error", id="confirm")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

"""The ``:`` command bar: a view name or alias (``:vm``, ``:net``…) or ``:q``, with history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input

if TYPE_CHECKING:
    from ztui.views import View

QUIT_WORDS = ("quit", "q")
"""What quits from the command bar (``:q``, ``:quit``)."""


def command_words(views: Iterable[View]) -> list[str]:
    """What the bar completes, best first: the view names, then their aliases, then quit
    (so ``ne`` suggests ``networks``, not the alias ``net``)."""
    views = list(views)
    words = [v.name for v in views] + [a for v in views for a in v.aliases] + list(QUIT_WORDS)
    return list(dict.fromkeys(w for w in words if len(w) > 1))


class CommandPrompt(ModalScreen[str | None]):
    """One line at the bottom; Enter gives the command, Esc gives None, Up/Down walk history."""

    DEFAULT_CSS = """
    CommandPrompt {
        align: left bottom;
        background: transparent;
    }
    CommandPrompt Input, CommandPrompt Input:focus {
        dock: bottom;  /* one row, no focus border: a tall border leaves no row for text */
        height: 1;
        margin-bottom: 1;  /* over the status line, above the view's footer */
        border: none;
        padding: 0 1;
        background: $boost;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="ztui.command.cancel", show=False),
        Binding("up", "history(-1)", "Previous", id="ztui.command.previous", show=False),
        Binding("down", "history(1)", "Next", id="ztui.command.next", show=False),
        Binding("tab", "complete", "Complete", id="ztui.command.complete", show=False),
    ]

    def __init__(self, words: Sequence[str], history: list[str]) -> None:
        super().__init__()
        self._words = list(words)
        self._history = history
        """The app's history list, appended to in place."""
        self._position = len(history)

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder=":vm :image :net :host :config :ops :dash :help :q  (Tab completes)",
            suggester=SuggestFromList(self._words, case_sensitive=False),
            id="command",
        )

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip().lstrip(":").strip()
        if text and (not self._history or self._history[-1] != text):
            self._history.append(text)
        self.dismiss(text or None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_complete(self) -> None:
        """Take the suggested completion (binding ``ztui.command.complete``)."""
        box = self.query_one(Input)
        box.cursor_position = len(box.value)
        box.action_cursor_right()  # at the end, Input's right arrow accepts the suggestion

    def action_history(self, step: int) -> None:
        if not self._history:
            return
        self._position = max(0, min(len(self._history), self._position + step))
        box = self.query_one(Input)
        box.value = self._history[self._position] if self._position < len(self._history) else ""
        box.cursor_position = len(box.value)

"""How many VMs are in each state, each state in its colour."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ztui.formatting import STATE_STYLES

ORDER = (
    "Running",
    "Starting",
    "Rebooting",
    "Migrating",
    "Pausing",
    "Paused",
    "Resuming",
    "Stopping",
    "Stopped",
    "Created",
    "Destroying",
    "Destroyed",
    "Expunging",
    "Unknown",
    "Crashed",
    "Error",
)
"""States in the order shown (any other state follows, by name)."""
GAP = 2
NO_VMS = "no VMs yet"


def ordered(counts: dict[str, int]) -> list[tuple[str, int]]:
    """The states that have VMs, in :data:`ORDER`."""
    known = [(s, counts[s]) for s in ORDER if counts.get(s)]
    others = sorted((s, n) for s, n in counts.items() if n and s not in ORDER)
    return known + others


class StateCounts(Widget):
    """``Running  12   Stopped  3`` in as many columns as fit, with the total in the title."""

    DEFAULT_CSS = """
    StateCounts {
        height: auto;
        max-height: 13;
        width: 32;
        padding: 0 1;
        border-top: solid $primary;
        border-title-color: $text;
        border-title-style: bold;
        text-wrap: nowrap;
    }
    """

    counts: reactive[dict[str, int]] = reactive(dict, layout=True)
    """VMs by state (``{"Running": 12}``); assign a new dict to show a change."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "VMs"

    def watch_counts(self, counts: dict[str, int]) -> None:
        self.border_title = f"VMs · {sum(n for n in counts.values() if n > 0)}"

    def lines(self, width: int) -> list[Text]:
        entries = ordered(self.counts)
        if not entries:
            return [Text(NO_VMS, style="dim")]
        label = max(len(s) for s, _ in entries)
        digits = max(len(str(n)) for _, n in entries)
        cell = label + 1 + digits
        per_line = max(1, (width + GAP) // (cell + GAP))
        lines: list[Text] = []
        for start in range(0, len(entries), per_line):
            line = Text()
            for i, (state, count) in enumerate(entries[start : start + per_line]):
                if i:
                    line.append(" " * GAP)
                line.append(state.ljust(label), style=STATE_STYLES.get(state, ""))
                line.append(" " + str(count).rjust(digits), style="bold")
            lines.append(line)
        return lines

    def render(self) -> Text:
        return Text("\n").join(self.lines(self.content_size.width or 30))

    @property
    def text(self) -> str:
        """What the panel shows, as plain text (for tests)."""
        return "\n".join(line.plain for line in self.lines(self.content_size.width or 30))

"""The live flow chain of one operation: every step pending, running, done, failed
or rolled back, with timings; a failure shows its error code, description and causes.

The rendering functions here are shared by the panel every view shows (the
operation the app follows) and by the operations view (the selected one).
Records are what ``/operation/update`` carries: ``{uuid, apiName, name, params,
resourceUuid, status, createDate, duration, error, chains: [{id, name, parentId,
status, duration, steps: [{index, name, state, duration, error}]}]}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from ztui.formatting import STATE_STYLES, Formatter

Record = Mapping[str, Any]

STEP_MARKS: dict[str, tuple[str, str]] = {
    "PENDING": ("·", "dim"),
    "RUNNING": ("▶", "bold yellow"),
    "SUCCESS": ("✔", "green"),
    "SKIPPED": ("↷", "dim"),
    "FAILURE": ("✘", "bold red"),
    "REVERTING": ("↺", "yellow"),
    "REVERTED": ("↺", "red"),
    "REVERT_FAILURE": ("‼", "bold red reverse"),
}
"""How each step state is drawn (states are the flow engine's StepState names)."""

OPERATION_STYLES: dict[str, str] = {
    "Running": "bold yellow",
    "Succeeded": "green",
    "Failed": "bold red",
    "RolledBack": "red",
    "RollbackFailed": "bold red reverse",
}
"""Colour of an operation's status (a running operation is work in progress, not a
healthy VM: yellow, where the VM state ``Running`` is green)."""

CHAIN_STYLES: dict[str, str] = {
    "RollingBack": "yellow",
    "RUNNING": "yellow",
    "SUCCEEDED": "green",
    "ROLLED_BACK": "red",
    "ROLLBACK_FAILED": "bold red reverse",
    "FAILED": "bold red",
}
"""Colour of a chain's status beyond the operation statuses (a chain unwinding, and
the engine's FlowChainStatus names)."""


def step_mark(state: str) -> tuple[str, str]:
    return STEP_MARKS.get(_state_name(state), ("?", ""))


def status_style(status: str) -> str:
    """The colour of an operation status (falls back on the shared state colours)."""
    return OPERATION_STYLES.get(status) or STATE_STYLES.get(status, "")


def operation_title(record: Record) -> str:
    """``CreateVmInstance web1`` or, for background work, the chain's name."""
    api = record.get("apiName") or record.get("name") or "operation"
    params = record.get("params") or {}
    name = params.get("name") if isinstance(params, Mapping) else None
    return f"{api} {name}" if name else str(api)


def error_summary(error: Any) -> str:
    """``code: description (details)`` of one error (a dict as the API answers, or text)."""
    if not isinstance(error, Mapping):
        return "" if error is None else str(error)
    text = f"{error.get('code', '')}: {error.get('description', '')}"
    if error.get("details"):
        text += f" ({error['details']})"
    return text


def error_chain(error: Any) -> Iterator[Mapping[str, Any]]:
    """The error, then its cause, its cause's cause…"""
    seen = 0
    while isinstance(error, Mapping) and seen < 64:  # a cycle would be a core bug: stop
        yield error
        error, seen = error.get("cause"), seen + 1


def error_text(error: Any) -> str:
    """Every code, description, details and location of an error and its causes, one
    line each (what a search over an operation's error looks at)."""
    if error is not None and not isinstance(error, Mapping):
        return str(error)
    lines = []
    for cause in error_chain(error):
        line = error_summary(cause)
        if cause.get("location"):
            line += f" at {cause['location']}"
        lines.append(line)
    return "\n".join(lines)


def error_lines(error: Mapping[str, Any] | None, indent: str = "  ") -> list[Text]:
    """An error and its cause chain, one line each: ``code: description (details)``,
    and where in a chain it happened when the core says so."""
    lines: list[Text] = []
    for depth, cause in enumerate(error_chain(error)):
        prefix = indent + ("caused by " if depth else "")
        line = Text(prefix + error_summary(cause), style="red" if depth else "bold red")
        if cause.get("location"):
            line.append(f"  at {cause['location']}", style="dim")
        lines.append(line)
    return lines


def step_failed(step: Mapping[str, Any]) -> bool:
    """Whether the step's own run failed (it may have been rolled back since: the
    failing flow's rollback runs first, so its state is then REVERTED, with the error)."""
    state = _state_name(step.get("state", ""))
    return state == "FAILURE" or (state in ("REVERTED", "REVERTING") and bool(step.get("error")))


def failed_step(record: Record) -> str:
    """The name of the step whose run failed, in the most deeply nested chain (a nested
    chain's failure fails the step that started it too); else of the first step whose
    rollback failed; '' when nothing failed."""
    tree = ChainTree(record.get("chains") or [])
    failing: tuple[int, str] | None = None
    revert_failed = ""
    for chain, depth in tree.walk():
        for step in chain.get("steps") or []:
            if step_failed(step) and (failing is None or depth > failing[0]):
                failing = (depth, str(step.get("name")))
            elif _state_name(step.get("state", "")) == "REVERT_FAILURE" and not revert_failed:
                revert_failed = str(step.get("name"))
    return failing[1] if failing is not None else revert_failed


class ChainTree:
    """An operation's chains as a tree: each nested chain under its parent chain and,
    when the timings tell, under the parent's step that started it."""

    def __init__(self, chains: Sequence[Mapping[str, Any]]) -> None:
        self.chains = list(chains)
        ids = {chain.get("id") for chain in self.chains}
        self.children: dict[Any, list[Mapping[str, Any]]] = {}
        self.roots: list[Mapping[str, Any]] = []
        for chain in self.chains:
            parent = chain.get("parentId")
            if parent and parent in ids and parent != chain.get("id"):
                self.children.setdefault(parent, []).append(chain)
            else:
                self.roots.append(chain)

    def walk(self) -> Iterator[tuple[Mapping[str, Any], int]]:
        """Every chain once, parents first, with its nesting depth."""
        seen: set[int] = set()
        stack = [(chain, 0) for chain in reversed(self.roots)]
        # A parent cycle (a core bug) must not hide a chain: the rest come last.
        leftovers = [(chain, 0) for chain in reversed(self.chains)]
        while stack or leftovers:
            chain, depth = stack.pop() if stack else leftovers.pop()
            if id(chain) in seen:
                continue
            seen.add(id(chain))
            yield chain, depth
            stack += [(kid, depth + 1) for kid in reversed(self.children.get(chain.get("id"), []))]

    def anchored(
        self, chain: Mapping[str, Any]
    ) -> tuple[dict[int, list[Mapping[str, Any]]], list[Mapping[str, Any]]]:
        """The chain's nested chains by the index of the step that started them (the
        last step to start before them), and those it cannot place."""
        by_step: dict[int, list[Mapping[str, Any]]] = {}
        loose: list[Mapping[str, Any]] = []
        steps = [s for s in chain.get("steps") or [] if _number(s.get("startedAt")) is not None]
        for kid in self.children.get(chain.get("id"), []):
            started = _number(kid.get("startedAt"))
            before = [s for s in steps if started is not None and s["startedAt"] <= started]
            if before:
                step = max(before, key=lambda s: s["startedAt"])
                by_step.setdefault(int(step.get("index") or 0), []).append(kid)
            else:
                loose.append(kid)
        return by_step, loose


def render_header(record: Record, fmt: Formatter) -> Text:
    """``CreateVmInstance web1  RolledBack  1.2s`` (background work says so)."""
    status = str(record.get("status", ""))
    head = Text.assemble((operation_title(record), "bold"), "  ", (status, status_style(status)))
    if record.get("duration") is not None:
        head.append(f"  {fmt.duration(record['duration'])}", style="dim")
    if not record.get("apiName"):
        head.append("  (background)", style="dim italic")
    return head


def render_chains(record: Record, fmt: Formatter) -> list[Text]:
    """One line per chain and per step; a nested chain comes under the step that
    started it, indented."""
    tree = ChainTree(record.get("chains") or [])
    lines: list[Text] = []
    seen: set[int] = set()

    def add(chain: Mapping[str, Any], depth: int) -> None:
        if id(chain) in seen:
            return
        seen.add(id(chain))
        lines.append(_chain_line(chain, depth, fmt))
        steps = chain.get("steps") or []
        by_step, loose = tree.anchored(chain)
        for step in steps:
            lines.extend(_step_lines(step, len(steps), depth + 1, fmt))
            for kid in by_step.get(int(step.get("index") or 0), []):
                add(kid, depth + 2)
        for kid in loose:
            add(kid, depth + 1)

    for chain, _depth in tree.walk():
        add(chain, 0)  # roots (and chains a parent cycle would hide); the rest via add
    return lines


def _chain_line(chain: Mapping[str, Any], depth: int, fmt: Formatter) -> Text:
    status = str(chain.get("status") or "Running")
    style = (
        OPERATION_STYLES.get(status)
        or CHAIN_STYLES.get(status)
        or CHAIN_STYLES.get(_state_name(status), "")
    )
    line = Text("  " * depth + str(chain.get("name")), style="italic")
    line.append(" [")
    line.append(status, style=style)
    line.append("]")
    if chain.get("duration") is not None:
        line.append(f"  {fmt.duration(chain['duration'])}", style="dim")
    return line


def _step_lines(step: Mapping[str, Any], total: int, depth: int, fmt: Formatter) -> list[Text]:
    state = _state_name(step.get("state", ""))
    failed = step_failed(step)
    mark, style = step_mark("FAILURE" if failed else state)
    line = Text("  " * depth)
    line.append(f"{mark} ", style=style)
    line.append(f"{step.get('index')}/{total} {step.get('name') or '…'}")
    if step.get("duration") is not None:
        line.append(f"  {fmt.duration(step['duration'])}", style="dim")
    if step.get("revertDuration") is not None:
        line.append(f"  ↺ {fmt.duration(step['revertDuration'])}", style="dim")
    if failed and state != "FAILURE":
        line.append("  rolled back", style="dim")
    lines = [line]
    if (failed or state == "REVERT_FAILURE") and step.get("error"):
        what = "rollback failed: " if state == "REVERT_FAILURE" else ""
        first = next(error_chain(step["error"]), None)
        summary = error_summary(first if first is not None else step["error"])
        lines.append(Text("  " * (depth + 1) + what + summary, style="red"))
    return lines


def render_operation(record: Record, fmt: Formatter) -> Group:
    """The operation's header line, its chains' steps and its error, as Rich renderables."""
    lines = [render_header(record, fmt), *render_chains(record, fmt)]
    lines.extend(error_lines(record.get("error")))
    return Group(*lines)


def plain_text(group: Group) -> str:
    """A rendered operation as plain text, one line per line (for tests and search)."""
    return "\n".join(t.plain for t in group.renderables if isinstance(t, Text))


def _state_name(state: Any) -> str:
    return str(state).upper().replace("-", "_")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class FlowChainPanel(Static):
    """Shows the operations the app follows (several when one verb acted on several
    resources: every chain, one after the other); hidden while there is none."""

    DEFAULT_CSS = """
    FlowChainPanel {
        height: auto;
        max-height: 12;
        overflow-y: auto;
        padding: 0 1;
        border-top: solid $accent;
        background: $panel;
        display: none;
    }
    FlowChainPanel.-shown {
        display: block;
    }
    """

    records: reactive[tuple[dict[str, Any], ...]] = reactive((), always_update=True)
    """The operations shown (as ``/operation/update`` carries them), oldest first."""

    def __init__(self, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fmt = fmt

    @property
    def record(self) -> dict[str, Any] | None:
        """The newest operation shown, or None."""
        return self.records[-1] if self.records else None

    @record.setter
    def record(self, record: dict[str, Any] | None) -> None:
        self.records = () if record is None else (record,)

    def watch_records(self, records: tuple[dict[str, Any], ...]) -> None:
        self.set_class(bool(records), "-shown")
        if records:
            self.update(self._render_all())

    def _render_all(self) -> Group:
        return Group(*(render_operation(r, self._fmt) for r in self.records))

    @property
    def text(self) -> str:
        """The panel's lines as plain text (for tests)."""
        return "\n".join(plain_text(render_operation(r, self._fmt)) for r in self.records)

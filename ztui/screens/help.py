"""The help view: how ztui is driven, and every key binding, generated from the bindings
themselves (so it cannot go stale): where it works, its keys as the user's keymap has
them now, what it does, and the id that ``[ztui.keymap]`` in config.toml takes.

A binding that a shared base class declares (Refresh on every view, the filter on
every table view) is listed once, under where it works, instead of once per view.
Only ztui's own bindings are listed (those with an id, which a keymap can move):
Textual's built-in ones (Tab, ctrl+c, a table's arrow keys) are not."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.dom import DOMNode
from textual.widgets import Input, Static

from ztui.bindings import dialog_types, widget_types, ztui_bindings
from ztui.columns import Column
from ztui.screens.base import ResourceScreen, ZtuiScreen
from ztui.widgets.resource_table import ResourceTable

Row = dict[str, Any]
OFF_READ_ONLY = " (off: --read-only)"
SHARED_PLACES: tuple[tuple[type[DOMNode], str], ...] = (
    (ResourceScreen, "table views"),
    (ZtuiScreen, "every view"),
)
"""Where a binding declared by a shared base class works (most specific first)."""

HELP_COLUMNS: tuple[Column, ...] = (
    Column("where", "where"),
    Column("keys", "keys"),
    Column("id", "id"),
    Column("description", "does"),
)


def keys_shown(app: App[Any], binding: Binding) -> str:
    """The binding's keys as the app's keymap has them now (``S``, ``f2 v``, ``^p``)."""
    keymap: Mapping[str, str] = getattr(app, "_keymap", {}) or {}
    remapped = keymap.get(binding.id) if binding.id else None
    keys = [k.strip() for k in (remapped or binding.key).split(",") if k.strip()]
    display = None if remapped else binding.key_display
    return " ".join(app.get_key_display(binding.with_key(k, key_display=display)) for k in keys)


def action_name(action: str) -> str:
    """``verb('stop')`` → ``verb``; ``app.focus_next`` → ``focus_next``."""
    return action.split("(", 1)[0].rsplit(".", 1)[-1]


def places(app: App[Any]) -> list[tuple[str, type[DOMNode]]]:
    """``(where, class)``: the app, each view's screen, each dialog, the widgets with keys."""
    found: list[tuple[str, type[DOMNode]]] = [("global", type(app))]
    found += [(view.name, view.screen_type) for view in getattr(app, "views", ())]
    found += [(dialog_place(dialog), dialog) for dialog in dialog_types()]
    found += widget_types()
    return found


def dialog_place(dialog: type[DOMNode]) -> str:
    """``ImportImageDialog`` → ``import image``; ``VmDetailScreen`` → ``vm detail``;
    ``CommandPrompt`` → ``command prompt``."""
    name = dialog.__name__.removesuffix("Dialog").removesuffix("Screen") or dialog.__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()


def declaring_class(owner: type[DOMNode], binding: Binding) -> type[DOMNode]:
    """The class (of ``owner`` and its bases) whose BINDINGS holds ``binding``."""
    for cls in owner.__mro__:
        if any(b is binding for b in cls.__dict__.get("BINDINGS", ())):
            return cls
    return owner


def shared_place(cls: type[DOMNode], owner: type[DOMNode]) -> str | None:
    """Where a binding works when a shared base class (not the place's own) declares it."""
    if cls is owner:
        return None
    for base, where in SHARED_PLACES:
        if cls is base:
            return where
    return None


def grouped_bindings(app: App[Any]) -> Iterator[tuple[str, Binding, type[DOMNode]]]:
    """``(where, binding, place class)`` for every binding of ztui, the shared ones once:
    the app's, every view's, every table view's, then each view's, dialog's and widget's
    own."""
    own: list[tuple[str, Binding, type[DOMNode]]] = []
    shared: dict[str, list[tuple[Binding, type[DOMNode]]]] = {}
    seen: set[int] = set()
    for where, owner in places(app):
        for binding in ztui_bindings(owner):
            common = shared_place(declaring_class(owner, binding), owner)
            if common is None:
                own.append((where, binding, owner))
            elif id(binding) not in seen:
                seen.add(id(binding))
                shared.setdefault(common, []).append((binding, owner))

    def common(where: str) -> Iterator[tuple[str, Binding, type[DOMNode]]]:
        return ((where, b, o) for b, o in shared.pop(where, []))

    yield from (row for row in own if row[0] == "global")
    yield from common("every view")
    yield from common("table views")
    yield from (row for row in own if row[0] != "global")
    for where in list(shared):
        yield from common(where)


def binding_rows(app: App[Any]) -> list[Row]:
    """One row per binding of ztui: the app's, every view's shared ones, each view's own,
    each dialog's, each widget's."""
    read_only = bool(getattr(app, "read_only", False))
    views = {f"ztui.view.{view.name}": view for view in getattr(app, "views", ())}
    rows: list[Row] = []
    for where, binding, owner in grouped_bindings(app):
        description = binding.description or binding.tooltip or action_name(binding.action)
        view = views.get(binding.id or "")
        if view is not None:
            description += "  :" + " :".join(view.words)
        mutating = getattr(owner, "MUTATING", frozenset())
        if read_only and action_name(binding.action) in mutating:
            description += OFF_READ_ONLY
        rows.append(
            {
                "key": str(len(rows)),
                "where": where,
                "keys": keys_shown(app, binding),
                "description": description,
                "id": binding.id or "",
            }
        )
    return rows


def keys_of(app: App[Any], binding_id: str, default: str) -> str:
    """The current keys of the binding with this id (``default`` if there is none)."""
    for _where, owner in places(app):
        for binding in ztui_bindings(owner):
            if binding.id == binding_id:
                return keys_shown(app, binding)
    return default


def grammar(app: App[Any]) -> Content:
    """How ztui is driven, in a few lines, with the keys as the keymap has them now."""
    accent = "bold $accent"
    palette = app.get_key_display(Binding(app.COMMAND_PALETTE_BINDING, "command_palette"))
    read_only = "on" if getattr(app, "read_only", False) else "off"
    command, filter_, clear, mark = (
        keys_of(app, "ztui.command", ":"),
        keys_of(app, "ztui.filter", "/"),
        keys_of(app, "ztui.clear", "esc"),
        keys_of(app, "ztui.mark", "space"),
    )
    lines: list[tuple[str, list[str | tuple[str, str]]]] = [
        (f"{command}name", ["goes to a view by name or alias (see global below); :q quits"]),
        (
            f"{filter_}regex",
            [
                "matching rows (",
                (f"{filter_}!regex", accent),
                ": the others); Enter keeps, ",
                (clear, accent),
                " clears",
            ],
        ),
        (mark, ["marks rows: verbs act on the marked rows, else on the cursor's"]),
        (
            palette,
            [
                "this view's actions · ",
                (keys_of(app, "ztui.refresh", "r"), accent),
                " refresh · ",
                (keys_of(app, "ztui.trace.toggle", "t"), accent),
                " flow panel · ",
                (keys_of(app, "ztui.quit", "q"), accent),
                " quit",
            ],
        ),
        (
            "--read-only",
            [f"({read_only}) nothing can change: such keys are dimmed and say why"],
        ),
        (
            "keymap",
            ["config.toml ", ('[ztui.keymap] "ztui.vm.stop" = "S"', "italic"), " (ids below)"],
        ),
    ]
    width = max(len(head) for head, _ in lines)
    return Content("\n").join(
        Content.assemble((head.ljust(width), accent), "  ", *parts) for head, parts in lines
    )


class HelpScreen(ResourceScreen):
    """Every key binding of ztui, searchable with ``/``, under how ztui is driven."""

    VIEW = "help"
    COLUMNS = HELP_COLUMNS

    DEFAULT_CSS = """
    HelpScreen #grammar {
        height: auto;
        max-height: 50%;
        padding: 0 1;
        border-bottom: solid $accent;
    }
    """

    MUTATING: ClassVar[frozenset[str]] = frozenset()

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="ztui.help.back"),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static(id="grammar")
        yield ResourceTable(self.COLUMNS, key_field="key", fmt=self.fmt, id="table")
        yield Input(placeholder="/regex  (!regex inverts; Enter keeps, Esc clears)", id="filter")

    def on_mount(self) -> None:
        super().on_mount()
        if not self.context.connected:
            self.reload()  # the help needs no node

    def action_back(self) -> None:
        """Esc: clear the filter if there is one, else go back to the view the help was
        opened from (binding ``ztui.help.back``)."""
        if self.query_one("#filter", Input).has_class("-shown") or self.table.row_filter.active:
            self.action_clear()
            return
        self.app.switch_mode(self.context.previous_mode)

    async def load(self) -> None:
        self.query_one("#grammar", Static).update(grammar(self.app))
        self.table.show(binding_rows(self.app))
        self.status.show_info(self.summary())

    def summary(self) -> str:
        table = self.table
        text = f"{len(table.rows_by_key)} key bindings"
        if table.row_filter.active:
            text += f" · {table.row_count} match /{table.row_filter.text}"
        return text

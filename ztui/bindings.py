"""Every key binding of ztui, wherever it is declared: for the help screen, the
command palette and checking a keymap's ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from textual.actions import parse
from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen

from ztui.context import context_of


def declared_bindings(node_type: type[DOMNode]) -> Iterator[Binding]:
    """The Binding objects a class and its bases declare (subclass first, no repeats)."""
    seen: set[str] = set()
    for cls in node_type.__mro__:
        for binding in cls.__dict__.get("BINDINGS", ()):
            if isinstance(binding, Binding) and (binding.id or binding.key) not in seen:
                seen.add(binding.id or binding.key)
                yield binding


def dialog_types() -> list[type[DOMNode]]:
    """The dialogs and pushed screens whose bindings the help lists (imported here: they
    import widgets)."""
    from ztui.dialogs.choice import ChoiceDialog
    from ztui.dialogs.command_prompt import CommandPrompt
    from ztui.dialogs.confirm import ConfirmDialog
    from ztui.dialogs.create_vm import CreateVmDialog
    from ztui.dialogs.edit_config import EditConfigDialog
    from ztui.dialogs.import_image import ImportImageDialog
    from ztui.dialogs.port_forward import PortForwardDialog
    from ztui.dialogs.security_group import SgDialog
    from ztui.dialogs.volume import VolumeDialog
    from ztui.screens.console import ConsoleScreen
    from ztui.screens.vm_detail import VmDetailScreen

    return [
        CommandPrompt,
        ConfirmDialog,
        CreateVmDialog,
        PortForwardDialog,
        SgDialog,
        VolumeDialog,
        ChoiceDialog,
        ImportImageDialog,
        EditConfigDialog,
        VmDetailScreen,
        ConsoleScreen,
    ]


def widget_types() -> list[tuple[str, type[DOMNode]]]:
    """``(where, class)`` of the widgets that declare bindings of ztui (``j``/``k`` in every
    table)."""
    from ztui.widgets.resource_table import ResourceTable
    from ztui.widgets.snapshot_tree import SnapshotTree

    return [("tables", ResourceTable), ("snapshot trees", SnapshotTree)]


def ztui_bindings(node_type: type[DOMNode]) -> Iterator[Binding]:
    """The bindings of ztui a class declares: those with an id (Textual's own have none)."""
    return (b for b in declared_bindings(node_type) if b.id)


def every_binding(app: App[Any]) -> list[tuple[str, Binding]]:
    """``(where, binding)`` for the app, each view's screen, each dialog and each widget
    that declares some."""
    found: list[tuple[str, Binding]] = [("global", b) for b in declared_bindings(type(app))]
    for view in context_of(app).views:
        found += [(view.name, b) for b in declared_bindings(view.screen_type)]
    for dialog in dialog_types():
        found += [(dialog.__name__, b) for b in declared_bindings(dialog)]
    for where, widget in widget_types():
        found += [(where, b) for b in ztui_bindings(widget)]
    return found


def why_disabled(screen: Screen[object], key: str) -> str | None:
    """Why the binding ``key`` would run on ``screen`` is disabled now (the node that
    declares it says, through its ``disabled_reason(action, parameters)``); None when the
    key runs something, or nothing is bound to it."""
    active = screen.active_bindings.get(key)
    if active is None or active.enabled:
        return None
    _target, action, parameters = parse(active.binding.action)
    explain = getattr(active.node, "disabled_reason", None)
    if explain is None:
        return f"{active.binding.description or action}: not available now."
    return str(explain(action, parameters))

"""Every key binding of ztui, wherever it is declared: for the help screen, the
command palette and checking a keymap's ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.dom import DOMNode

if TYPE_CHECKING:
    from ztui.app import ZtuiApp


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
    from ztui.dialogs.command_prompt import CommandPrompt
    from ztui.dialogs.confirm import ConfirmDialog
    from ztui.dialogs.create_vm import CreateVmDialog
    from ztui.dialogs.edit_config import EditConfigDialog
    from ztui.dialogs.import_image import ImportImageDialog
    from ztui.screens.console import ConsoleScreen
    from ztui.screens.vm_detail import VmDetailScreen

    return [
        CommandPrompt,
        ConfirmDialog,
        CreateVmDialog,
        ImportImageDialog,
        EditConfigDialog,
        VmDetailScreen,
        ConsoleScreen,
    ]


def every_binding(app: ZtuiApp) -> list[tuple[str, Binding]]:
    """``(where, binding)`` for the app, each view's screen and each dialog."""
    found: list[tuple[str, Binding]] = [("global", b) for b in declared_bindings(type(app))]
    for view in app.views:
        found += [(view.name, b) for b in declared_bindings(view.screen_type)]
    for dialog in dialog_types():
        found += [(dialog.__name__, b) for b in declared_bindings(dialog)]
    return found

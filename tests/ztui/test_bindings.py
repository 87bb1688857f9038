"""Every key binding of ztui has an id (what ``[ztui.keymap]`` names), ids are unique
where the bindings work, the help reaches every screen that declares bindings, and no
view takes a key the whole app uses."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections import defaultdict
from types import ModuleType

import pytest
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen

import ztui
from core.kernel.properties import Properties
from tests.ztui.conftest import own_node
from ztui.app import ZtuiApp
from ztui.bindings import declared_bindings, dialog_types, every_binding


def ztui_modules() -> list[ModuleType]:
    """Every module of the ztui package (imported)."""
    names = [m.name for m in pkgutil.walk_packages(ztui.__path__, prefix="ztui.")]
    return [importlib.import_module(name) for name in sorted(names)]


def ztui_classes() -> list[type[DOMNode]]:
    """Every widget, screen, dialog and app class ztui defines."""
    found: list[type[DOMNode]] = []
    for module in ztui_modules():
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, DOMNode):
                found.append(cls)
    return found


@pytest.fixture
def app(props: Properties) -> ZtuiApp:
    return ZtuiApp(props, connector=own_node)


def test_every_binding_ztui_declares_has_an_id() -> None:
    classes = ztui_classes()
    assert any(c.__name__ == "VmsScreen" for c in classes)
    missing = []
    for cls in classes:
        for binding in cls.__dict__.get("BINDINGS", ()):
            if not isinstance(binding, Binding) or not binding.id:
                missing.append(f"{cls.__module__}.{cls.__qualname__}: {binding!r}")
            elif not binding.id.startswith("ztui."):
                missing.append(f"{cls.__qualname__}: id {binding.id!r} is not ztui.<area>.<verb>")
    assert not missing, "bindings without a proper id:\n" + "\n".join(missing)


def test_binding_ids_are_unique_where_they_work(app: ZtuiApp) -> None:
    ids: dict[str, list[str]] = defaultdict(list)
    for where, binding in every_binding(app):
        if binding.id:
            ids[where].append(binding.id)
    assert set(ids) >= {"global", "vms", "ops", "help", "CommandPrompt", "ConfirmDialog"}
    dupes = {w: sorted({i for i in found if found.count(i) > 1}) for w, found in ids.items()}
    assert not {w: d for w, d in dupes.items() if d}


def test_the_view_keys_are_the_views_bindings(app: ZtuiApp) -> None:
    by_id = {b.id: b for where, b in every_binding(app) if where == "global"}
    for view in app.views:
        binding = by_id[f"ztui.view.{view.name}"]
        assert binding.key == view.key
        assert binding.action == f"view('{view.name}')"
    assert by_id["ztui.view.help"].key == "question_mark"
    assert by_id["ztui.view.ops"].key == "7"


def test_the_help_reaches_every_screen_that_declares_bindings(app: ZtuiApp) -> None:
    """A screen's bindings are listed (and checked against the keymap) only if the
    screen is a view, a base of one, or one of ``dialog_types()``."""
    reachable: set[type[DOMNode]] = set(dialog_types())
    for view in app.views:
        reachable.update(c for c in view.screen_type.__mro__ if issubclass(c, DOMNode))
    unreachable = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in ztui_classes()
        if issubclass(cls, Screen) and cls.__dict__.get("BINDINGS") and cls not in reachable
    ]
    assert not unreachable, (
        "screens whose bindings the help does not list (add them to "
        "ztui.bindings.dialog_types): " + ", ".join(unreachable)
    )


def test_no_view_takes_a_key_of_the_whole_app(app: ZtuiApp) -> None:
    global_keys = {
        key.strip(): b.id
        for b in declared_bindings(type(app))
        if b.id and b.id.startswith("ztui.")
        for key in b.key.split(",")
    }
    clashes = []
    for view in app.views:
        for binding in declared_bindings(view.screen_type):
            for key in binding.key.split(","):
                if key.strip() in global_keys and binding.id and binding.id.startswith("ztui."):
                    clashes.append(f"{view.name}: {binding.id} takes {key} of {global_keys[key]}")
    assert not clashes, "\n".join(clashes)

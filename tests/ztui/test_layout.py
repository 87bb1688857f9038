"""ztui's imports keep its layers apart: only ``ztui/app.py`` (and a ``__main__``) imports
the app, so screens, dialogs and widgets reach what they share through
``ztui.context``; and ztui, a client of the node's API, imports no part of the agent,
the virtual router, libvirt or pyroute2."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import ztui

PACKAGE = Path(ztui.__file__).parent
APP_MODULE = "ztui.app"
APP_IMPORTERS = {"ztui/app.py", "ztui/__main__.py"}
"""The modules that may import the app."""
FOREIGN = ("agent", "virtual_router", "libvirt", "pyroute2")
"""Top-level packages ztui never imports (``core.virtual_router`` is the node's, and fine)."""


def module_name(path: Path) -> str:
    """``ztui/screens/base.py`` → ``ztui.screens.base``; a package is its ``__init__``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in the file, wherever it is (at the top,
    under ``TYPE_CHECKING``, inside a function); ``from a import b`` gives ``a`` and
    ``a.b`` (``b`` may be a module), relative imports made absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(PACKAGE.parent).as_posix()}:{line}"


def test_the_sources_are_found() -> None:
    names = {module_name(p) for p in sources()}
    assert {"ztui", "ztui.app", "ztui.context", "ztui.screens.base"} <= names


def test_only_the_app_module_imports_the_app() -> None:
    offending = [
        f"{where(path, line)} imports {name}"
        for path in sources()
        if path.relative_to(PACKAGE.parent).as_posix() not in APP_IMPORTERS
        for line, name in imported(path)
        if name == APP_MODULE or name.startswith(APP_MODULE + ".")
    ]
    assert not offending, (
        "only ztui/app.py may import ztui.app (reach the shared state through "
        "ztui.context.context_of(self.app)):\n" + "\n".join(offending)
    )


def test_ztui_imports_no_agent_router_libvirt_or_pyroute2() -> None:
    offending = sorted(
        {
            f"{where(path, line)} imports {name.split('.')[0]}"
            for path in sources()
            for line, name in imported(path)
            if name.split(".")[0] in FOREIGN
        }
    )
    assert not offending, (
        "ztui is a client of the node's API; it imports none of "
        f"{', '.join(FOREIGN)}:\n" + "\n".join(offending)
    )

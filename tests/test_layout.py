"""The import rules between the top-level parts, read from the source (no import runs).

- ``contracts`` (what the processes say to each other) imports only the standard library
  and pydantic.
- ``agentkit`` (what both agents stand on) imports only ``contracts`` and libraries.
- The two agents import neither each other nor the core; the core imports neither agent,
  so each speaks to the others only through ``contracts`` over HTTP.
- A plugin in ``plugins/`` is imported by nothing outside it (and its tests), and imports
  only what the project publishes for plugins: the contracts, the agents' kit, the
  kernel, the extension points and models of the core's areas, and the host agent's
  context, extension points and field checks.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("contracts", "agentkit", "agent", "virtual_router", "core", "ztui")

FORBIDDEN: dict[str, set[str]] = {
    "contracts": {"agentkit", "agent", "virtual_router", "core", "ztui"},
    "agentkit": {"agent", "virtual_router", "core", "ztui"},
    "agent": {"virtual_router", "core", "ztui"},
    "virtual_router": {"agent", "core", "ztui"},
    "core": {"agent", "virtual_router", "ztui"},
}

CONTRACTS_MAY_IMPORT = {"contracts", "pydantic"}

ALLOWED: dict[str, set[str]] = {
    # The offline `zstack-lite reset` sweeps the host in-process when no node or agent
    # runs; running the sweep as an agent subprocess would remove this.
    "core/daemon/reset.py": {"agent.lab_cleanup"},
}


def imports(path: Path) -> list[tuple[int, str]]:
    """Every absolute module a file imports, with its line (function-level ones too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(part: str) -> list[str]:
    wrong = []
    for path in sorted((ROOT / part).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for line, module in imports(path):
            top = module.split(".")[0]
            allowed = any(
                module == ok or module.startswith(ok + ".") for ok in ALLOWED.get(relative, ())
            )
            if top in FORBIDDEN[part] and not allowed:
                wrong.append(f"{relative}:{line} imports {module}")
            if part == "contracts" and top not in CONTRACTS_MAY_IMPORT | sys.stdlib_module_names:
                wrong.append(f"{relative}:{line} imports {module} (contracts: stdlib, pydantic)")
    return wrong


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_each_part_imports_only_what_it_may(part: str) -> None:
    assert violations(part) == []


def test_the_allowed_exceptions_are_still_needed() -> None:
    """An exception nobody uses any more goes from the list."""
    for relative, modules in ALLOWED.items():
        used = {module for _, module in imports(ROOT / relative)}
        assert modules <= used, f"{relative} no longer imports {modules - used}"


def test_a_forbidden_import_is_found(tmp_path: Path) -> None:
    """The walk sees imports inside functions and under TYPE_CHECKING too."""
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import core.kernel\n"
        "def f():\n    from agent.app import Agent\n"
    )
    assert [m for _, m in imports(module)] == ["typing", "core.kernel", "agent.app"]


# -- plugins ------------------------------------------------------------------------------
PLUGINS = {
    package.parent.name: package.parent.parent
    for package in sorted((ROOT / "plugins").glob("*/zsl_*/__init__.py"))
}
"""Each plugin's package and its home: ``plugins/<home>/zsl_<name>/``."""
PUBLISHED = re.compile(
    r"(contracts|agentkit|core\.kernel)(\..+)?"
    r"|core\.[a-z0-9_.]+\.(extension_points|models|spi)"
    r"|agent\.(context|extension_points|fields)"
    r"|virtual_router\.(extension_points|interfaces|model)"
)


def _project_files() -> list[Path]:
    return [
        p
        for part in (*PARTS, "tests", "bench", "plugins")
        if (ROOT / part).exists()
        for p in (ROOT / part).rglob("*.py")
    ]


@pytest.mark.parametrize("package", sorted(PLUGINS))
def test_nothing_outside_a_plugin_imports_it(package: str) -> None:
    """But its tests and the benchmarks (which measure what is installed)."""
    home, tests = PLUGINS[package], ROOT / "tests" / "plugins" / PLUGINS[package].name
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _project_files()
        if not any(path.is_relative_to(p) for p in (home, tests, ROOT / "bench"))
        for line, module in imports(path)
        if module.split(".")[0] == package
    ]
    assert wrong == []


@pytest.mark.parametrize("package", sorted(PLUGINS))
def test_a_plugin_imports_only_what_is_published(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted(PLUGINS[package].rglob("*.py"))
        for line, module in imports(path)
        if module.split(".")[0] in PARTS and not PUBLISHED.fullmatch(module)
    ]
    assert wrong == []
    assert any(True for _ in PLUGINS[package].rglob("*.py"))  # the walk found the plugin

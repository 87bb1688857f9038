"""A past revision of the project, runnable beside the working tree, so that a benchmark
can compare the two side by side in one run.

The revision's files come from ``git archive`` into a temporary directory.  Its plugins
are found through entry points, which an installed package declares; so the directory
also gets a ``.dist-info`` with the revision's own entry points, and a process run with
:func:`baseline_env` finds the revision's code and plugins before the working tree's.
Nothing is installed and the repository is not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class NoBaseline(RuntimeError):
    """The revision is not in this clone (a shallow one, say)."""


@contextmanager
def baseline_tree(revision: str) -> Iterator[Path]:
    """The files of ``revision`` with its entry points, removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="zsl-baseline-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", revision],
            capture_output=True,
        )
        if archive.returncode != 0:
            raise NoBaseline(f"revision {revision}: {archive.stderr.decode().strip()}")
        tree = root / "tree"
        tree.mkdir()
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        _write_dist_info(tree, root / "dist")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def baseline_env(root: Path) -> dict[str, str]:
    """The environment of a process that runs the revision in ``root``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "dist"), str(root / "tree")])
    return env


def _write_dist_info(tree: Path, into: Path) -> None:
    project = tomllib.loads((tree / "pyproject.toml").read_text())["project"]
    name, version = project["name"], project["version"]
    info = into / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines: list[str] = []
    for group, points in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in points.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    _shadow_plugins(name, into)


def _shadow_plugins(project: str, into: Path) -> None:
    """Hide the installed plugin distributions (plugins/*) from the revision: their entry
    points name code of the working tree.  The first distribution of a name on the path
    wins, so an empty one of the same name in ``into`` shadows each."""
    from importlib.metadata import distributions

    for dist in distributions():
        name = dist.metadata["Name"]
        groups = {ep.group for ep in dist.entry_points}
        if name == project or not any(g.startswith("zstack_lite.") for g in groups):
            continue
        info = into / f"{name.replace('-', '_')}-{dist.version}.dist-info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {dist.version}\n"
        )
        (info / "entry_points.txt").write_text("")

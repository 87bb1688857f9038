"""Where the schema's migrations are: the core's Alembic versions, and each installed
plugin's own (ZStack lets a plugin bring its tables without touching the core's schema).

A plugin with tables names the package holding its ``versions/`` directory in the
entry-point group ``zstack_lite.migrations``; its first revision has its own branch label
and ``depends_on`` the core revision it needs.  Every installed plugin's location is
used, enabled or not: a database a disabled plugin once migrated still names its
revisions, and Alembic fails on a revision it cannot locate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path

from alembic.config import Config

ENTRY_POINT_GROUP = "zstack_lite.migrations"
CORE = Path(__file__).resolve().parents[1] / "migrations"
"""The core's Alembic script directory (env.py and ``versions/``)."""


def plugin_locations() -> list[Path]:
    """The ``versions/`` directories of the installed plugins' migrations, by name."""
    found = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        versions = Path(str(files(ep.value))) / "versions"
        if not versions.is_dir():
            raise RuntimeError(f"migrations of plugin {ep.name} ({ep.value}) have no versions/")
        found.append(versions)
    return found


def alembic_config(url: str, extra_locations: Sequence[Path] | None = None) -> Config:
    """An Alembic configuration over the core's versions and the plugins' (``None``: the
    installed plugins')."""
    extra = plugin_locations() if extra_locations is None else list(extra_locations)
    cfg = Config()
    cfg.set_main_option("script_location", str(CORE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option(
        "version_locations", os.pathsep.join(str(p) for p in [CORE / "versions", *extra])
    )
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg

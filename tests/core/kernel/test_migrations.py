"""Plugin-owned migrations: a plugin's own Alembic versions are applied with the core's,
as a branch of their own, and a database a missing plugin migrated is refused clearly."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from core.kernel import migrations
from core.kernel.db import Database
from tests.core.kernel.test_db import HEAD as CORE_HEAD

WIDGETS = Path(__file__).parent / "plugin_migrations" / "versions"


def versions(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'zstack.db'}")
    yield db
    db.close()


def test_a_plugins_versions_are_applied_with_the_cores(fresh: Database) -> None:
    fresh.migrate([WIDGETS])
    assert "widget" in inspect(fresh.engine).get_table_names()
    assert versions(fresh) == {CORE_HEAD, "w001"}
    fresh.migrate([WIDGETS])  # nothing left to do
    assert versions(fresh) == {CORE_HEAD, "w001"}


def test_a_plugin_installed_later_adds_its_tables_to_a_migrated_database(fresh: Database) -> None:
    fresh.migrate([])
    assert versions(fresh) == {CORE_HEAD}
    fresh.migrate([WIDGETS])
    assert versions(fresh) == {CORE_HEAD, "w001"}


def test_a_database_a_missing_plugin_migrated_is_refused_naming_why(fresh: Database) -> None:
    fresh.migrate([WIDGETS])
    with pytest.raises(RuntimeError, match="plugin that is not installed"):
        fresh.migrate([])


def test_installed_plugins_are_found_through_their_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = [
        EntryPoint("widgets", "tests.core.kernel.plugin_migrations", migrations.ENTRY_POINT_GROUP)
    ]
    monkeypatch.setattr(migrations, "entry_points", lambda group: found)
    assert migrations.plugin_locations() == [WIDGETS.resolve()]
    broken = [EntryPoint("broken", "tests.core.kernel", migrations.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(migrations, "entry_points", lambda group: broken)
    with pytest.raises(RuntimeError, match=r"broken .* have no versions/"):
        migrations.plugin_locations()

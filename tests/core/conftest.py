"""Fixtures of the core's tests: a migrated SQLite database of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.kernel.db import Database


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "zstack.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    """A database with the schema of the newest migration, closed after the test."""
    database = Database(f"sqlite:///{db_path}")
    database.migrate()
    yield database
    database.close()

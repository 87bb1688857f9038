"""Persistence: SQLite in WAL mode, Alembic migrations that match the models, resource columns."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session

import core.models  # noqa: F401  (fills Base.metadata)
from core.kernel.db import RESOURCE_TYPES, Base, Database, camel, new_uuid, resource_model, snake
from core.kernel.node import ManagementNode
from core.operation_log.models import OperationLogVO  # (until core/models.py lists it)
from core.zone.models import ZoneVO
from tests.conftest import ok

for _plugin in entry_points(group="zstack_lite.plugins"):
    _plugin.load()  # an installed plugin's models (its migrations run with the core's)

# Every model's table: the migrations must create each one (and nothing else).
TABLES = set(Base.metadata.tables)
HEAD = "0012"


def _applied(current: tuple[str, ...], url: str) -> bool:
    """Whether ``current`` (alembic_version's rows) are every head, the core's HEAD among
    what they stand for (a plugin's branch that depends on it names only its own head)."""
    from alembic.script import ScriptDirectory

    from core.kernel.migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config(url))
    applied = {r.revision for r in script.iterate_revisions(current, "base") if r is not None}
    return set(script.get_heads()) <= applied and HEAD in applied


def test_sqlite_is_in_wal_mode(db: Database, db_path: Path) -> None:
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    # WAL is recorded in the file: any other connection sees it too
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


async def test_node_database_is_wal(node: ManagementNode) -> None:
    raw = sqlite3.connect(node.data_dir / "zstack.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_migrations_create_the_schema(db: Database) -> None:
    assert OperationLogVO.__tablename__ in TABLES
    tables = set(inspect(db.engine).get_table_names())
    assert tables == TABLES | {"alembic_version"}
    with db.engine.connect() as conn:
        assert _applied(MigrationContext.configure(conn).get_current_heads(), db.url)


def test_migrations_are_idempotent(db: Database) -> None:
    def add(session: Session) -> str:
        zone = ZoneVO(name="keep-me")
        session.add(zone)
        session.flush()
        return zone.uuid

    uuid = db.run_sync(add)
    db.migrate()
    db.migrate()
    assert db.run_sync(lambda s: s.get(ZoneVO, uuid).name) == "keep-me"  # type: ignore[union-attr]
    with db.engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    assert _applied(tuple(v for (v,) in versions), db.url)


def test_an_old_schema_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    from alembic import command

    from core.kernel.migrations import alembic_config

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        cfg = alembic_config(db.url, [])
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
        assert "host" not in inspect(db.engine).get_table_names()
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO zone (uuid, name, state, type, create_date, last_op_date) "
                    "VALUES ('z1', 'old-zone', 'Enabled', 'zstack', '2026-01-01', '2026-01-01')"
                )
            )
        db.migrate()
        assert set(inspect(db.engine).get_table_names()) == TABLES | {"alembic_version"}
        assert db.run_sync(lambda s: s.get(ZoneVO, "z1").name) == "old-zone"  # type: ignore[union-attr]
    finally:
        db.close()


def test_migrated_schema_matches_the_models(db: Database) -> None:
    assert set(Base.metadata.tables) == TABLES
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []


def test_migration_on_a_fresh_data_dir_through_a_second_database(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "x.db"
    path.parent.mkdir()
    first = Database(f"sqlite:///{path}")
    try:
        first.migrate()
    finally:
        first.close()
    second = Database(f"sqlite:///{path}")
    try:
        second.migrate()
        assert set(inspect(second.engine).get_table_names()) >= TABLES
    finally:
        second.close()


def test_every_resource_carries_the_common_columns() -> None:
    assert {"ZoneVO", "ManagementNodeVO"} <= set(RESOURCE_TYPES)
    for rtype, model in RESOURCE_TYPES.items():
        columns = {c.name for c in model.__table__.columns}  # type: ignore[attr-defined]
        assert {"uuid", "name", "description", "create_date", "last_op_date"} <= columns, rtype
        fields = model.inventory_fields()
        assert {"uuid", "name", "description", "createDate", "lastOpDate"} <= set(fields), rtype
        assert model.__table__.c.uuid.primary_key  # type: ignore[attr-defined]
        assert model.__table__.c.description.nullable  # type: ignore[attr-defined]
        assert not model.__table__.c.name.nullable  # type: ignore[attr-defined]
    assert resource_model("ZoneVO") is ZoneVO
    with pytest.raises(KeyError, match="unknown resource type NopeVO"):
        resource_model("NopeVO")


async def test_resource_inventory(node: ManagementNode) -> None:
    zone = await ok(node, "CreateZone", name="z", description="d")
    assert re.fullmatch(r"[0-9a-f]{32}", zone["uuid"])
    assert zone["name"] == "z" and zone["description"] == "d"
    assert zone["createDate"] <= zone["lastOpDate"]  # ISO strings: they sort as dates
    created = datetime.fromisoformat(zone["createDate"])
    updated = await ok(node, "UpdateZone", uuid=zone["uuid"], name="z2")
    assert updated["createDate"] == zone["createDate"]
    assert datetime.fromisoformat(updated["lastOpDate"]) > created
    assert updated["name"] == "z2" and updated["description"] == "d"


async def test_database_run_commits_or_rolls_back(db: Database) -> None:
    def add(session: Session) -> str:
        zone = ZoneVO(name="ok")
        session.add(zone)
        session.flush()
        return zone.uuid

    uuid = await db.run(add)

    def add_then_fail(session: Session) -> None:
        session.add(ZoneVO(name="rolled-back"))
        session.flush()
        raise RuntimeError("after the insert")

    with pytest.raises(RuntimeError, match="after the insert"):
        await db.run(add_then_fail)
    names = await db.run(lambda s: sorted(s.scalars(select(ZoneVO.name))))
    assert names == ["ok"]
    assert (await db.run(lambda s: s.get(ZoneVO, uuid))) is not None


def test_naming_helpers() -> None:
    assert camel("last_op_date") == "lastOpDate"
    assert camel("uuid") == "uuid"
    assert camel("l3_network_uuids") == "l3NetworkUuids"
    assert snake("lastOpDate") == "last_op_date"
    assert snake(camel("resource_uuid")) == "resource_uuid"
    uuids = {new_uuid() for _ in range(100)}
    assert len(uuids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", u) for u in uuids)


def test_0011_keeps_every_tag_and_makes_long_tags_fit(tmp_path: Path) -> None:
    """A database of 0010 with tags: after 0011 they are there with their digests, unique
    on their resource by digest, and a tag of 100 kB fits."""
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    from core.kernel.migrations import alembic_config
    from core.tag.models import SystemTagVO, tag_digest

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        cfg = alembic_config(db.url, [])
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0010")
        with db.engine.begin() as conn:
            for uuid, tag in (("t1", "hostNat"), ("t2", "libvirt::version::9.0.0")):
                conn.execute(
                    text(
                        "INSERT INTO system_tag (uuid, resource_uuid, resource_type, tag, type, "
                        "create_date, last_op_date, inherent) VALUES (:u, 'r1', 'L3NetworkVO', "
                        ":t, 'System', '2026-01-01', '2026-01-01', 0)"
                    ),
                    {"u": uuid, "t": tag},
                )
        db.migrate()

        def check(session: Session) -> None:
            rows = session.scalars(select(SystemTagVO).order_by(SystemTagVO.uuid)).all()
            assert [(r.tag, r.tag_digest) for r in rows] == [
                ("hostNat", tag_digest("hostNat")),
                ("libvirt::version::9.0.0", tag_digest("libvirt::version::9.0.0")),
            ]
            assert session.scalar(select(SystemTagVO.uuid).where(SystemTagVO.tag_is("hostNat")))
            long_tag = "userdata::" + "A" * 100_000
            session.add(SystemTagVO(resource_uuid="r1", resource_type="X", tag=long_tag, type="S"))
            session.flush()
            session.add(SystemTagVO(resource_uuid="r1", resource_type="X", tag=long_tag, type="S"))
            with pytest.raises(IntegrityError):
                session.flush()

        db.run_sync(check)
    finally:
        db.close()

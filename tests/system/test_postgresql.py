"""The node on a real PostgreSQL server: migrations, global configs, queries, tags.

The server is private to the test: a cluster made with initdb in a temp dir,
listening only on a Unix socket there, stopped and removed afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import core.models  # noqa: F401  (fills Base.metadata)
from core.kernel.db import Base
from core.kernel.node import ManagementNode
from core.kernel.properties import load
from core.tag.models import SystemTagVO

pytestmark = pytest.mark.system
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def _as_postgres(*cmd: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, text=True
    )


@pytest.fixture
def pg_socket_dir() -> Iterator[Path]:
    assert PG_BIN is not None, "PostgreSQL is not installed (make test installs it)"
    # Not under pytest's tmp dir: that one is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="zstack-lite-pg-"))
    data = base / "data"
    started = False
    try:
        shutil.chown(base, "postgres")
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        _as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-w",
            "-o",
            f"-k {base} -c listen_addresses=''",
            "start",
        )
        started = True
        yield base
    finally:
        if started:
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


async def test_node_runs_on_postgresql(pg_socket_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[core]\ndata_dir = "{tmp_path / "data"}"\n'
        f'db_url = "postgresql+psycopg://postgres@/postgres?host={pg_socket_dir}"\n'
    )
    props = load(config, env={})
    async with ManagementNode(props, serve_socket=False) as node:
        assert node.db is not None and node.db.engine.dialect.name == "postgresql"
        reply = await node.call(
            "UpdateGlobalConfig", {"category": "kvm", "name": "vm.migrationQuantity", "value": "7"}
        )
        assert reply.success, reply.error
        refused = await node.call(
            "UpdateGlobalConfig", {"category": "kvm", "name": "vm.migrationQuantity", "value": "0"}
        )
        assert not refused.success
        zone = await node.call("CreateZone", {"name": "pg-zone"})
        assert zone.success, zone.error
        # A system tag of 100 kB (user data) fits, unique on its resource by its digest
        # (no btree over the tag itself); the migrated schema is the models' here too.
        assert node.db is not None
        assert await node.db.run(_add_long_tag) == LONG_TAG
        with pytest.raises(IntegrityError):
            await node.db.run(_add_long_tag)
        assert await node.db.run(_schema_diffs) == []

    # A second start re-runs the migrations (a no-op) and keeps every value.
    async with ManagementNode(props, serve_socket=False) as node:
        reply = await node.call(
            "QueryGlobalConfig", {"conditions": ["category=kvm", "name=vm.migrationQuantity"]}
        )
        assert [c["value"] for c in reply.inventories or []] == ["7"]
        zones = await node.call("QueryZone", {"conditions": ["name~=pg-%"], "count": True})
        assert zones.total == 1
        tags = await node.call("QuerySystemTag", {"conditions": ["tag~=zstack-lite::%"]})
        assert tags.inventories and tags.inventories[0]["inherent"] is True


LONG_TAG = "userdata::" + "A" * 100_000


def _add_long_tag(session: Session) -> str | None:
    session.add(
        SystemTagVO(resource_uuid="r1", resource_type="VmInstanceVO", tag=LONG_TAG, type="System")
    )
    session.flush()
    return session.scalar(select(SystemTagVO.tag).where(SystemTagVO.tag_is(LONG_TAG)))


def _schema_diffs(session: Session) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(session.connection()), Base.metadata))

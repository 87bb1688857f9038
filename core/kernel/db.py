"""Persistence: SQLAlchemy 2.x models, sessions and Alembic migrations.

The database is the source of truth; everything on the host is derived from it.
SQLite in WAL mode under the data dir is the default; any SQLAlchemy URL (e.g.
PostgreSQL) works too.  The schema is created and upgraded only by the Alembic
migrations in ``core/migrations``.

Async code reaches the database through :meth:`Database.run`, which runs a
function with a fresh session in the database's worker thread(s) and commits
when it returns (rolls back when it raises).  With SQLite there is a single
worker, so writes never contend for the file lock.
"""

from __future__ import annotations

import asyncio
import re
import uuid as uuid_mod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import DateTime, String, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from core.kernel.db_worker import DatabaseWorker

T = TypeVar("T")
InTransaction = Session | Connection
"""What functions that only execute Core statements take: they serve both ``run`` and
``run_core``."""


def new_uuid() -> str:
    """ZStack's resource uuids: 32 lower-case hex characters, no dashes."""
    return uuid_mod.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def camel(name: str) -> str:
    """``last_op_date`` -> ``lastOpDate``: inventory field names are ZStack's camelCase."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


class Base(DeclarativeBase):
    """Base of every model.  ``to_inventory()`` gives the camelCase view the API returns."""

    inventory_exclude: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def inventory_fields(cls) -> dict[str, str]:
        """camelCase inventory field -> model attribute (computed once per class)."""
        cached = cls.__dict__.get("_inventory_fields")
        if cached is None:
            cached = {
                camel(col.key): col.key
                for col in cls.__mapper__.column_attrs
                if col.key not in cls.inventory_exclude
            }
            cls._inventory_fields = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def inventory_columns(cls) -> list[Any]:
        """The model's table columns in inventory order, to select plain rows with
        (``inventory_of``): a Core statement, several times cheaper than loading objects.

        Hot paths write their statements with table columns (``Model.__table__.c``), not
        model attributes: an attribute makes SQLAlchemy treat the statement as an ORM one
        (session synchronisation, entity set-up), which doubles its cost."""
        columns = cls.__mapper__.columns
        return [columns[attr] for attr in cls.inventory_fields().values()]

    @classmethod
    def inventory_of(cls, row: Sequence[Any]) -> dict[str, Any]:
        """The inventory of a row selected with ``inventory_columns()``."""
        return {
            field: value.isoformat() if isinstance(value, datetime) else value
            for field, value in zip(cls.inventory_fields(), row, strict=True)
        }

    def to_inventory(self) -> dict[str, Any]:
        return self.inventory_of([getattr(self, attr) for attr in self.inventory_fields().values()])


# resource type name (ZStack's VO name, e.g. "ZoneVO") -> model class
RESOURCE_TYPES: dict[str, type[Base]] = {}


class ResourceMixin:
    """Columns every resource carries: uuid, name, description, createDate, lastOpDate."""

    resource_type: ClassVar[str]

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(2048), default=None)
    create_date: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_op_date: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        rtype = cls.__dict__.get("resource_type")
        if rtype:
            RESOURCE_TYPES[rtype] = cls  # type: ignore[assignment]


def resource_model(resource_type: str) -> type[Base]:
    try:
        return RESOURCE_TYPES[resource_type]
    except KeyError:
        known = ", ".join(sorted(RESOURCE_TYPES))
        raise KeyError(f"unknown resource type {resource_type} (known: {known})") from None


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._worker: DatabaseWorker | None = DatabaseWorker(self) if self.is_sqlite else None
        self._executor = (
            None if self.is_sqlite else ThreadPoolExecutor(max_workers=8, thread_name_prefix="db")
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        with self.session() as session:
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a transaction, off the event loop."""
        if self._worker is not None:
            return await self._worker.submit(fn, orm=True)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, fn)

    async def run_core(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(connection)`` in a transaction, off the event loop.

        For hot paths whose statements are all Core (built once, on table columns): a
        transaction on a bare connection costs a third of one in a Session.
        """
        if self._worker is not None:
            return await self._worker.submit(fn, orm=False)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_core_sync, fn)

    def _run_core_sync(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.begin() as connection:
            return fn(connection)

    def in_transaction_on(self, connection: Connection, fn: Callable[..., T], orm: bool) -> T:
        """``fn`` in a transaction on ``connection`` (the worker's own), with a session
        bound to it if ``orm``."""
        if not orm:
            with connection.begin():
                return fn(connection)
        with self._sessions(bind=connection) as session, session.begin():
            return fn(session)

    def migrate(self, extra_locations: Sequence[Path] | None = None) -> None:
        """Create or upgrade the schema to the newest migrations: the core's and each
        plugin's (``extra_locations``, default: the installed plugins',
        :mod:`core.kernel.migrations`)."""
        from alembic import command
        from alembic.util import CommandError

        from core.kernel.migrations import alembic_config

        cfg = alembic_config(self.url, extra_locations)
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "heads")
            except CommandError as exc:
                if "Can't locate revision" not in str(exc):
                    raise
                raise RuntimeError(
                    f"the database was migrated by a plugin that is not installed ({exc}); "
                    "install it again (it may stay disabled in config.toml)"
                ) from None
        if self.is_sqlite and self.engine.url.database:
            # It holds the agents' tokens; SQLite gives its -wal/-shm files the same mode.
            for suffix in ("", "-wal", "-shm"):
                path = Path(self.engine.url.database + suffix)
                if path.exists():
                    path.chmod(0o600)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL stays consistent and survives a crash of the process; only a
    # power loss can drop the last transactions.  FULL costs an fsync per commit.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()

"""The SQLite database's one worker thread.

SQLite lets one writer at a time hold the file, so the node sends every transaction to
a single thread.  That thread is where a create spends most of its time (about twenty
short transactions each), so it is built for them rather than taken from a
``ThreadPoolExecutor``:

* it keeps one connection open, so a transaction costs a ``BEGIN`` and a ``COMMIT``,
  not a pool checkout, a reset and a checkin as well;
* while more work is queued it goes on to it, and hands the finished results back to
  the event loop together, with one wake-up of the loop for the lot.

A job whose caller was cancelled before the job began is not run (as with
``run_in_executor``); one that has begun runs to its commit or rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from core.kernel.db import Database

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BATCH = 16
"""At most this many results wait for the loop while the worker goes on with the queue."""

_Job = tuple[Callable[..., Any], bool, asyncio.Future[Any], asyncio.AbstractEventLoop]
_Result = tuple[asyncio.Future[Any], BaseException | None, Any]


class DatabaseWorker:
    """Runs transactions one after another in its own thread, on its own connection."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopped = False

    async def submit(self, fn: Callable[..., T], *, orm: bool) -> T:
        """``fn(session)`` (``orm``) or ``fn(connection)`` in one transaction."""
        if self._stopped:
            raise RuntimeError("the database is closed")
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, orm, future, loop))
        return await future

    def stop(self) -> None:
        """Finish the queued jobs, then close the connection and end the thread."""
        self._stopped = True
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._serve, name="db", daemon=True)
                    self._thread.start()

    def _serve(self) -> None:
        connection: Connection | None = None
        finished: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        pending = 0
        try:
            while True:
                try:
                    job = self._jobs.get(block=pending == 0)
                except queue.Empty:
                    pending = _hand_back(finished)
                    continue
                if job is None:
                    return
                fn, orm, future, loop = job
                if future.cancelled():
                    continue
                error: BaseException | None = None
                value: Any = None
                try:
                    if connection is None:  # a database that cannot be opened fails the job
                        connection = self._db.engine.connect()
                    value = self._db.in_transaction_on(connection, fn, orm)
                except BaseException as exc:  # handed to the caller, like run_in_executor
                    error = exc
                    if connection is not None:
                        connection = _usable(connection)
                finished.setdefault(loop, []).append((future, error, value))
                pending += 1
                if pending >= MAX_BATCH:
                    pending = _hand_back(finished)
        finally:
            _hand_back(finished)
            if connection is not None:
                connection.close()


def _usable(connection: Connection) -> Connection | None:
    """The connection after a failed job: still usable, or None to open a new one."""
    try:
        if connection.in_transaction():
            connection.rollback()
        if not connection.invalidated:
            return connection
    except Exception:
        log.exception("the database connection failed; opening a new one")
    connection.close()
    return None


def _hand_back(finished: dict[asyncio.AbstractEventLoop, list[_Result]]) -> int:
    """Give each loop its finished results in one call; returns 0 (nothing pending)."""
    for loop, results in finished.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_resolve, results)
    finished.clear()
    return 0


def _resolve(results: list[_Result]) -> None:
    for future, error, value in results:
        if future.done():  # cancelled while it ran
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

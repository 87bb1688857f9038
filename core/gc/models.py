"""The table of GC jobs (ZStack's GarbageCollectorVO)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin

IDLE = "Idle"
"""Waiting for its next run time or a trigger event."""
PROCESSING = "Processing"
"""Running now (a job found Processing at node start was interrupted: it is Idle again)."""
DONE = "Done"
"""Succeeded; kept gc.done.retention seconds, then deleted."""
STATUSES = (IDLE, PROCESSING, DONE)


class GarbageCollectorVO(ResourceMixin, Base):
    """One clean-up to retry until it succeeds; ``lastOpDate`` is when it last changed."""

    __tablename__ = "garbage_collector"
    resource_type = "GarbageCollectorVO"

    runner: Mapped[str] = mapped_column(String(255))
    """Dotted path of its core.gc.job.GarbageCollectorJob subclass."""
    resource_uuid: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    """The resource it cleans up after, if any."""
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(32), index=True, default=IDLE)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Runs so far (successful or not)."""
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), default=None)
    """The error of its last failed run (or the one it was submitted with)."""
    trigger_events: Mapped[list[str]] = mapped_column(JSON, default=list)
    """Events that run it at once (core.gc.triggers)."""
    next_run_time: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    """When it runs next if no trigger comes first; None once Done."""

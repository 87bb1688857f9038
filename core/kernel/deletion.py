"""ZStack's delayed deletion: with ``<category>.deletionPolicy = Delay``, a resource
deleted (or destroyed) longer than ``<category>.expungePeriod`` seconds ago is
expunged by a periodic task, through the public API so its queue and checks apply."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from core.kernel.db import utcnow

log = logging.getLogger(__name__)


async def expunge_expired(
    node: Any, category: str, model: Any, column: str, deleted: str, api: str
) -> None:
    """Call ``api`` (e.g. ExpungeVmInstance) on every ``model`` row whose ``column`` is
    ``deleted`` and whose lastOpDate is older than the category's expunge period."""
    from core.config.plugin import GlobalConfigPlugin

    configs = node.plugin(GlobalConfigPlugin)
    if configs.value(category, "deletionPolicy") != "Delay":
        return
    before = utcnow() - timedelta(seconds=configs.value(category, "expungePeriod"))
    expired = await node.db.run(
        lambda s: list(
            s.scalars(
                select(model.uuid).where(
                    getattr(model, column) == deleted, model.last_op_date < before
                )
            )
        )
    )
    for uuid in expired:
        reply = await node.call(api, {"uuid": uuid})
        if not reply.success:
            log.warning("%s of %s failed: %s", api, uuid, reply.error)

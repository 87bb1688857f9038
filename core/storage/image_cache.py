"""Images copied onto primary storage once (ZStack's ImageCacheVO): the backing file of
every volume made from the image there.  A cache is never rolled back or removed while
the node runs (it serves every later volume), so a hit is remembered."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from core.image.models import ImageVO
from core.kernel.rest import AgentClient
from core.storage.models import ImageCacheVO

_cache_locks: dict[tuple[str, str], asyncio.Lock] = {}
_cache_paths: dict[tuple[str, str], str] = {}


async def image_cache(
    node: Any,
    agent: AgentClient,
    primary_storage: dict[str, Any],
    source: str,
    image_uuid: str,
    task_uuid: str = "",
) -> str:
    """The path of image ``image_uuid``'s copy on ``primary_storage`` (``{uuid, url}``),
    copied by ``agent`` from ``source`` (its backup storage file) on first use, with
    progress reported under ``task_uuid``."""
    key = (primary_storage["uuid"], image_uuid)
    cached = _cache_paths.get(key)
    if cached is not None:
        return cached
    lock = _cache_locks.setdefault(key, asyncio.Lock())
    async with lock:

        def find(session: Session) -> tuple[str | None, str]:
            cache = session.scalars(
                select(ImageCacheVO).where(
                    ImageCacheVO.primary_storage_uuid == primary_storage["uuid"],
                    ImageCacheVO.image_uuid == image_uuid,
                )
            ).first()
            image = session.get(ImageVO, image_uuid)
            fmt = (image.format if image is not None else None) or "qcow2"
            return (cache.install_url if cache else None), fmt

        existing, fmt = await node.db.run(find)
        if existing is not None:
            _cache_paths[key] = existing
            return existing
        path = f"{primary_storage['url']}/imagecache/{image_uuid}.{fmt}"
        answer = await agent.send(
            kvm.DownloadImageCmd(url=source, install_path=path, checksum="", task_uuid=task_uuid),
            timeout=3600,
            cancellable=True,  # a cancelled copy leaves no partial cache behind
        )

        def record(session: Session) -> None:
            session.add(
                ImageCacheVO(
                    primary_storage_uuid=primary_storage["uuid"],
                    image_uuid=image_uuid,
                    install_url=path,
                    size=answer.actual_size,
                )
            )

        await node.db.run(record)
        _cache_paths[key] = path
        return path

"""An image's rows, as an add or an export that failed takes them away."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.tag.plugin import delete_all_tags


def forget_image(session: Session, image_uuid: str) -> None:
    """The image's copies on backup storage, its row and its tags go (no-op if gone)."""
    for ref in session.scalars(
        select(ImageBackupStorageRefVO).where(ImageBackupStorageRefVO.image_uuid == image_uuid)
    ):
        session.delete(ref)
    session.flush()
    image = session.get(ImageVO, image_uuid)
    if image is not None:
        session.delete(image)
    delete_all_tags(session, [image_uuid])

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import Boolean, ColumnElement, DateTime, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, validates

from core.kernel.db import Base, new_uuid, utcnow


class _TagColumns:
    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    resource_uuid: Mapped[str] = mapped_column(String(32), index=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    tag: Mapped[str] = mapped_column(String(256), index=True)
    type: Mapped[str] = mapped_column(String(16))
    create_date: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_op_date: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


def tag_digest(tag: str) -> str:
    """The sha256 (hex) of a system tag: what makes it unique on its resource and finds it
    by equality (the tag itself is text of any length, e.g. ``userdata::<base64>``, which no
    btree index takes whole)."""
    return hashlib.sha256(tag.encode()).hexdigest()


class SystemTagVO(_TagColumns, Base):
    __tablename__ = "system_tag"
    __table_args__ = (UniqueConstraint("resource_uuid", "tag_digest"),)
    inventory_exclude = frozenset({"tag_digest"})

    tag: Mapped[str] = mapped_column(Text)
    tag_digest: Mapped[str] = mapped_column(String(64), index=True)
    """:func:`tag_digest` of ``tag``, set whenever ``tag`` is."""
    inherent: Mapped[bool] = mapped_column(Boolean, default=False)
    """Written by the system; the API refuses to delete it."""

    @validates("tag")
    def _set_digest(self, _key: str, tag: str) -> str:
        self.tag_digest = tag_digest(tag)
        return tag

    @classmethod
    def tag_is(cls, tag: str) -> ColumnElement[bool]:
        """The condition ``tag == <tag>``, through the digest's index."""
        return cls.tag_digest == tag_digest(tag)


class UserTagVO(_TagColumns, Base):
    __tablename__ = "user_tag"
    __table_args__ = (UniqueConstraint("resource_uuid", "tag"),)

"""System tags of any length: ``tag`` is text, unique on its resource by its sha256

A tag such as ``userdata::<base64>`` holds kilobytes; no btree index takes that whole
(PostgreSQL refuses an entry over about 2.7 kB), so uniqueness and equality go through
``tag_digest`` (sha256 hex), and ``tag`` loses its index (a LIKE on it is always made
with its resource's uuid, which is indexed).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 02:00:00.000000
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
"""How batch mode names SQLite's unnamed unique constraints (so that it can drop one)."""


def _fill_digests() -> None:
    conn = op.get_bind()
    table = sa.table("system_tag", sa.column("uuid"), sa.column("tag"), sa.column("tag_digest"))
    rows = conn.execute(sa.select(table.c.uuid, table.c.tag)).all()
    for uuid, tag in rows:
        digest = hashlib.sha256(tag.encode()).hexdigest()
        conn.execute(table.update().where(table.c.uuid == uuid).values(tag_digest=digest))


def upgrade() -> None:
    op.add_column("system_tag", sa.Column("tag_digest", sa.String(length=64), nullable=True))
    _fill_digests()
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "system_tag", recreate="always" if sqlite else "auto", naming_convention=NAMES
    ) as batch_op:
        batch_op.drop_constraint(
            "uq_system_tag_resource_uuid" if sqlite else "system_tag_resource_uuid_tag_key",
            type_="unique",
        )
        batch_op.drop_index("ix_system_tag_tag")
        batch_op.alter_column(
            "tag", type_=sa.Text(), existing_type=sa.String(length=256), existing_nullable=False
        )
        batch_op.alter_column("tag_digest", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(
            "uq_system_tag_resource_uuid_tag_digest", ["resource_uuid", "tag_digest"]
        )
        batch_op.create_index("ix_system_tag_tag_digest", ["tag_digest"], unique=False)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "system_tag", recreate="always" if sqlite else "auto", naming_convention=NAMES
    ) as batch_op:
        batch_op.drop_index("ix_system_tag_tag_digest")
        batch_op.drop_constraint("uq_system_tag_resource_uuid_tag_digest", type_="unique")
        batch_op.alter_column("tag", type_=sa.String(length=256), existing_type=sa.Text())
        batch_op.create_index("ix_system_tag_tag", ["tag"], unique=False)
        batch_op.create_unique_constraint("uq_system_tag_resource_uuid", ["resource_uuid", "tag"])
        batch_op.drop_column("tag_digest")

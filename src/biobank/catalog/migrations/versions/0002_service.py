"""The node as a service: attributes for DICOMweb/DIMSE matching, users, tokens, access log.

Adds ``patient.patient_name``, ``study.referring_physician_name``,
``series.extra_attributes`` and ``instance.bits_allocated`` (QIDO-RS/C-FIND match and return
them from columns), and the
tables of :mod:`biobank.access`: ``app_user``, ``api_token``, ``access_log`` (append-only:
triggers refuse UPDATE and DELETE) and ``study_owner`` (what an uploader may read back).

Rows catalogued before this revision keep NULL in the new columns; their headers still hold
the values (``biobank verify`` does not need them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = "access_log is append-only: entries are never changed or deleted"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    """Add the columns, the access tables and the append-only triggers."""
    with op.batch_alter_table("patient") as batch:
        batch.add_column(sa.Column("patient_name", sa.Text(), nullable=True))
    op.create_index("ix_patient_patient_name", "patient", ["patient_name"])
    with op.batch_alter_table("study") as batch:
        batch.add_column(sa.Column("referring_physician_name", sa.Text(), nullable=True))
    with op.batch_alter_table("series") as batch:
        batch.add_column(sa.Column("extra_attributes", sa.Text(), nullable=True))
    with op.batch_alter_table("instance") as batch:
        batch.add_column(sa.Column("bits_allocated", sa.Integer(), nullable=True))

    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("oidc_subject", sa.String(255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_app_user"),
        sa.UniqueConstraint("username", name="uq_app_user_username"),
        sa.UniqueConstraint("oidc_subject", name="uq_app_user_oidc_subject"),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        _timestamp("created_at"),
        _timestamp("expires_at", nullable=True),
        _timestamp("revoked_at", nullable=True),
        _timestamp("last_used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_token"),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], name="fk_api_token_user_id_app_user"),
        sa.UniqueConstraint("token_id", name="uq_api_token_token_id"),
    )
    op.create_index("ix_api_token_user_id", "api_token", ["user_id"])
    op.create_table(
        "access_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        _timestamp("at"),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_log"),
    )
    op.create_index("ix_access_log_at", "access_log", ["at"])
    op.create_index("ix_access_log_username", "access_log", ["username"])
    op.create_table(
        "study_owner",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("study_id", "user_id", name="pk_study_owner"),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name="fk_study_owner_study_id_study"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name="fk_study_owner_user_id_app_user"
        ),
    )
    op.create_index("ix_study_owner_user_id", "study_owner", ["user_id"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END; $$"
        )
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER access_log_no_{event.lower()} BEFORE {event} ON access_log "
                "FOR EACH ROW EXECUTE FUNCTION access_log_append_only()"
            )
        op.execute(
            "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only()"
        )
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER access_log_no_{event.lower()} BEFORE {event} ON access_log "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_table("study_owner")
    op.drop_table("access_log")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS access_log_append_only()")
    op.drop_table("api_token")
    op.drop_table("app_user")
    with op.batch_alter_table("instance") as batch:
        batch.drop_column("bits_allocated")
    with op.batch_alter_table("series") as batch:
        batch.drop_column("extra_attributes")
    with op.batch_alter_table("study") as batch:
        batch.drop_column("referring_physician_name")
    op.drop_index("ix_patient_patient_name", "patient")
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("patient_name")

"""Background jobs, and the curation of series (classification, QC, decisions, history).

``job``: one row per (kind, subject) with its state, attempts and result.
``series_curation``: one row per series: its label and QC, the decision (approve,
quarantine, exclude) with its reasons and who took it. ``curation_event``: the history of
every classification, measurement and decision.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 09:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``job``."""
    op.create_table(
        "job",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="3"),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_job"),
        sa.UniqueConstraint("kind", "subject", name="uq_job_kind_subject"),
    )
    op.create_index("ix_job_state_kind", "job", ["state", "kind"])

    op.create_table(
        "series_curation",
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(16), nullable=True),
        sa.Column("orientation", sa.String(16), nullable=True),
        sa.Column("is3d", sa.Boolean(), nullable=True),
        sa.Column("derived", sa.Boolean(), nullable=True),
        sa.Column("contrast", sa.Boolean(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("needs_review", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("classification", sa.Text(), nullable=True),
        sa.Column("classified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("qc", sa.Text(), nullable=True),
        sa.Column("qc_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("conformance", sa.Text(), nullable=True),
        sa.Column("conformance_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("decision_source", sa.String(16), nullable=False),
        sa.Column("decision_reasons", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("series_id", name="pk_series_curation"),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name="fk_series_curation_series_id_series"
        ),
    )
    op.create_index("ix_series_curation_decision", "series_curation", ["decision"])
    op.create_index("ix_series_curation_label", "series_curation", ["label"])
    op.create_table(
        "curation_event",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_curation_event"),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name="fk_curation_event_series_id_series"
        ),
    )
    op.create_index("ix_curation_event_series_id", "curation_event", ["series_id"])


def downgrade() -> None:
    """Drop what :func:`upgrade` created."""
    op.drop_table("curation_event")
    op.drop_table("series_curation")
    op.drop_table("job")

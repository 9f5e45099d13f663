"""``cohort_series``: the cohort compiler's per-series table (``biobank.catalog.cohort_series``).

One row per catalogued series of an OMOP person with the values the series criteria of a
cohort count compare, and two covering indexes. On an existing node the table is filled
from the catalogue here (:func:`biobank.catalog.cohort_series.rebuild`); from then on the
write paths keep it up to date.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 12:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from biobank.catalog.cohort_series import rebuild
from biobank.catalog.omop import COHORT_SERIES_INDEXES

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``cohort_series`` and its indexes, and fill it."""
    op.create_table(
        "cohort_series",
        sa.Column("series_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("body_part_examined", sa.String(length=64), nullable=True),
        sa.Column("manufacturer", sa.Text(), nullable=True),
        sa.Column("manufacturer_lower", sa.Text(), nullable=True),
        sa.Column("label", sa.String(length=16), nullable=True),
        sa.Column("orientation", sa.String(length=16), nullable=True),
        sa.Column("is3d", sa.Boolean(), nullable=True),
        sa.Column("contrast", sa.Boolean(), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("image_date", sa.Date(), nullable=True),
        sa.Column("age_span", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("series_id", name=op.f("pk_cohort_series")),
    )
    for name, columns in COHORT_SERIES_INDEXES:
        op.create_index(name, "cohort_series", list(columns))
    rebuild(op.get_bind())


def downgrade() -> None:
    """Drop it."""
    for name, _columns in reversed(COHORT_SERIES_INDEXES):
        op.drop_index(name, table_name="cohort_series")
    op.drop_table("cohort_series")

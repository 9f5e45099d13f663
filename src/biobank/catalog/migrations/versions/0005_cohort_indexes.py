"""Indexes of the cohort compiler (``biobank.catalog.cohort``).

A clinical-variable criterion reads ``measurement``/``observation`` by source value and value
(numbers, or codes) and only needs ``person_id`` back: covering indexes answer it from the
index alone. A diagnosis reads ``condition_occurrence`` by concept or by submitted code. A
person's series are reached through ``study.patient_id`` → ``series.study_id``;
``ix_series_cohort`` covers the series columns the criteria compare and the series id, so
neither SQLite nor PostgreSQL (index-only scans) reads the (wide) series rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 11:30:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    (
        "ix_measurement_source_number",
        "measurement",
        ["measurement_source_value", "value_as_number", "person_id"],
    ),
    (
        "ix_measurement_source_code",
        "measurement",
        ["measurement_source_value", "value_source_value", "person_id"],
    ),
    (
        "ix_observation_source_number",
        "observation",
        ["observation_source_value", "value_as_number", "person_id"],
    ),
    (
        "ix_observation_source_code",
        "observation",
        ["observation_source_value", "value_source_value", "person_id"],
    ),
    (
        "ix_condition_occurrence_concept_person",
        "condition_occurrence",
        ["condition_concept_id", "person_id"],
    ),
    (
        "ix_condition_occurrence_source_person",
        "condition_occurrence",
        ["condition_source_value", "person_id"],
    ),
    (
        "ix_series_cohort",
        "series",
        ["study_id", "modality", "body_part_examined", "series_date", "manufacturer", "id"],
    ),
)


def upgrade() -> None:
    """Create the cohort indexes."""
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    """Drop them."""
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)

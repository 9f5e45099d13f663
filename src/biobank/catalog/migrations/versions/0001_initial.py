"""The initial catalogue: patient, study, series, instance, ingest_batch, ingest_item.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NOT_STORED = "outcome <> 'stored'"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _counter(name: str, type_: sa.types.TypeEngine[int] | None = None) -> sa.Column[Any]:
    return sa.Column(name, type_ or sa.Integer(), nullable=False, server_default="0")


def upgrade() -> None:
    """Create the tables and their indexes."""
    op.create_table(
        "ingest_batch",
        sa.Column("id", sa.String(32), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("profile", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("expected", sa.Integer(), nullable=True),
        _counter("received"),
        _counter("stored"),
        _counter("duplicate"),
        _counter("conflict"),
        _counter("rejected"),
        _counter("quarantined"),
        _counter("bytes_in", sa.BigInteger()),
        sa.PrimaryKeyConstraint("id", name="pk_ingest_batch"),
    )
    op.create_index("ix_ingest_batch_started_at", "ingest_batch", ["started_at"])

    op.create_table(
        "patient",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("patient_pseudonym", sa.String(64), nullable=False),
        sa.Column("patient_sex", sa.String(16), nullable=True),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        _counter("number_of_studies"),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_patient"),
        sa.UniqueConstraint("patient_pseudonym", name="uq_patient_patient_pseudonym"),
    )

    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("study_time", sa.String(32), nullable=True),
        sa.Column("accession_number", sa.String(64), nullable=True),
        sa.Column("study_id", sa.String(64), nullable=True),
        sa.Column("study_description", sa.Text(), nullable=True),
        sa.Column("modalities_in_study", sa.String(128), nullable=False),
        _counter("number_of_series"),
        _counter("number_of_instances"),
        _counter("stored_bytes", sa.BigInteger()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_study"),
        sa.ForeignKeyConstraint(["patient_id"], ["patient.id"], name="fk_study_patient_id_patient"),
        sa.UniqueConstraint("study_instance_uid", name="uq_study_study_instance_uid"),
    )
    op.create_index("ix_study_patient_id_study_date", "study", ["patient_id", "study_date"])
    op.create_index("ix_study_study_date", "study", ["study_date"])

    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("modality", sa.String(16), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("series_description", sa.Text(), nullable=True),
        sa.Column("body_part_examined", sa.String(64), nullable=True),
        sa.Column("series_date", sa.Date(), nullable=True),
        sa.Column("series_time", sa.String(32), nullable=True),
        sa.Column("protocol_name", sa.Text(), nullable=True),
        sa.Column("manufacturer", sa.Text(), nullable=True),
        sa.Column("manufacturer_model_name", sa.Text(), nullable=True),
        _counter("number_of_instances"),
        _counter("metadata_instances"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("metadata", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_series"),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name="fk_series_study_id_study"),
        sa.UniqueConstraint("series_instance_uid", name="uq_series_series_instance_uid"),
    )
    op.create_index("ix_series_study_id_modality", "series", ["study_id", "modality"])
    op.create_index("ix_series_modality", "series", ["modality"])

    op.create_table(
        "instance",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("columns", sa.Integer(), nullable=True),
        sa.Column("number_of_frames", sa.Integer(), nullable=True),
        sa.Column("blob_digest", sa.String(64), nullable=False),
        sa.Column("blob_size", sa.BigInteger(), nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=True),
        _timestamp("created_at"),
        sa.Column("header", sa.Text(), nullable=False),
        sa.Column("deid_record", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_instance"),
        sa.ForeignKeyConstraint(["series_id"], ["series.id"], name="fk_instance_series_id_series"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["ingest_batch.id"], name="fk_instance_batch_id_ingest_batch"
        ),
        sa.UniqueConstraint("sop_instance_uid", name="uq_instance_sop_instance_uid"),
    )
    op.create_index(
        "ix_instance_series_id_instance_number", "instance", ["series_id", "instance_number"]
    )
    op.create_index("ix_instance_blob_digest", "instance", ["blob_digest"])

    op.create_table(
        "ingest_item",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=True),
        sa.Column("blob_digest", sa.String(64), nullable=True),
        sa.Column("blob_size", sa.BigInteger(), nullable=True),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_ingest_item"),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["ingest_batch.id"], name="fk_ingest_item_batch_id_ingest_batch"
        ),
    )
    op.create_index("ix_ingest_item_batch_id", "ingest_item", ["batch_id"])
    op.create_index("ix_ingest_item_outcome", "ingest_item", ["outcome"])
    # Partial: only items that did not become an instance (see schema.IngestItem).
    for column in ("sop_instance_uid", "blob_digest"):
        op.create_index(
            f"ix_ingest_item_{column}",
            "ingest_item",
            [column],
            sqlite_where=sa.text(NOT_STORED),
            postgresql_where=sa.text(NOT_STORED),
        )


def downgrade() -> None:
    """Drop everything (children first)."""
    op.drop_table("ingest_item")
    op.drop_table("instance")
    op.drop_table("series")
    op.drop_table("study")
    op.drop_table("patient")
    op.drop_table("ingest_batch")

"""OMOP CDM 5.4 + the Medical Imaging extension (MI-CDM), and the clinical platform tables.

The OMOP tables follow the OHDSI PostgreSQL DDL (column names, order, types, NOT NULL); see
``biobank.catalog.omop`` for the deliberate deviations. The platform tables keep the
records as submitted (sealed), their versions, the OMOP rows each produced, imports, and
curators' data queries with their history. The concept seed (``catalog/data/
omop_concepts.csv``) is loaded into ``concept``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 11:00:00+00:00
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from importlib import resources

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the OMOP, MI-CDM and clinical tables; load the concept seed."""
    op.create_table(
        "care_site",
        sa.Column("care_site_id", sa.Integer(), nullable=False),
        sa.Column("care_site_name", sa.String(length=255), nullable=True),
        sa.Column("place_of_service_concept_id", sa.Integer(), nullable=True),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("care_site_source_value", sa.String(length=50), nullable=True),
        sa.Column("place_of_service_source_value", sa.String(length=50), nullable=True),
        sa.PrimaryKeyConstraint("care_site_id", name=op.f("pk_care_site")),
    )
    op.create_table(
        "cdm_source",
        sa.Column("cdm_source_name", sa.String(length=255), nullable=False),
        sa.Column("cdm_source_abbreviation", sa.String(length=25), nullable=False),
        sa.Column("cdm_holder", sa.String(length=255), nullable=False),
        sa.Column("source_description", sa.Text(), nullable=True),
        sa.Column("source_documentation_reference", sa.String(length=255), nullable=True),
        sa.Column("cdm_etl_reference", sa.String(length=255), nullable=True),
        sa.Column("source_release_date", sa.Date(), nullable=False),
        sa.Column("cdm_release_date", sa.Date(), nullable=False),
        sa.Column("cdm_version", sa.String(length=10), nullable=True),
        sa.Column("cdm_version_concept_id", sa.Integer(), nullable=False),
        sa.Column("vocabulary_version", sa.String(length=20), nullable=False),
    )
    op.create_table(
        "clinical_import",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("form", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("submitter", sa.String(length=128), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unchanged", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rejected", sa.Integer(), server_default="0", nullable=False),
        sa.Column("problems", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinical_import")),
    )
    op.create_index(
        "ix_clinical_import_started_at", "clinical_import", ["started_at"], unique=False
    )
    op.create_table(
        "concept",
        sa.Column("concept_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("concept_name", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=20), nullable=False),
        sa.Column("vocabulary_id", sa.String(length=20), nullable=False),
        sa.Column("concept_class_id", sa.String(length=20), nullable=False),
        sa.Column("standard_concept", sa.String(length=1), nullable=True),
        sa.Column("concept_code", sa.String(length=50), nullable=False),
        sa.Column("valid_start_date", sa.Date(), nullable=False),
        sa.Column("valid_end_date", sa.Date(), nullable=False),
        sa.Column("invalid_reason", sa.String(length=1), nullable=True),
        sa.PrimaryKeyConstraint("concept_id", name=op.f("pk_concept")),
    )
    op.create_index(
        "ix_concept_vocabulary_id_concept_code",
        "concept",
        ["vocabulary_id", "concept_code"],
        unique=False,
    )
    op.create_table(
        "condition_occurrence",
        sa.Column("condition_occurrence_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("condition_concept_id", sa.Integer(), nullable=False),
        sa.Column("condition_start_date", sa.Date(), nullable=False),
        sa.Column("condition_start_datetime", sa.DateTime(), nullable=True),
        sa.Column("condition_end_date", sa.Date(), nullable=True),
        sa.Column("condition_end_datetime", sa.DateTime(), nullable=True),
        sa.Column("condition_type_concept_id", sa.Integer(), nullable=False),
        sa.Column("condition_status_concept_id", sa.Integer(), nullable=True),
        sa.Column("stop_reason", sa.String(length=20), nullable=True),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("visit_occurrence_id", sa.Integer(), nullable=True),
        sa.Column("visit_detail_id", sa.Integer(), nullable=True),
        sa.Column("condition_source_value", sa.String(length=50), nullable=True),
        sa.Column("condition_source_concept_id", sa.Integer(), nullable=True),
        sa.Column("condition_status_source_value", sa.String(length=50), nullable=True),
        sa.PrimaryKeyConstraint("condition_occurrence_id", name=op.f("pk_condition_occurrence")),
    )
    op.create_index(
        "ix_condition_occurrence_person_id", "condition_occurrence", ["person_id"], unique=False
    )
    op.create_table(
        "death",
        sa.Column("person_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("death_date", sa.Date(), nullable=False),
        sa.Column("death_datetime", sa.DateTime(), nullable=True),
        sa.Column("death_type_concept_id", sa.Integer(), nullable=True),
        sa.Column("cause_concept_id", sa.Integer(), nullable=True),
        sa.Column("cause_source_value", sa.String(length=50), nullable=True),
        sa.Column("cause_source_concept_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_death")),
    )
    op.create_table(
        "drug_exposure",
        sa.Column("drug_exposure_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("drug_concept_id", sa.Integer(), nullable=False),
        sa.Column("drug_exposure_start_date", sa.Date(), nullable=False),
        sa.Column("drug_exposure_start_datetime", sa.DateTime(), nullable=True),
        sa.Column("drug_exposure_end_date", sa.Date(), nullable=False),
        sa.Column("drug_exposure_end_datetime", sa.DateTime(), nullable=True),
        sa.Column("verbatim_end_date", sa.Date(), nullable=True),
        sa.Column("drug_type_concept_id", sa.Integer(), nullable=False),
        sa.Column("stop_reason", sa.String(length=20), nullable=True),
        sa.Column("refills", sa.Integer(), nullable=True),
        sa.Column("quantity", sa.Float(), nullable=True),
        sa.Column("days_supply", sa.Integer(), nullable=True),
        sa.Column("sig", sa.Text(), nullable=True),
        sa.Column("route_concept_id", sa.Integer(), nullable=True),
        sa.Column("lot_number", sa.String(length=50), nullable=True),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("visit_occurrence_id", sa.Integer(), nullable=True),
        sa.Column("visit_detail_id", sa.Integer(), nullable=True),
        sa.Column("drug_source_value", sa.String(length=50), nullable=True),
        sa.Column("drug_source_concept_id", sa.Integer(), nullable=True),
        sa.Column("route_source_value", sa.String(length=50), nullable=True),
        sa.Column("dose_unit_source_value", sa.String(length=50), nullable=True),
        sa.PrimaryKeyConstraint("drug_exposure_id", name=op.f("pk_drug_exposure")),
    )
    op.create_index("ix_drug_exposure_person_id", "drug_exposure", ["person_id"], unique=False)
    op.create_table(
        "episode",
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("episode_concept_id", sa.Integer(), nullable=False),
        sa.Column("episode_start_date", sa.Date(), nullable=False),
        sa.Column("episode_start_datetime", sa.DateTime(), nullable=True),
        sa.Column("episode_end_date", sa.Date(), nullable=True),
        sa.Column("episode_end_datetime", sa.DateTime(), nullable=True),
        sa.Column("episode_parent_id", sa.Integer(), nullable=True),
        sa.Column("episode_number", sa.Integer(), nullable=True),
        sa.Column("episode_object_concept_id", sa.Integer(), nullable=False),
        sa.Column("episode_type_concept_id", sa.Integer(), nullable=False),
        sa.Column("episode_source_value", sa.String(length=50), nullable=True),
        sa.Column("episode_source_concept_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("episode_id", name=op.f("pk_episode")),
    )
    op.create_index("ix_episode_person_id", "episode", ["person_id"], unique=False)
    op.create_table(
        "episode_event",
        sa.Column("episode_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("episode_event_field_concept_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "episode_id",
            "event_id",
            "episode_event_field_concept_id",
            name=op.f("pk_episode_event"),
        ),
    )
    op.create_index("ix_episode_event_event_id", "episode_event", ["event_id"], unique=False)
    op.create_table(
        "image_feature",
        sa.Column("image_feature_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("image_occurrence_id", sa.Integer(), nullable=False),
        sa.Column("image_feature_event_field_concept_id", sa.Integer(), nullable=True),
        sa.Column("image_feature_event_id", sa.Integer(), nullable=True),
        sa.Column("image_feature_concept_id", sa.Integer(), nullable=False),
        sa.Column("image_feature_type_concept_id", sa.Integer(), nullable=False),
        sa.Column("image_finding_concept_id", sa.Integer(), nullable=True),
        sa.Column("image_finding_id", sa.Integer(), nullable=True),
        sa.Column("anatomic_site_concept_id", sa.Integer(), nullable=True),
        sa.Column("alg_system", sa.Text(), nullable=True),
        sa.Column("alg_datetime", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("image_feature_id", name=op.f("pk_image_feature")),
    )
    op.create_index(
        "ix_image_feature_image_occurrence_id",
        "image_feature",
        ["image_occurrence_id"],
        unique=False,
    )
    op.create_table(
        "image_occurrence",
        sa.Column("image_occurrence_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("procedure_occurrence_id", sa.Integer(), nullable=False),
        sa.Column("visit_occurrence_id", sa.Integer(), nullable=True),
        sa.Column("anatomic_site_concept_id", sa.Integer(), nullable=True),
        sa.Column("wadors_uri", sa.Text(), nullable=True),
        sa.Column("local_path", sa.Text(), nullable=True),
        sa.Column("image_occurrence_date", sa.Date(), nullable=False),
        sa.Column("image_study_uid", sa.Text(), nullable=False),
        sa.Column("image_series_uid", sa.Text(), nullable=False),
        sa.Column("modality_concept_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("image_occurrence_id", name=op.f("pk_image_occurrence")),
    )
    op.create_index(
        "ix_image_occurrence_image_study_uid", "image_occurrence", ["image_study_uid"], unique=False
    )
    op.create_index(
        "ix_image_occurrence_person_id", "image_occurrence", ["person_id"], unique=False
    )
    op.create_index(
        "uq_image_occurrence_image_series_uid",
        "image_occurrence",
        ["image_series_uid"],
        unique=True,
    )
    op.create_table(
        "measurement",
        sa.Column("measurement_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("measurement_concept_id", sa.Integer(), nullable=False),
        sa.Column("measurement_date", sa.Date(), nullable=False),
        sa.Column("measurement_datetime", sa.DateTime(), nullable=True),
        sa.Column("measurement_time", sa.String(length=10), nullable=True),
        sa.Column("measurement_type_concept_id", sa.Integer(), nullable=False),
        sa.Column("operator_concept_id", sa.Integer(), nullable=True),
        sa.Column("value_as_number", sa.Float(), nullable=True),
        sa.Column("value_as_concept_id", sa.Integer(), nullable=True),
        sa.Column("unit_concept_id", sa.Integer(), nullable=True),
        sa.Column("range_low", sa.Float(), nullable=True),
        sa.Column("range_high", sa.Float(), nullable=True),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("visit_occurrence_id", sa.Integer(), nullable=True),
        sa.Column("visit_detail_id", sa.Integer(), nullable=True),
        sa.Column("measurement_source_value", sa.String(length=50), nullable=True),
        sa.Column("measurement_source_concept_id", sa.Integer(), nullable=True),
        sa.Column("unit_source_value", sa.String(length=50), nullable=True),
        sa.Column("unit_source_concept_id", sa.Integer(), nullable=True),
        sa.Column("value_source_value", sa.String(length=50), nullable=True),
        sa.Column("measurement_event_id", sa.Integer(), nullable=True),
        sa.Column("meas_event_field_concept_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("measurement_id", name=op.f("pk_measurement")),
    )
    op.create_index("ix_measurement_person_id", "measurement", ["person_id"], unique=False)
    op.create_table(
        "observation",
        sa.Column("observation_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("observation_concept_id", sa.Integer(), nullable=False),
        sa.Column("observation_date", sa.Date(), nullable=False),
        sa.Column("observation_datetime", sa.DateTime(), nullable=True),
        sa.Column("observation_type_concept_id", sa.Integer(), nullable=False),
        sa.Column("value_as_number", sa.Float(), nullable=True),
        sa.Column("value_as_string", sa.String(length=60), nullable=True),
        sa.Column("value_as_concept_id", sa.Integer(), nullable=True),
        sa.Column("qualifier_concept_id", sa.Integer(), nullable=True),
        sa.Column("unit_concept_id", sa.Integer(), nullable=True),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("visit_occurrence_id", sa.Integer(), nullable=True),
        sa.Column("visit_detail_id", sa.Integer(), nullable=True),
        sa.Column("observation_source_value", sa.String(length=50), nullable=True),
        sa.Column("observation_source_concept_id", sa.Integer(), nullable=True),
        sa.Column("unit_source_value", sa.String(length=50), nullable=True),
        sa.Column("qualifier_source_value", sa.String(length=50), nullable=True),
        sa.Column("value_source_value", sa.String(length=50), nullable=True),
        sa.Column("observation_event_id", sa.Integer(), nullable=True),
        sa.Column("obs_event_field_concept_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("observation_id", name=op.f("pk_observation")),
    )
    op.create_index("ix_observation_person_id", "observation", ["person_id"], unique=False)
    op.create_table(
        "observation_period",
        sa.Column("observation_period_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("observation_period_start_date", sa.Date(), nullable=False),
        sa.Column("observation_period_end_date", sa.Date(), nullable=False),
        sa.Column("period_type_concept_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("observation_period_id", name=op.f("pk_observation_period")),
    )
    op.create_index(
        "ix_observation_period_person_id", "observation_period", ["person_id"], unique=False
    )
    op.create_table(
        "person",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("gender_concept_id", sa.Integer(), nullable=False),
        sa.Column("year_of_birth", sa.Integer(), nullable=False),
        sa.Column("month_of_birth", sa.Integer(), nullable=True),
        sa.Column("day_of_birth", sa.Integer(), nullable=True),
        sa.Column("birth_datetime", sa.DateTime(), nullable=True),
        sa.Column("race_concept_id", sa.Integer(), nullable=False),
        sa.Column("ethnicity_concept_id", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("care_site_id", sa.Integer(), nullable=True),
        sa.Column("person_source_value", sa.String(length=50), nullable=True),
        sa.Column("gender_source_value", sa.String(length=50), nullable=True),
        sa.Column("gender_source_concept_id", sa.Integer(), nullable=True),
        sa.Column("race_source_value", sa.String(length=50), nullable=True),
        sa.Column("race_source_concept_id", sa.Integer(), nullable=True),
        sa.Column("ethnicity_source_value", sa.String(length=50), nullable=True),
        sa.Column("ethnicity_source_concept_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_person")),
    )
    op.create_index("uq_person_person_source_value", "person", ["person_source_value"], unique=True)
    op.create_table(
        "procedure_occurrence",
        sa.Column("procedure_occurrence_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("procedure_concept_id", sa.Integer(), nullable=False),
        sa.Column("procedure_date", sa.Date(), nullable=False),
        sa.Column("procedure_datetime", sa.DateTime(), nullable=True),
        sa.Column("procedure_end_date", sa.Date(), nullable=True),
        sa.Column("procedure_end_datetime", sa.DateTime(), nullable=True),
        sa.Column("procedure_type_concept_id", sa.Integer(), nullable=False),
        sa.Column("modifier_concept_id", sa.Integer(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=True),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("visit_occurrence_id", sa.Integer(), nullable=True),
        sa.Column("visit_detail_id", sa.Integer(), nullable=True),
        sa.Column("procedure_source_value", sa.String(length=50), nullable=True),
        sa.Column("procedure_source_concept_id", sa.Integer(), nullable=True),
        sa.Column("modifier_source_value", sa.String(length=50), nullable=True),
        sa.PrimaryKeyConstraint("procedure_occurrence_id", name=op.f("pk_procedure_occurrence")),
    )
    op.create_index(
        "ix_procedure_occurrence_person_id", "procedure_occurrence", ["person_id"], unique=False
    )
    op.create_table(
        "specimen",
        sa.Column("specimen_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("specimen_concept_id", sa.Integer(), nullable=False),
        sa.Column("specimen_type_concept_id", sa.Integer(), nullable=False),
        sa.Column("specimen_date", sa.Date(), nullable=False),
        sa.Column("specimen_datetime", sa.DateTime(), nullable=True),
        sa.Column("quantity", sa.Float(), nullable=True),
        sa.Column("unit_concept_id", sa.Integer(), nullable=True),
        sa.Column("anatomic_site_concept_id", sa.Integer(), nullable=True),
        sa.Column("disease_status_concept_id", sa.Integer(), nullable=True),
        sa.Column("specimen_source_id", sa.String(length=50), nullable=True),
        sa.Column("specimen_source_value", sa.String(length=50), nullable=True),
        sa.Column("unit_source_value", sa.String(length=50), nullable=True),
        sa.Column("anatomic_site_source_value", sa.String(length=50), nullable=True),
        sa.Column("disease_status_source_value", sa.String(length=50), nullable=True),
        sa.PrimaryKeyConstraint("specimen_id", name=op.f("pk_specimen")),
    )
    op.create_index("ix_specimen_person_id", "specimen", ["person_id"], unique=False)
    op.create_table(
        "visit_occurrence",
        sa.Column("visit_occurrence_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("visit_concept_id", sa.Integer(), nullable=False),
        sa.Column("visit_start_date", sa.Date(), nullable=False),
        sa.Column("visit_start_datetime", sa.DateTime(), nullable=True),
        sa.Column("visit_end_date", sa.Date(), nullable=False),
        sa.Column("visit_end_datetime", sa.DateTime(), nullable=True),
        sa.Column("visit_type_concept_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=True),
        sa.Column("care_site_id", sa.Integer(), nullable=True),
        sa.Column("visit_source_value", sa.String(length=50), nullable=True),
        sa.Column("visit_source_concept_id", sa.Integer(), nullable=True),
        sa.Column("admitted_from_concept_id", sa.Integer(), nullable=True),
        sa.Column("admitted_from_source_value", sa.String(length=50), nullable=True),
        sa.Column("discharged_to_concept_id", sa.Integer(), nullable=True),
        sa.Column("discharged_to_source_value", sa.String(length=50), nullable=True),
        sa.Column("preceding_visit_occurrence_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("visit_occurrence_id", name=op.f("pk_visit_occurrence")),
    )
    op.create_index(
        "ix_visit_occurrence_person_id", "visit_occurrence", ["person_id"], unique=False
    )
    op.create_table(
        "clinical_record",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("form", sa.String(length=64), nullable=False),
        sa.Column("form_version", sa.Integer(), nullable=False),
        sa.Column("patient_pseudonym", sa.String(length=64), nullable=False),
        sa.Column("record_key", sa.String(length=255), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("raw_digest", sa.String(length=64), nullable=False),
        sa.Column("submitter", sa.String(length=128), nullable=False),
        sa.Column("import_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("warnings", sa.Text(), nullable=True),
        sa.Column("record_values", sa.Text(), nullable=False),
        sa.Column("raw_sealed", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["clinical_import.id"],
            name=op.f("fk_clinical_record_import_id_clinical_import"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["person.person_id"], name=op.f("fk_clinical_record_person_id_person")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinical_record")),
        sa.UniqueConstraint(
            "form", "patient_pseudonym", "record_key", name=op.f("uq_clinical_record_form")
        ),
    )
    op.create_index("ix_clinical_record_person_id", "clinical_record", ["person_id"], unique=False)
    op.create_index(
        "ix_clinical_record_site_form", "clinical_record", ["site", "form"], unique=False
    )
    op.create_table(
        "clinical_record_row",
        sa.Column("table_name", sa.String(length=32), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("record_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["clinical_record.id"],
            name=op.f("fk_clinical_record_row_record_id_clinical_record"),
        ),
        sa.PrimaryKeyConstraint("table_name", "row_id", name=op.f("pk_clinical_record_row")),
    )
    op.create_index(
        "ix_clinical_record_row_record_id", "clinical_record_row", ["record_id"], unique=False
    )
    op.create_table(
        "clinical_record_version",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("record_id", BIG_ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("raw_digest", sa.String(length=64), nullable=False),
        sa.Column("submitter", sa.String(length=128), nullable=False),
        sa.Column("import_id", sa.String(length=32), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_fields", sa.Text(), nullable=True),
        sa.Column("record_values", sa.Text(), nullable=False),
        sa.Column("raw_sealed", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["clinical_import.id"],
            name=op.f("fk_clinical_record_version_import_id_clinical_import"),
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["clinical_record.id"],
            name=op.f("fk_clinical_record_version_record_id_clinical_record"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinical_record_version")),
        sa.UniqueConstraint(
            "record_id", "version", name=op.f("uq_clinical_record_version_record_id")
        ),
    )
    op.create_table(
        "data_query",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("record_id", BIG_ID, nullable=False),
        sa.Column("field", sa.String(length=64), nullable=True),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("raised_by", sa.String(length=128), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["clinical_record.id"],
            name=op.f("fk_data_query_record_id_clinical_record"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_query")),
    )
    op.create_index("ix_data_query_record_id", "data_query", ["record_id"], unique=False)
    op.create_index("ix_data_query_site_state", "data_query", ["site", "state"], unique=False)
    op.create_table(
        "data_query_event",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("query_id", BIG_ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("record_version", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["query_id"], ["data_query.id"], name=op.f("fk_data_query_event_query_id_data_query")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_query_event")),
    )
    op.create_index("ix_data_query_event_query_id", "data_query_event", ["query_id"], unique=False)

    _load_concept_seed()


def _load_concept_seed() -> None:
    # The seed as shipped with this revision, read here rather than through the package's
    # code so that the migration keeps working when that code changes. A later seed change
    # ships as a migration that upserts it (concept ids are stable).
    resource = resources.files("biobank.catalog") / "data" / "omop_concepts.csv"
    columns = (
        "concept_id",
        "concept_name",
        "domain_id",
        "vocabulary_id",
        "concept_class_id",
        "standard_concept",
        "concept_code",
        "valid_start_date",
        "valid_end_date",
        "invalid_reason",
    )
    rows = []
    text = resource.read_text(encoding="utf-8")
    for row in csv.DictReader(io.StringIO(text, newline="")):
        values: dict[str, object] = {name: row[name] for name in columns}
        for name in ("standard_concept", "invalid_reason"):  # the nullable ones
            values[name] = row[name] or None
        values["concept_id"] = int(row["concept_id"])
        for name in ("valid_start_date", "valid_end_date"):
            values[name] = _date(row[name])
        rows.append(values)
    table = sa.table("concept", *(sa.column(name) for name in columns))
    op.bulk_insert(table, rows)


def _date(text: str) -> dt.date:
    text = text.strip()
    return dt.date.fromisoformat(text if "-" in text else f"{text[:4]}-{text[4:6]}-{text[6:]}")


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_data_query_event_query_id", table_name="data_query_event")
    op.drop_table("data_query_event")
    op.drop_index("ix_data_query_site_state", table_name="data_query")
    op.drop_index("ix_data_query_record_id", table_name="data_query")
    op.drop_table("data_query")
    op.drop_table("clinical_record_version")
    op.drop_index("ix_clinical_record_row_record_id", table_name="clinical_record_row")
    op.drop_table("clinical_record_row")
    op.drop_index("ix_clinical_record_site_form", table_name="clinical_record")
    op.drop_index("ix_clinical_record_person_id", table_name="clinical_record")
    op.drop_table("clinical_record")
    op.drop_index("ix_visit_occurrence_person_id", table_name="visit_occurrence")
    op.drop_table("visit_occurrence")
    op.drop_index("ix_specimen_person_id", table_name="specimen")
    op.drop_table("specimen")
    op.drop_index("ix_procedure_occurrence_person_id", table_name="procedure_occurrence")
    op.drop_table("procedure_occurrence")
    op.drop_index("uq_person_person_source_value", table_name="person")
    op.drop_table("person")
    op.drop_index("ix_observation_period_person_id", table_name="observation_period")
    op.drop_table("observation_period")
    op.drop_index("ix_observation_person_id", table_name="observation")
    op.drop_table("observation")
    op.drop_index("ix_measurement_person_id", table_name="measurement")
    op.drop_table("measurement")
    op.drop_index("uq_image_occurrence_image_series_uid", table_name="image_occurrence")
    op.drop_index("ix_image_occurrence_person_id", table_name="image_occurrence")
    op.drop_index("ix_image_occurrence_image_study_uid", table_name="image_occurrence")
    op.drop_table("image_occurrence")
    op.drop_index("ix_image_feature_image_occurrence_id", table_name="image_feature")
    op.drop_table("image_feature")
    op.drop_index("ix_episode_event_event_id", table_name="episode_event")
    op.drop_table("episode_event")
    op.drop_index("ix_episode_person_id", table_name="episode")
    op.drop_table("episode")
    op.drop_index("ix_drug_exposure_person_id", table_name="drug_exposure")
    op.drop_table("drug_exposure")
    op.drop_table("death")
    op.drop_index("ix_condition_occurrence_person_id", table_name="condition_occurrence")
    op.drop_table("condition_occurrence")
    op.drop_index("ix_concept_vocabulary_id_concept_code", table_name="concept")
    op.drop_table("concept")
    op.drop_index("ix_clinical_import_started_at", table_name="clinical_import")
    op.drop_table("clinical_import")
    op.drop_table("cdm_source")
    op.drop_table("care_site")

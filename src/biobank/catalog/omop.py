"""OMOP CDM 5.4 and its Medical Imaging extension (MI-CDM), as native catalogue tables.

The clinical data of a node follow OMOP CDM 5.4; its images are linked through the OHDSI
Medical Imaging extension: one ``image_occurrence`` per series and ``image_feature`` rows for
acquisition parameters (the values themselves in ``measurement``). Column names, order,
types and NOT NULL flags are those of the OHDSI PostgreSQL DDL
(OHDSI/CommonDataModel ``inst/ddl/5.4/postgresql``, MI-CDM from the ImageWG DDL), so a CSV
dump of these tables loads back into the OHDSI DDL unchanged. Deviations, all deliberate:

- ``NUMERIC`` columns are double precision here (``Float``): values are measurements, not
  money, and drivers then return floats instead of ``Decimal``.
- Every ``*_id`` primary key is auto-incremented by the database (OMOP leaves ids to the
  ETL). ``episode_event`` gets the natural composite key; ``cdm_source`` has none (one row).
- ``person.person_source_value`` is unique: it holds the patient pseudonym, the link between
  a person and their images (``patient.patient_pseudonym``) and clinical records.
- ``image_occurrence.image_series_uid`` is unique (one row per series).

Around them, four platform tables that OMOP has no place for:

- ``clinical_record``: the current version of each submitted form record (typed values after
  pseudonymisation and date shifting, the digest of the record as submitted — keyed on a site
  node —, the submitted record sealed with the site key, who sent it and when) — provenance
  and re-ETL.
- ``clinical_record_version``: every version of a record (history of re-uploads).
- ``clinical_record_row``: which OMOP rows a record produced, so that a corrected record
  replaces exactly its own rows.
- ``clinical_import``: one row per import (counts; problems without values).
- ``data_query`` / ``data_query_event``: curators' questions about a field of a record and
  their open → answered → closed history.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from biobank.catalog.schema import BIG_ID, SERIES, Base, UtcDateTime

PERSON = Table(
    "person",
    Base.metadata,
    Column("person_id", Integer(), primary_key=True),
    Column("gender_concept_id", Integer(), nullable=False),
    Column("year_of_birth", Integer(), nullable=False),
    Column("month_of_birth", Integer(), nullable=True),
    Column("day_of_birth", Integer(), nullable=True),
    Column("birth_datetime", DateTime(), nullable=True),
    Column("race_concept_id", Integer(), nullable=False),
    Column("ethnicity_concept_id", Integer(), nullable=False),
    Column("location_id", Integer(), nullable=True),
    Column("provider_id", Integer(), nullable=True),
    Column("care_site_id", Integer(), nullable=True),
    Column("person_source_value", String(50), nullable=True),
    Column("gender_source_value", String(50), nullable=True),
    Column("gender_source_concept_id", Integer(), nullable=True),
    Column("race_source_value", String(50), nullable=True),
    Column("race_source_concept_id", Integer(), nullable=True),
    Column("ethnicity_source_value", String(50), nullable=True),
    Column("ethnicity_source_concept_id", Integer(), nullable=True),
)

OBSERVATION_PERIOD = Table(
    "observation_period",
    Base.metadata,
    Column("observation_period_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("observation_period_start_date", Date(), nullable=False),
    Column("observation_period_end_date", Date(), nullable=False),
    Column("period_type_concept_id", Integer(), nullable=False),
)

VISIT_OCCURRENCE = Table(
    "visit_occurrence",
    Base.metadata,
    Column("visit_occurrence_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("visit_concept_id", Integer(), nullable=False),
    Column("visit_start_date", Date(), nullable=False),
    Column("visit_start_datetime", DateTime(), nullable=True),
    Column("visit_end_date", Date(), nullable=False),
    Column("visit_end_datetime", DateTime(), nullable=True),
    Column("visit_type_concept_id", Integer(), nullable=False),
    Column("provider_id", Integer(), nullable=True),
    Column("care_site_id", Integer(), nullable=True),
    Column("visit_source_value", String(50), nullable=True),
    Column("visit_source_concept_id", Integer(), nullable=True),
    Column("admitted_from_concept_id", Integer(), nullable=True),
    Column("admitted_from_source_value", String(50), nullable=True),
    Column("discharged_to_concept_id", Integer(), nullable=True),
    Column("discharged_to_source_value", String(50), nullable=True),
    Column("preceding_visit_occurrence_id", Integer(), nullable=True),
)

CONDITION_OCCURRENCE = Table(
    "condition_occurrence",
    Base.metadata,
    Column("condition_occurrence_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("condition_concept_id", Integer(), nullable=False),
    Column("condition_start_date", Date(), nullable=False),
    Column("condition_start_datetime", DateTime(), nullable=True),
    Column("condition_end_date", Date(), nullable=True),
    Column("condition_end_datetime", DateTime(), nullable=True),
    Column("condition_type_concept_id", Integer(), nullable=False),
    Column("condition_status_concept_id", Integer(), nullable=True),
    Column("stop_reason", String(20), nullable=True),
    Column("provider_id", Integer(), nullable=True),
    Column("visit_occurrence_id", Integer(), nullable=True),
    Column("visit_detail_id", Integer(), nullable=True),
    Column("condition_source_value", String(50), nullable=True),
    Column("condition_source_concept_id", Integer(), nullable=True),
    Column("condition_status_source_value", String(50), nullable=True),
)

PROCEDURE_OCCURRENCE = Table(
    "procedure_occurrence",
    Base.metadata,
    Column("procedure_occurrence_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("procedure_concept_id", Integer(), nullable=False),
    Column("procedure_date", Date(), nullable=False),
    Column("procedure_datetime", DateTime(), nullable=True),
    Column("procedure_end_date", Date(), nullable=True),
    Column("procedure_end_datetime", DateTime(), nullable=True),
    Column("procedure_type_concept_id", Integer(), nullable=False),
    Column("modifier_concept_id", Integer(), nullable=True),
    Column("quantity", Integer(), nullable=True),
    Column("provider_id", Integer(), nullable=True),
    Column("visit_occurrence_id", Integer(), nullable=True),
    Column("visit_detail_id", Integer(), nullable=True),
    Column("procedure_source_value", String(50), nullable=True),
    Column("procedure_source_concept_id", Integer(), nullable=True),
    Column("modifier_source_value", String(50), nullable=True),
)

MEASUREMENT = Table(
    "measurement",
    Base.metadata,
    Column("measurement_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("measurement_concept_id", Integer(), nullable=False),
    Column("measurement_date", Date(), nullable=False),
    Column("measurement_datetime", DateTime(), nullable=True),
    Column("measurement_time", String(10), nullable=True),
    Column("measurement_type_concept_id", Integer(), nullable=False),
    Column("operator_concept_id", Integer(), nullable=True),
    Column("value_as_number", Float(), nullable=True),
    Column("value_as_concept_id", Integer(), nullable=True),
    Column("unit_concept_id", Integer(), nullable=True),
    Column("range_low", Float(), nullable=True),
    Column("range_high", Float(), nullable=True),
    Column("provider_id", Integer(), nullable=True),
    Column("visit_occurrence_id", Integer(), nullable=True),
    Column("visit_detail_id", Integer(), nullable=True),
    Column("measurement_source_value", String(50), nullable=True),
    Column("measurement_source_concept_id", Integer(), nullable=True),
    Column("unit_source_value", String(50), nullable=True),
    Column("unit_source_concept_id", Integer(), nullable=True),
    Column("value_source_value", String(50), nullable=True),
    Column("measurement_event_id", Integer(), nullable=True),
    Column("meas_event_field_concept_id", Integer(), nullable=True),
)

OBSERVATION = Table(
    "observation",
    Base.metadata,
    Column("observation_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("observation_concept_id", Integer(), nullable=False),
    Column("observation_date", Date(), nullable=False),
    Column("observation_datetime", DateTime(), nullable=True),
    Column("observation_type_concept_id", Integer(), nullable=False),
    Column("value_as_number", Float(), nullable=True),
    Column("value_as_string", String(60), nullable=True),
    Column("value_as_concept_id", Integer(), nullable=True),
    Column("qualifier_concept_id", Integer(), nullable=True),
    Column("unit_concept_id", Integer(), nullable=True),
    Column("provider_id", Integer(), nullable=True),
    Column("visit_occurrence_id", Integer(), nullable=True),
    Column("visit_detail_id", Integer(), nullable=True),
    Column("observation_source_value", String(50), nullable=True),
    Column("observation_source_concept_id", Integer(), nullable=True),
    Column("unit_source_value", String(50), nullable=True),
    Column("qualifier_source_value", String(50), nullable=True),
    Column("value_source_value", String(50), nullable=True),
    Column("observation_event_id", Integer(), nullable=True),
    Column("obs_event_field_concept_id", Integer(), nullable=True),
)

DRUG_EXPOSURE = Table(
    "drug_exposure",
    Base.metadata,
    Column("drug_exposure_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("drug_concept_id", Integer(), nullable=False),
    Column("drug_exposure_start_date", Date(), nullable=False),
    Column("drug_exposure_start_datetime", DateTime(), nullable=True),
    Column("drug_exposure_end_date", Date(), nullable=False),
    Column("drug_exposure_end_datetime", DateTime(), nullable=True),
    Column("verbatim_end_date", Date(), nullable=True),
    Column("drug_type_concept_id", Integer(), nullable=False),
    Column("stop_reason", String(20), nullable=True),
    Column("refills", Integer(), nullable=True),
    Column("quantity", Float(), nullable=True),
    Column("days_supply", Integer(), nullable=True),
    Column("sig", Text(), nullable=True),
    Column("route_concept_id", Integer(), nullable=True),
    Column("lot_number", String(50), nullable=True),
    Column("provider_id", Integer(), nullable=True),
    Column("visit_occurrence_id", Integer(), nullable=True),
    Column("visit_detail_id", Integer(), nullable=True),
    Column("drug_source_value", String(50), nullable=True),
    Column("drug_source_concept_id", Integer(), nullable=True),
    Column("route_source_value", String(50), nullable=True),
    Column("dose_unit_source_value", String(50), nullable=True),
)

SPECIMEN = Table(
    "specimen",
    Base.metadata,
    Column("specimen_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("specimen_concept_id", Integer(), nullable=False),
    Column("specimen_type_concept_id", Integer(), nullable=False),
    Column("specimen_date", Date(), nullable=False),
    Column("specimen_datetime", DateTime(), nullable=True),
    Column("quantity", Float(), nullable=True),
    Column("unit_concept_id", Integer(), nullable=True),
    Column("anatomic_site_concept_id", Integer(), nullable=True),
    Column("disease_status_concept_id", Integer(), nullable=True),
    Column("specimen_source_id", String(50), nullable=True),
    Column("specimen_source_value", String(50), nullable=True),
    Column("unit_source_value", String(50), nullable=True),
    Column("anatomic_site_source_value", String(50), nullable=True),
    Column("disease_status_source_value", String(50), nullable=True),
)

DEATH = Table(
    "death",
    Base.metadata,
    Column("person_id", Integer(), primary_key=True, autoincrement=False),
    Column("death_date", Date(), nullable=False),
    Column("death_datetime", DateTime(), nullable=True),
    Column("death_type_concept_id", Integer(), nullable=True),
    Column("cause_concept_id", Integer(), nullable=True),
    Column("cause_source_value", String(50), nullable=True),
    Column("cause_source_concept_id", Integer(), nullable=True),
)

EPISODE = Table(
    "episode",
    Base.metadata,
    Column("episode_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("episode_concept_id", Integer(), nullable=False),
    Column("episode_start_date", Date(), nullable=False),
    Column("episode_start_datetime", DateTime(), nullable=True),
    Column("episode_end_date", Date(), nullable=True),
    Column("episode_end_datetime", DateTime(), nullable=True),
    Column("episode_parent_id", Integer(), nullable=True),
    Column("episode_number", Integer(), nullable=True),
    Column("episode_object_concept_id", Integer(), nullable=False),
    Column("episode_type_concept_id", Integer(), nullable=False),
    Column("episode_source_value", String(50), nullable=True),
    Column("episode_source_concept_id", Integer(), nullable=True),
)

EPISODE_EVENT = Table(
    "episode_event",
    Base.metadata,
    Column("episode_id", Integer(), nullable=False),
    Column("event_id", Integer(), nullable=False),
    Column("episode_event_field_concept_id", Integer(), nullable=False),
    PrimaryKeyConstraint("episode_id", "event_id", "episode_event_field_concept_id"),
)

CARE_SITE = Table(
    "care_site",
    Base.metadata,
    Column("care_site_id", Integer(), primary_key=True),
    Column("care_site_name", String(255), nullable=True),
    Column("place_of_service_concept_id", Integer(), nullable=True),
    Column("location_id", Integer(), nullable=True),
    Column("care_site_source_value", String(50), nullable=True),
    Column("place_of_service_source_value", String(50), nullable=True),
)

CDM_SOURCE = Table(
    "cdm_source",
    Base.metadata,
    Column("cdm_source_name", String(255), nullable=False),
    Column("cdm_source_abbreviation", String(25), nullable=False),
    Column("cdm_holder", String(255), nullable=False),
    Column("source_description", Text(), nullable=True),
    Column("source_documentation_reference", String(255), nullable=True),
    Column("cdm_etl_reference", String(255), nullable=True),
    Column("source_release_date", Date(), nullable=False),
    Column("cdm_release_date", Date(), nullable=False),
    Column("cdm_version", String(10), nullable=True),
    Column("cdm_version_concept_id", Integer(), nullable=False),
    Column("vocabulary_version", String(20), nullable=False),
)

CONCEPT = Table(
    "concept",
    Base.metadata,
    Column("concept_id", Integer(), primary_key=True, autoincrement=False),
    Column("concept_name", String(255), nullable=False),
    Column("domain_id", String(20), nullable=False),
    Column("vocabulary_id", String(20), nullable=False),
    Column("concept_class_id", String(20), nullable=False),
    Column("standard_concept", String(1), nullable=True),
    Column("concept_code", String(50), nullable=False),
    Column("valid_start_date", Date(), nullable=False),
    Column("valid_end_date", Date(), nullable=False),
    Column("invalid_reason", String(1), nullable=True),
)

IMAGE_OCCURRENCE = Table(
    "image_occurrence",
    Base.metadata,
    Column("image_occurrence_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("procedure_occurrence_id", Integer(), nullable=False),
    Column("visit_occurrence_id", Integer(), nullable=True),
    Column("anatomic_site_concept_id", Integer(), nullable=True),
    Column("wadors_uri", Text(), nullable=True),
    Column("local_path", Text(), nullable=True),
    Column("image_occurrence_date", Date(), nullable=False),
    Column("image_study_uid", Text(), nullable=False),
    Column("image_series_uid", Text(), nullable=False),
    Column("modality_concept_id", Integer(), nullable=False),
)

IMAGE_FEATURE = Table(
    "image_feature",
    Base.metadata,
    Column("image_feature_id", Integer(), primary_key=True),
    Column("person_id", Integer(), nullable=False),
    Column("image_occurrence_id", Integer(), nullable=False),
    Column("image_feature_event_field_concept_id", Integer(), nullable=True),
    Column("image_feature_event_id", Integer(), nullable=True),
    Column("image_feature_concept_id", Integer(), nullable=False),
    Column("image_feature_type_concept_id", Integer(), nullable=False),
    Column("image_finding_concept_id", Integer(), nullable=True),
    Column("image_finding_id", Integer(), nullable=True),
    Column("anatomic_site_concept_id", Integer(), nullable=True),
    Column("alg_system", Text(), nullable=True),
    Column("alg_datetime", DateTime(), nullable=True),
)

# --- Indexes the node's own reads need (the cohort compiler adds its own in 0005) -----------
Index("uq_person_person_source_value", PERSON.c.person_source_value, unique=True)
Index("ix_observation_period_person_id", OBSERVATION_PERIOD.c.person_id)
Index("ix_visit_occurrence_person_id", VISIT_OCCURRENCE.c.person_id)
Index("ix_condition_occurrence_person_id", CONDITION_OCCURRENCE.c.person_id)
Index("ix_procedure_occurrence_person_id", PROCEDURE_OCCURRENCE.c.person_id)
Index("ix_measurement_person_id", MEASUREMENT.c.person_id)
Index("ix_observation_person_id", OBSERVATION.c.person_id)
Index("ix_drug_exposure_person_id", DRUG_EXPOSURE.c.person_id)
Index("ix_specimen_person_id", SPECIMEN.c.person_id)
Index("ix_episode_person_id", EPISODE.c.person_id)
Index("ix_episode_event_event_id", EPISODE_EVENT.c.event_id)
Index("uq_image_occurrence_image_series_uid", IMAGE_OCCURRENCE.c.image_series_uid, unique=True)
Index("ix_image_occurrence_person_id", IMAGE_OCCURRENCE.c.person_id)
Index("ix_image_occurrence_image_study_uid", IMAGE_OCCURRENCE.c.image_study_uid)
Index("ix_image_feature_image_occurrence_id", IMAGE_FEATURE.c.image_occurrence_id)
Index("ix_concept_vocabulary_id_concept_code", CONCEPT.c.vocabulary_id, CONCEPT.c.concept_code)

OMOP_TABLES = (
    PERSON,
    OBSERVATION_PERIOD,
    VISIT_OCCURRENCE,
    CONDITION_OCCURRENCE,
    PROCEDURE_OCCURRENCE,
    MEASUREMENT,
    OBSERVATION,
    DRUG_EXPOSURE,
    SPECIMEN,
    DEATH,
    EPISODE,
    EPISODE_EVENT,
    CARE_SITE,
    CDM_SOURCE,
    CONCEPT,
    IMAGE_OCCURRENCE,
    IMAGE_FEATURE,
)
"""The OMOP CDM 5.4 and MI-CDM tables, in an order that respects their references."""

# --- Platform tables ------------------------------------------------------------------------

CLINICAL_IMPORT = Table(
    "clinical_import",
    Base.metadata,
    Column("id", String(32), primary_key=True),
    Column("form", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("submitter", String(128), nullable=False),
    Column("site", String(64), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime(), nullable=True),
    Column("received", Integer(), nullable=False, server_default="0"),
    Column("created", Integer(), nullable=False, server_default="0"),
    Column("updated", Integer(), nullable=False, server_default="0"),
    Column("unchanged", Integer(), nullable=False, server_default="0"),
    Column("rejected", Integer(), nullable=False, server_default="0"),
    Column("problems", Text(), nullable=True),
    Index("ix_clinical_import_started_at", "started_at"),
)
"""One import (a CLI file or an API call): its counts and its problems, without values."""

CLINICAL_RECORD = Table(
    "clinical_record",
    Base.metadata,
    Column("id", BIG_ID, primary_key=True, autoincrement=True),
    Column("form", String(64), nullable=False),
    Column("form_version", Integer(), nullable=False),
    Column("patient_pseudonym", String(64), nullable=False),
    Column("record_key", String(255), nullable=False),
    Column("person_id", ForeignKey("person.person_id"), nullable=False),
    Column("site", String(64), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("raw_digest", String(64), nullable=False),
    Column("submitter", String(128), nullable=False),
    Column("import_id", ForeignKey("clinical_import.id"), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("warnings", Text(), nullable=True),
    Column("record_values", Text(), nullable=False),
    Column("raw_sealed", LargeBinary(), nullable=True),
    UniqueConstraint("form", "patient_pseudonym", "record_key"),
    Index("ix_clinical_record_person_id", "person_id"),
    Index("ix_clinical_record_site_form", "site", "form"),
)
"""The current version of each record: ``record_values`` is the JSON of the typed values
after pseudonymisation (dates shifted), ``raw_sealed`` the record as submitted, encrypted
with a key derived from the site key (``None`` on a central node, which receives records
already pseudonymised)."""

CLINICAL_RECORD_VERSION = Table(
    "clinical_record_version",
    Base.metadata,
    Column("id", BIG_ID, primary_key=True, autoincrement=True),
    Column("record_id", ForeignKey("clinical_record.id"), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("raw_digest", String(64), nullable=False),
    Column("submitter", String(128), nullable=False),
    Column("import_id", ForeignKey("clinical_import.id"), nullable=True),
    Column("submitted_at", UtcDateTime(), nullable=False),
    Column("changed_fields", Text(), nullable=True),
    Column("record_values", Text(), nullable=False),
    Column("raw_sealed", LargeBinary(), nullable=True),
    UniqueConstraint("record_id", "version"),
)
"""Every version of every record (the first is version 1); ``changed_fields`` names the
fields that differ from the previous version (names only)."""

CLINICAL_RECORD_ROW = Table(
    "clinical_record_row",
    Base.metadata,
    Column("table_name", String(32), nullable=False),
    Column("row_id", BigInteger(), nullable=False),
    Column("record_id", ForeignKey("clinical_record.id"), nullable=False),
    PrimaryKeyConstraint("table_name", "row_id"),
    Index("ix_clinical_record_row_record_id", "record_id"),
)
"""The OMOP rows produced by a record's current version."""

DATA_QUERY = Table(
    "data_query",
    Base.metadata,
    Column("id", BIG_ID, primary_key=True, autoincrement=True),
    Column("record_id", ForeignKey("clinical_record.id"), nullable=False),
    Column("field", String(64), nullable=True),
    Column("site", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("raised_by", String(128), nullable=False),
    Column("message", Text(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_data_query_site_state", "site", "state"),
    Index("ix_data_query_record_id", "record_id"),
)
"""A curator's question about a record (or one of its fields): open, answered or closed."""

DATA_QUERY_EVENT = Table(
    "data_query_event",
    Base.metadata,
    Column("id", BIG_ID, primary_key=True, autoincrement=True),
    Column("query_id", ForeignKey("data_query.id"), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(16), nullable=False),
    Column("text", Text(), nullable=True),
    Column("record_version", Integer(), nullable=True),
    Index("ix_data_query_event_query_id", "query_id"),
)
"""The history of a data query: raised, answered, corrected, closed, reopened."""

COHORT_SERIES = Table(
    "cohort_series",
    Base.metadata,
    # One row per catalogued series of a known person: what the cohort compiler's series
    # criteria read, denormalised from person, patient, study, series and series_curation
    # (biobank.catalog.cohort_series keeps it up to date at write time; migration 0006).
    Column("series_id", Integer(), primary_key=True, autoincrement=False),
    Column("person_id", Integer(), nullable=False),
    Column("study_id", Integer(), nullable=False),
    Column("modality", String(16), nullable=True),
    Column("body_part_examined", String(64), nullable=True),
    Column("manufacturer", Text(), nullable=True),
    Column("manufacturer_lower", Text(), nullable=True),
    Column("label", String(16), nullable=True),
    Column("orientation", String(16), nullable=True),
    Column("is3d", Boolean(), nullable=True),
    Column("contrast", Boolean(), nullable=True),
    Column("decision", String(16), nullable=True),
    Column("image_date", Date(), nullable=True),
    Column("age_span", Integer(), nullable=True),
)

PLATFORM_TABLES = (
    COHORT_SERIES,
    CLINICAL_IMPORT,
    CLINICAL_RECORD,
    CLINICAL_RECORD_VERSION,
    CLINICAL_RECORD_ROW,
    DATA_QUERY,
    DATA_QUERY_EVENT,
)

__all__ = [
    "CARE_SITE",
    "CDM_SOURCE",
    "CLINICAL_IMPORT",
    "CLINICAL_RECORD",
    "CLINICAL_RECORD_ROW",
    "CLINICAL_RECORD_VERSION",
    "COHORT_SERIES",
    "CONCEPT",
    "CONDITION_OCCURRENCE",
    "DATA_QUERY",
    "DATA_QUERY_EVENT",
    "DEATH",
    "DRUG_EXPOSURE",
    "EPISODE",
    "EPISODE_EVENT",
    "IMAGE_FEATURE",
    "IMAGE_OCCURRENCE",
    "MEASUREMENT",
    "OBSERVATION",
    "OBSERVATION_PERIOD",
    "OMOP_TABLES",
    "PERSON",
    "PLATFORM_TABLES",
    "PROCEDURE_OCCURRENCE",
    "SPECIMEN",
    "VISIT_OCCURRENCE",
]

# --- Indexes of the cohort compiler (biobank.catalog.cohort; migration 0005) ----------------
Index(
    "ix_measurement_source_number",
    MEASUREMENT.c.measurement_source_value,
    MEASUREMENT.c.value_as_number,
    MEASUREMENT.c.person_id,
)
Index(
    "ix_measurement_source_code",
    MEASUREMENT.c.measurement_source_value,
    MEASUREMENT.c.value_source_value,
    MEASUREMENT.c.person_id,
)
Index(
    "ix_observation_source_number",
    OBSERVATION.c.observation_source_value,
    OBSERVATION.c.value_as_number,
    OBSERVATION.c.person_id,
)
Index(
    "ix_observation_source_code",
    OBSERVATION.c.observation_source_value,
    OBSERVATION.c.value_source_value,
    OBSERVATION.c.person_id,
)
Index(
    "ix_condition_occurrence_concept_person",
    CONDITION_OCCURRENCE.c.condition_concept_id,
    CONDITION_OCCURRENCE.c.person_id,
)
Index(
    "ix_condition_occurrence_source_person",
    CONDITION_OCCURRENCE.c.condition_source_value,
    CONDITION_OCCURRENCE.c.person_id,
)
Index(
    "ix_series_cohort",
    SERIES.c.study_id,
    SERIES.c.modality,
    SERIES.c.body_part_examined,
    SERIES.c.series_date,
    SERIES.c.manufacturer,
    SERIES.c.id,
)

# --- The compiler's per-series table (biobank.catalog.cohort_series; migration 0006) ---------
COHORT_SERIES_INDEXES = (
    (
        "ix_cohort_series_person",
        ("person_id", "study_id", "modality", "body_part_examined", "label", "orientation",
         "decision", "age_span", "manufacturer_lower", "is3d", "contrast", "series_id"),
    ),
    (
        "ix_cohort_series_modality",
        ("modality", "body_part_examined", "decision", "label", "orientation", "age_span",
         "person_id", "study_id", "manufacturer_lower", "is3d", "contrast", "series_id"),
    ),
)  # fmt: skip
"""Two covering indexes (every column a count reads, so PostgreSQL scans index only): a
person's series (a conjunction driven by clinical criteria), and series by their own
criteria (a query with series criteria only)."""
for _name, _columns in COHORT_SERIES_INDEXES:
    Index(_name, *(COHORT_SERIES.c[column] for column in _columns))

"""The catalogue's tables, declared with SQLAlchemy 2 (``Mapped[...]``).

patient (pseudonym only) → study → series → instance, with the main DICOM attributes as
typed, indexed columns and the full header as DICOM JSON; ingest batches and their items.

The classes declare the schema (the migrations must produce exactly this; a test compares
them); the repository runs Core statements on the tables (:data:`PATIENT`, :data:`STUDY`,
...) so the ingest path does no per-row ORM work. Python attribute names are the column names,
with one exception: ``series.metadata`` is ``Series.metadata_zlib`` in Python because
``metadata`` is reserved by the declarative base.

Times are stored as UTC and read back timezone-aware (:class:`UtcDateTime`), on SQLite too.
Large values (``series.metadata``, ``instance.header``, ``instance.deid_record``) are the
last columns of their rows, so SQLite reads the other columns without their overflow pages.
``study.stored_bytes`` (the size of the study's blobs) is a counter like
``number_of_instances``, so totals never scan the instances.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names, the same in the models and in the migrations."""

BIG_ID = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit key that is still SQLite's auto-incrementing ``INTEGER PRIMARY KEY``."""


class UtcDateTime(TypeDecorator[datetime.datetime]):
    """A timezone-aware UTC timestamp on every backend.

    Naive values are refused when written; SQLite (which has no zone) stores UTC without
    the offset and values are read back with ``tzinfo=UTC``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        """Convert to UTC (and drop the zone on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalogue; use timezone-aware UTC")
        value = value.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)


class Base(DeclarativeBase):
    """The declarative base of the catalogue's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Patient(Base):
    """A patient, known by pseudonym only."""

    __tablename__ = "patient"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_pseudonym: Mapped[str] = mapped_column(String(64), unique=True)
    patient_name: Mapped[str | None] = mapped_column(Text, index=True)
    patient_sex: Mapped[str | None] = mapped_column(String(16))
    patient_birth_date: Mapped[datetime.date | None] = mapped_column(Date)
    number_of_studies: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class Study(Base):
    """A study; ``number_of_*`` and ``modalities_in_study`` are kept up to date on ingest."""

    __tablename__ = "study"
    __table_args__ = (
        Index("ix_study_patient_id_study_date", "patient_id", "study_date"),
        Index("ix_study_study_date", "study_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id"))
    study_date: Mapped[datetime.date | None] = mapped_column(Date)
    study_time: Mapped[str | None] = mapped_column(String(32))
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_id: Mapped[str | None] = mapped_column(String(64))
    study_description: Mapped[str | None] = mapped_column(Text)
    referring_physician_name: Mapped[str | None] = mapped_column(Text)
    modalities_in_study: Mapped[str] = mapped_column(String(128))
    number_of_series: Mapped[int] = mapped_column(Integer, server_default="0")
    number_of_instances: Mapped[int] = mapped_column(Integer, server_default="0")
    stored_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class Series(Base):
    """A series; ``metadata`` caches its instances' headers for WADO-RS metadata."""

    __tablename__ = "series"
    __table_args__ = (
        Index("ix_series_study_id_modality", "study_id", "modality"),
        Index("ix_series_modality", "modality"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"))
    modality: Mapped[str | None] = mapped_column(String(16))
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str | None] = mapped_column(Text)
    body_part_examined: Mapped[str | None] = mapped_column(String(64))
    series_date: Mapped[datetime.date | None] = mapped_column(Date)
    series_time: Mapped[str | None] = mapped_column(String(32))
    protocol_name: Mapped[str | None] = mapped_column(Text)
    manufacturer: Mapped[str | None] = mapped_column(Text)
    manufacturer_model_name: Mapped[str | None] = mapped_column(Text)
    extra_attributes: Mapped[str | None] = mapped_column(Text)
    """Series-level return attributes of QIDO-RS without a column, as DICOM JSON."""
    number_of_instances: Mapped[int] = mapped_column(Integer, server_default="0")
    metadata_instances: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    metadata_zlib: Mapped[bytes | None] = mapped_column("metadata", LargeBinary)


class Instance(Base):
    """A stored instance: its main attributes, its blob and its full DICOM JSON header."""

    __tablename__ = "instance"
    __table_args__ = (
        Index("ix_instance_series_id_instance_number", "series_id", "instance_number"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    bits_allocated: Mapped[int | None] = mapped_column(Integer)
    blob_digest: Mapped[str] = mapped_column(String(64), index=True)
    blob_size: Mapped[int] = mapped_column(BigInteger)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("ingest_batch.id"))
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    header: Mapped[str] = mapped_column(Text)
    deid_record: Mapped[str | None] = mapped_column(Text)


class IngestBatch(Base):
    """One run of ingest (a folder, an upload, an association) and its counters."""

    __tablename__ = "ingest_batch"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime(), index=True)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    state: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    pid: Mapped[int | None] = mapped_column(Integer)
    profile: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(64))
    sources: Mapped[str] = mapped_column(Text)
    expected: Mapped[int | None] = mapped_column(Integer)
    received: Mapped[int] = mapped_column(Integer, server_default="0")
    stored: Mapped[int] = mapped_column(Integer, server_default="0")
    duplicate: Mapped[int] = mapped_column(Integer, server_default="0")
    conflict: Mapped[int] = mapped_column(Integer, server_default="0")
    rejected: Mapped[int] = mapped_column(Integer, server_default="0")
    quarantined: Mapped[int] = mapped_column(Integer, server_default="0")
    bytes_in: Mapped[int] = mapped_column(BigInteger, server_default="0")


NOT_STORED = "outcome <> 'stored'"
"""The condition of the partial indexes of ``ingest_item`` (see :class:`IngestItem`)."""


class IngestItem(Base):
    """One input item of a batch and what became of it (problems included).

    Its SOP Instance UID and digest are indexed for the items that did not become an
    instance (duplicates and problems) only: a stored item is found through its instance
    (``instance.batch_id``), and leaving it out of these two random-key indexes keeps the
    ingest path fast at millions of instances.
    """

    __tablename__ = "ingest_item"
    __table_args__ = (
        Index(
            "ix_ingest_item_sop_instance_uid",
            "sop_instance_uid",
            sqlite_where=text(NOT_STORED),
            postgresql_where=text(NOT_STORED),
        ),
        Index(
            "ix_ingest_item_blob_digest",
            "blob_digest",
            sqlite_where=text(NOT_STORED),
            postgresql_where=text(NOT_STORED),
        ),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("ingest_batch.id"), index=True)
    source_path: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64))
    blob_digest: Mapped[str | None] = mapped_column(String(64))
    blob_size: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class AppUser(Base):
    """A user of the node's services, with one role (``biobank.access`` owns the rules)."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    oidc_subject: Mapped[str | None] = mapped_column(String(255), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class ApiToken(Base):
    """An API token: a public id and the SHA-256 of its secret (the secret is never stored)."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())


class AccessLog(Base):
    """One request that read or wrote patient data; append-only and hash-chained.

    The migration adds triggers that refuse ``UPDATE`` and ``DELETE`` on this table; each
    entry's ``entry_hash`` covers its fields and the previous entry's hash.
    """

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime.datetime] = mapped_column(UtcDateTime(), index=True)
    username: Mapped[str | None] = mapped_column(String(64), index=True)
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    client: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class StudyOwner(Base):
    """Which user uploaded (part of) a study: what an uploader may read back."""

    __tablename__ = "study_owner"

    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), primary_key=True, index=True)
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class Job(Base):
    """A unit of background work on one subject (a series), its state and its attempts.

    One row per (kind, subject): enqueueing again resets a finished job to pending.
    """

    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_state_kind", "state", "kind"),
        UniqueConstraint("kind", "subject", name="uq_job_kind_subject"),
    )

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, server_default="3")
    worker: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    result: Mapped[str | None] = mapped_column(Text)


class SeriesCuration(Base):
    """A series' classification, quality measures and curation decision (one row each)."""

    __tablename__ = "series_curation"

    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), primary_key=True)
    label: Mapped[str | None] = mapped_column(String(16), index=True)
    orientation: Mapped[str | None] = mapped_column(String(16))
    is3d: Mapped[bool | None] = mapped_column(Boolean)
    derived: Mapped[bool | None] = mapped_column(Boolean)
    contrast: Mapped[bool | None] = mapped_column(Boolean)
    confidence: Mapped[float | None] = mapped_column(Float)
    needs_review: Mapped[bool] = mapped_column(Boolean, server_default=false())
    classification: Mapped[str | None] = mapped_column(Text)
    classified_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    qc: Mapped[str | None] = mapped_column(Text)
    qc_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    conformance: Mapped[str | None] = mapped_column(Text)
    conformance_at: Mapped[datetime.datetime | None] = mapped_column(UtcDateTime())
    decision: Mapped[str] = mapped_column(String(16), index=True)
    decision_source: Mapped[str] = mapped_column(String(16))
    decision_reasons: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())


class CurationEvent(Base):
    """One step of a series' curation history: who, when, what, why."""

    __tablename__ = "curation_event"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True, autoincrement=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    at: Mapped[datetime.datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    if not isinstance(table, Table):  # pragma: no cover - declarative always makes a Table
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


PATIENT = _table(Patient)
STUDY = _table(Study)
SERIES = _table(Series)
INSTANCE = _table(Instance)
INGEST_BATCH = _table(IngestBatch)
INGEST_ITEM = _table(IngestItem)
APP_USER = _table(AppUser)
API_TOKEN = _table(ApiToken)
ACCESS_LOG = _table(AccessLog)
STUDY_OWNER = _table(StudyOwner)
JOB = _table(Job)
SERIES_CURATION = _table(SeriesCuration)
CURATION_EVENT = _table(CurationEvent)

PATIENT_FILLABLE = ("patient_name", "patient_sex", "patient_birth_date")
"""Patient columns filled from a later instance when still NULL (never overwritten)."""
STUDY_FILLABLE = (
    "study_date",
    "study_time",
    "accession_number",
    "study_id",
    "study_description",
    "referring_physician_name",
)
"""Study columns filled from a later instance when still NULL."""
SERIES_FILLABLE = (
    "modality",
    "series_number",
    "series_description",
    "body_part_examined",
    "series_date",
    "series_time",
    "protocol_name",
    "manufacturer",
    "manufacturer_model_name",
    "extra_attributes",
)
"""Series columns filled from a later instance when still NULL."""


def column_values(table: Table, names: tuple[str, ...], row: Any) -> dict[str, Any]:
    """The values of ``names`` in a result ``row`` (a mapping) of ``table``."""
    return {name: row[table.c[name]] for name in names}


__all__ = [
    "ACCESS_LOG",
    "API_TOKEN",
    "APP_USER",
    "BIG_ID",
    "CURATION_EVENT",
    "INGEST_BATCH",
    "INGEST_ITEM",
    "INSTANCE",
    "JOB",
    "NAMING_CONVENTION",
    "PATIENT",
    "PATIENT_FILLABLE",
    "SERIES",
    "SERIES_CURATION",
    "SERIES_FILLABLE",
    "STUDY",
    "STUDY_FILLABLE",
    "STUDY_OWNER",
    "AccessLog",
    "ApiToken",
    "AppUser",
    "Base",
    "CurationEvent",
    "IngestBatch",
    "IngestItem",
    "Instance",
    "Job",
    "Patient",
    "Series",
    "SeriesCuration",
    "Study",
    "StudyOwner",
    "UtcDateTime",
    "column_values",
]

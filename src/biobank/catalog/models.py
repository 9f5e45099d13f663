"""What the catalogue takes and gives: plain, frozen dataclasses and enums.

Nothing here knows about SQLAlchemy; the services and the adapters (API, CLI) depend on these
types only. The ingest pipeline hands an :class:`InstanceRecord` per stored instance inside an
:class:`ItemInput`; the catalogue answers with an :class:`ItemResult` per input and with the
summaries below for queries. Every summary has ``to_json()`` giving JSON-ready values (dates
and times as ISO 8601 strings, tuples as lists, enums as their values).
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any


class ItemOutcome(enum.StrEnum):
    """What became of one input item of an ingest batch."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"
    QUARANTINED = "quarantined"


class BatchState(enum.StrEnum):
    """The life cycle of an ingest batch."""

    RUNNING = "running"
    COMPLETE = "complete"
    INTERRUPTED = "interrupted"


PROBLEM_OUTCOMES: tuple[ItemOutcome, ...] = (
    ItemOutcome.CONFLICT,
    ItemOutcome.REJECTED,
    ItemOutcome.QUARANTINED,
)
"""The outcomes that need somebody's attention."""


def _iso(value: datetime.date | datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One de-identified instance the ingest pipeline stored in the blob store.

    Parameters
    ----------
    patient_pseudonym, study_instance_uid, series_instance_uid, sop_instance_uid
        The identity of the instance and of its parents (after de-identification).
    sop_class_uid
        The SOP Class UID.
    blob_digest, blob_size
        SHA-256 (64 lowercase hex digits) and size of the stored bytes.
    header_json
        The full header as a DICOM JSON object (PS3.18 F.2), without bulk data.
    deid_record_json
        The de-identification record (JSON) kept as evidence, if any.

    The remaining fields are the main attributes, catalogued as typed columns.
    """

    patient_pseudonym: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    blob_digest: str
    blob_size: int
    header_json: str
    patient_name: str | None = None
    patient_sex: str | None = None
    patient_birth_date: datetime.date | None = None
    study_date: datetime.date | None = None
    study_time: str | None = None
    accession_number: str | None = None
    study_id: str | None = None
    study_description: str | None = None
    referring_physician_name: str | None = None
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    body_part_examined: str | None = None
    series_date: datetime.date | None = None
    series_time: str | None = None
    protocol_name: str | None = None
    manufacturer: str | None = None
    manufacturer_model_name: str | None = None
    instance_number: int | None = None
    transfer_syntax_uid: str | None = None
    rows: int | None = None
    columns: int | None = None
    number_of_frames: int | None = None
    bits_allocated: int | None = None
    extra_attributes: str | None = None
    deid_record_json: str | None = None


@dataclass(frozen=True, slots=True)
class ItemInput:
    """One input item of an ingest batch.

    Parameters
    ----------
    source_path
        Where the item came from (a path, an archive member, a peer); shown to operators.
    outcome
        ``REJECTED`` or ``QUARANTINED`` for an item with a problem (``reason`` says which);
        ``STORED`` for a candidate instance, in which case the catalogue decides between
        ``STORED``, ``DUPLICATE`` and ``CONFLICT``.
    reason
        Why the item was rejected or quarantined (no PHI).
    instance
        The instance to catalogue; set if and only if ``outcome`` is ``STORED``.
    bytes_in
        How many bytes were read for this item (added to the batch's ``bytes_in``).
    """

    source_path: str
    outcome: ItemOutcome
    reason: str = ""
    instance: InstanceRecord | None = None
    bytes_in: int = 0


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What the catalogue decided for one :class:`ItemInput`."""

    source_path: str
    outcome: ItemOutcome
    reason: str
    sop_instance_uid: str | None
    blob_digest: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "source_path": self.source_path,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "sop_instance_uid": self.sop_instance_uid,
            "blob_digest": self.blob_digest,
        }


@dataclass(frozen=True, slots=True)
class PatientSummary:
    """A catalogued patient (pseudonym only)."""

    patient_pseudonym: str
    patient_sex: str | None
    patient_birth_date: datetime.date | None
    number_of_studies: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "patient_pseudonym": self.patient_pseudonym,
            "patient_sex": self.patient_sex,
            "patient_birth_date": _iso(self.patient_birth_date),
            "number_of_studies": self.number_of_studies,
        }


@dataclass(frozen=True, slots=True)
class StudySummary:
    """A catalogued study with its precomputed counters (``stored_bytes``: its blobs' size)."""

    study_instance_uid: str
    patient_pseudonym: str
    study_date: datetime.date | None
    study_time: str | None
    accession_number: str | None
    study_id: str | None
    study_description: str | None
    modalities_in_study: tuple[str, ...]
    number_of_series: int
    number_of_instances: int
    stored_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "patient_pseudonym": self.patient_pseudonym,
            "study_date": _iso(self.study_date),
            "study_time": self.study_time,
            "accession_number": self.accession_number,
            "study_id": self.study_id,
            "study_description": self.study_description,
            "modalities_in_study": list(self.modalities_in_study),
            "number_of_series": self.number_of_series,
            "number_of_instances": self.number_of_instances,
            "stored_bytes": self.stored_bytes,
        }


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """A catalogued series with its precomputed instance count."""

    series_instance_uid: str
    study_instance_uid: str
    modality: str | None
    series_number: int | None
    series_description: str | None
    body_part_examined: str | None
    manufacturer: str | None
    number_of_instances: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "modality": self.modality,
            "series_number": self.series_number,
            "series_description": self.series_description,
            "body_part_examined": self.body_part_examined,
            "manufacturer": self.manufacturer,
            "number_of_instances": self.number_of_instances,
        }


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """A catalogued instance and where its bytes are (``blob_digest``)."""

    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    transfer_syntax_uid: str | None
    rows: int | None
    columns: int | None
    number_of_frames: int | None
    blob_digest: str
    blob_size: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "instance_number": self.instance_number,
            "transfer_syntax_uid": self.transfer_syntax_uid,
            "rows": self.rows,
            "columns": self.columns,
            "number_of_frames": self.number_of_frames,
            "blob_digest": self.blob_digest,
            "blob_size": self.blob_size,
        }


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """An ingest batch and its counters."""

    batch_id: str
    started_at: datetime.datetime
    finished_at: datetime.datetime | None
    state: BatchState
    role: str
    pid: int | None
    profile: str | None
    key_id: str | None
    sources: tuple[str, ...]
    expected: int | None
    received: int
    stored: int
    duplicate: int
    conflict: int
    rejected: int
    quarantined: int
    bytes_in: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "batch_id": self.batch_id,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "state": self.state.value,
            "role": self.role,
            "pid": self.pid,
            "profile": self.profile,
            "key_id": self.key_id,
            "sources": list(self.sources),
            "expected": self.expected,
            "received": self.received,
            "stored": self.stored,
            "duplicate": self.duplicate,
            "conflict": self.conflict,
            "rejected": self.rejected,
            "quarantined": self.quarantined,
            "bytes_in": self.bytes_in,
        }


@dataclass(frozen=True, slots=True)
class ProblemItem:
    """An ingest item that needs attention (conflict, rejected or quarantined)."""

    batch_id: str
    source_path: str
    outcome: ItemOutcome
    reason: str
    sop_instance_uid: str | None
    blob_digest: str | None
    created_at: datetime.datetime

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "batch_id": self.batch_id,
            "source_path": self.source_path,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "sop_instance_uid": self.sop_instance_uid,
            "blob_digest": self.blob_digest,
            "created_at": _iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class CatalogStats:
    """Totals of the catalogue.

    ``problems`` counts ingest items per problem outcome (``conflict``, ``rejected``,
    ``quarantined``); ``stored_bytes`` is the size of the catalogued instances' blobs.
    """

    patients: int
    studies: int
    series: int
    instances: int
    stored_bytes: int
    problems: dict[str, int]
    batches: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "patients": self.patients,
            "studies": self.studies,
            "series": self.series,
            "instances": self.instances,
            "stored_bytes": self.stored_bytes,
            "problems": dict(self.problems),
            "batches": self.batches,
        }


@dataclass(frozen=True, slots=True)
class BlobReference:
    """A blob the catalogue refers to: ``kind`` is ``"instance"`` or ``"conflict"``."""

    digest: str
    kind: str
    sop_instance_uid: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {"digest": self.digest, "kind": self.kind, "sop_instance_uid": self.sop_instance_uid}


__all__ = [
    "PROBLEM_OUTCOMES",
    "BatchState",
    "BatchSummary",
    "BlobReference",
    "CatalogStats",
    "InstanceRecord",
    "InstanceSummary",
    "ItemInput",
    "ItemOutcome",
    "ItemResult",
    "PatientSummary",
    "ProblemItem",
    "SeriesSummary",
    "StudySummary",
]

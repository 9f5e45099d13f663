"""The catalogue's read statements: filters, DICOM wildcard matching, ordering, paging.

Each ``*_query`` function builds one ``SELECT`` served by an index for the common cases
(studies of a patient, series of a study, instances of a series, studies by date range and
modality); the ``to_*`` functions turn result rows into the summaries of
:mod:`biobank.catalog.models`. Counts come from the precomputed counters, never from
``COUNT`` at query time.

Matching follows DICOM (PS3.4 C.2.2.2): a text filter with ``*`` (any run of characters) or
``?`` (one character) is a wildcard match, translated to ``LIKE`` with ``%``, ``_`` and the
escape character escaped; otherwise the match is exact. An empty filter or one made only of
``*`` matches everything (universal matching). Matching is case-sensitive on both backends.
"""

from __future__ import annotations

import datetime
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import ColumnElement, RowMapping, Select, exists, select

from biobank.catalog.models import (
    BatchState,
    BatchSummary,
    InstanceSummary,
    ItemOutcome,
    PatientSummary,
    ProblemItem,
    SeriesSummary,
    StudySummary,
)
from biobank.catalog.schema import INGEST_BATCH, INGEST_ITEM, INSTANCE, PATIENT, SERIES, STUDY
from biobank.errors import InvalidQuery

if TYPE_CHECKING:
    AnySelect: TypeAlias = Select[*tuple[Any, ...]]
    """A ``SELECT`` of any columns."""

ESCAPE = "!"
"""The ``LIKE`` escape character used for wildcard matching."""


def wildcard(column: Any, value: str | None) -> ColumnElement[bool] | None:
    """The condition matching ``column`` against the DICOM filter ``value`` (None: no filter)."""
    if value is None or set(value) <= {"*"}:
        return None
    if "*" not in value and "?" not in value:
        condition: ColumnElement[bool] = column == value
        return condition
    escaped = value.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%")
    escaped = escaped.replace("_", ESCAPE + "_")
    pattern = escaped.replace("*", "%").replace("?", "_")
    like: ColumnElement[bool] = column.like(pattern, escape=ESCAPE)
    return like


def page(stmt: AnySelect, limit: int, offset: int) -> AnySelect:
    """``stmt`` limited to ``limit`` rows from ``offset``.

    Raises
    ------
    InvalidQuery
        If ``limit`` or ``offset`` is negative.
    """
    if limit < 0 or offset < 0:
        raise InvalidQuery(
            f"limit={limit}, offset={offset}: paging needs a limit and an offset >= 0"
        )
    return stmt.limit(limit).offset(offset)


def _where(stmt: AnySelect, *conditions: ColumnElement[bool] | None) -> AnySelect:
    present = [condition for condition in conditions if condition is not None]
    return stmt.where(*present) if present else stmt


def _nulls_last(column: Any) -> tuple[Any, Any]:
    return column.is_(None), column


def patients_query(patient_pseudonym: str | None) -> AnySelect:
    """Patients by pseudonym (exact or wildcard), in pseudonym order."""
    stmt = select(
        PATIENT.c.patient_pseudonym,
        PATIENT.c.patient_sex,
        PATIENT.c.patient_birth_date,
        PATIENT.c.number_of_studies,
    )
    stmt = _where(stmt, wildcard(PATIENT.c.patient_pseudonym, patient_pseudonym))
    return stmt.order_by(PATIENT.c.patient_pseudonym)


def studies_query(
    *,
    patient_pseudonym: str | None,
    study_instance_uid: str | None,
    date_from: datetime.date | None,
    date_to: datetime.date | None,
    modality: str | None,
    accession_number: str | None,
    study_description: str | None,
    dated: bool | None = None,
) -> AnySelect:
    """Studies matching every filter given, by study date then Study Instance UID.

    Studies without a date come last; a date range excludes them (and then the date index
    gives the order). ``modality`` keeps the studies with a series of that modality.
    ``dated`` True keeps only the studies with a date, False only those without one: each
    part is then ordered by an index (see :meth:`Catalog.find_studies`).
    """
    study = STUDY.c
    stmt = select(
        study.study_instance_uid,
        PATIENT.c.patient_pseudonym,
        study.study_date,
        study.study_time,
        study.accession_number,
        study.study_id,
        study.study_description,
        study.modalities_in_study,
        study.number_of_series,
        study.number_of_instances,
        study.stored_bytes,
    ).join_from(STUDY, PATIENT, study.patient_id == PATIENT.c.id)
    has_modality = None
    if modality:
        has_modality = exists().where(SERIES.c.study_id == study.id, SERIES.c.modality == modality)
    stmt = _where(
        stmt,
        wildcard(PATIENT.c.patient_pseudonym, patient_pseudonym),
        None if not study_instance_uid else study.study_instance_uid == study_instance_uid,
        None if date_from is None else study.study_date >= date_from,
        None if date_to is None else study.study_date <= date_to,
        has_modality,
        wildcard(study.accession_number, accession_number),
        wildcard(study.study_description, study_description),
    )
    if dated is False:
        return stmt.where(study.study_date.is_(None)).order_by(study.study_instance_uid)
    if dated:
        stmt = stmt.where(study.study_date.is_not(None))
    if dated or date_from is not None or date_to is not None:
        return stmt.order_by(study.study_date, study.study_instance_uid)
    return stmt.order_by(*_nulls_last(study.study_date), study.study_instance_uid)


def is_exact(value: str | None) -> bool:
    """Whether the filter ``value`` selects by equality (not a wildcard, not universal)."""
    return bool(value) and "*" not in (value or "") and "?" not in (value or "")


def series_query(
    *,
    study_instance_uid: str | None,
    series_instance_uid: str | None,
    modality: str | None,
    series_description: str | None,
) -> AnySelect:
    """Series matching every filter given, by Series Number (missing last) then UID."""
    series = SERIES.c
    stmt = select(
        series.series_instance_uid,
        STUDY.c.study_instance_uid,
        series.modality,
        series.series_number,
        series.series_description,
        series.body_part_examined,
        series.manufacturer,
        series.number_of_instances,
    ).join_from(SERIES, STUDY, series.study_id == STUDY.c.id)
    stmt = _where(
        stmt,
        None if not study_instance_uid else STUDY.c.study_instance_uid == study_instance_uid,
        None if not series_instance_uid else series.series_instance_uid == series_instance_uid,
        None if not modality else series.modality == modality,
        wildcard(series.series_description, series_description),
    )
    return stmt.order_by(*_nulls_last(series.series_number), series.series_instance_uid)


def instances_query(
    *,
    series_instance_uid: str | None,
    sop_instance_uid: str | None,
    study_instance_uid: str | None,
) -> AnySelect:
    """Instances matching every filter given.

    Ordered by series (Series Number, missing last, then UID) and within a series by
    Instance Number (missing last) then SOP Instance UID.
    """
    instance = INSTANCE.c
    stmt = (
        select(
            instance.sop_instance_uid,
            SERIES.c.series_instance_uid,
            STUDY.c.study_instance_uid,
            instance.sop_class_uid,
            instance.instance_number,
            instance.transfer_syntax_uid,
            instance.rows,
            instance.columns,
            instance.number_of_frames,
            instance.blob_digest,
            instance.blob_size,
        )
        .join_from(INSTANCE, SERIES, instance.series_id == SERIES.c.id)
        .join(STUDY, SERIES.c.study_id == STUDY.c.id)
    )
    stmt = _where(
        stmt,
        None if not series_instance_uid else SERIES.c.series_instance_uid == series_instance_uid,
        None if not sop_instance_uid else instance.sop_instance_uid == sop_instance_uid,
        None if not study_instance_uid else STUDY.c.study_instance_uid == study_instance_uid,
    )
    if series_instance_uid or sop_instance_uid:
        return stmt.order_by(*_nulls_last(instance.instance_number), instance.sop_instance_uid)
    return stmt.order_by(
        *_nulls_last(SERIES.c.series_number),
        SERIES.c.series_instance_uid,
        *_nulls_last(instance.instance_number),
        instance.sop_instance_uid,
    )


def problems_query(outcomes: list[str], batch_id: str | None) -> AnySelect:
    """Ingest items with one of ``outcomes`` (of one batch if given), newest first."""
    item = INGEST_ITEM.c
    stmt = select(
        item.batch_id,
        item.source_path,
        item.outcome,
        item.reason,
        item.sop_instance_uid,
        item.blob_digest,
        item.created_at,
    ).where(item.outcome.in_(outcomes))
    if batch_id is not None:
        stmt = stmt.where(item.batch_id == batch_id)
    return stmt.order_by(item.id.desc())


BATCH_COLUMNS = tuple(INGEST_BATCH.c)
"""Every column of ``ingest_batch``, for :func:`to_batch`."""


def to_patient(row: RowMapping) -> PatientSummary:
    """A :class:`PatientSummary` from a row of :func:`patients_query`."""
    return PatientSummary(
        patient_pseudonym=row["patient_pseudonym"],
        patient_sex=row["patient_sex"],
        patient_birth_date=row["patient_birth_date"],
        number_of_studies=row["number_of_studies"],
    )


def to_study(row: RowMapping) -> StudySummary:
    """A :class:`StudySummary` from a row of :func:`studies_query`."""
    modalities = row["modalities_in_study"]
    return StudySummary(
        study_instance_uid=row["study_instance_uid"],
        patient_pseudonym=row["patient_pseudonym"],
        study_date=row["study_date"],
        study_time=row["study_time"],
        accession_number=row["accession_number"],
        study_id=row["study_id"],
        study_description=row["study_description"],
        modalities_in_study=tuple(modalities.split("\\")) if modalities else (),
        number_of_series=row["number_of_series"],
        number_of_instances=row["number_of_instances"],
        stored_bytes=row["stored_bytes"],
    )


_SERIES_FIELDS = tuple(f.name for f in fields(SeriesSummary))
_INSTANCE_FIELDS = tuple(f.name for f in fields(InstanceSummary))


def to_series(row: RowMapping) -> SeriesSummary:
    """A :class:`SeriesSummary` from a row of :func:`series_query` (columns named as fields)."""
    return SeriesSummary(**{name: row[name] for name in _SERIES_FIELDS})


def to_instance(row: RowMapping) -> InstanceSummary:
    """An :class:`InstanceSummary` from a row of :func:`instances_query` (same names)."""
    return InstanceSummary(**{name: row[name] for name in _INSTANCE_FIELDS})


def to_batch(row: RowMapping, sources: tuple[str, ...]) -> BatchSummary:
    """A :class:`BatchSummary` from an ``ingest_batch`` row (``sources`` already decoded)."""
    return BatchSummary(
        batch_id=row["id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        state=BatchState(row["state"]),
        role=row["role"],
        pid=row["pid"],
        profile=row["profile"],
        key_id=row["key_id"],
        sources=sources,
        expected=row["expected"],
        received=row["received"],
        stored=row["stored"],
        duplicate=row["duplicate"],
        conflict=row["conflict"],
        rejected=row["rejected"],
        quarantined=row["quarantined"],
        bytes_in=row["bytes_in"],
    )


def to_problem(row: RowMapping) -> ProblemItem:
    """A :class:`ProblemItem` from a row of :func:`problems_query`."""
    return ProblemItem(
        batch_id=row["batch_id"],
        source_path=row["source_path"],
        outcome=ItemOutcome(row["outcome"]),
        reason=row["reason"],
        sop_instance_uid=row["sop_instance_uid"],
        blob_digest=row["blob_digest"],
        created_at=row["created_at"],
    )


__all__ = [
    "BATCH_COLUMNS",
    "ESCAPE",
    "instances_query",
    "is_exact",
    "page",
    "patients_query",
    "problems_query",
    "series_query",
    "studies_query",
    "to_batch",
    "to_instance",
    "to_patient",
    "to_problem",
    "to_series",
    "to_study",
    "wildcard",
]

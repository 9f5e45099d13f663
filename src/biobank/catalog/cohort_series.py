"""``cohort_series``: one row per series of a person, what the cohort compiler's series read.

A cohort count with series criteria visits every matching series. Reached through the
catalogue (``person`` → ``patient`` by pseudonym → ``study`` → ``series`` →
``series_curation``) that is four index look-ups per series; this table holds the same
values in one row per series — modality, body part, manufacturer (also lower-cased, for
case-insensitive matching), label, orientation, 3D, contrast, curation decision, the image
date (series date, else study date) and ``age_span``, the image date minus the person's
birth as ``YYYYMMDD`` numbers (:func:`~biobank.catalog.cohort_sql.age_span`) — so that two
covering indexes answer the series part of a count (:mod:`biobank.catalog.cohort`).

It is derived data, kept up to date at write time where its sources change:

- :func:`~biobank.catalog.omop_imaging.sync_imaging` (a new series is mapped to OMOP, its
  person created or their birth filled from the header) refreshes the chunk's persons;
- :func:`~biobank.catalog.omop_person.ensure_persons` (a new person, e.g. from a clinical
  record, whose series were already catalogued) and
  :func:`~biobank.catalog.omop_person.set_demographics` (a birth date changed) refresh the
  person;
- :class:`~biobank.catalog.curation.CurationRecords` (classification, QC, conformance,
  cohort, relabel, decisions on a series or a study) refreshes the series.

A refresh deletes the rows of the given series or persons and inserts them again from the
sources (one ``INSERT … SELECT``), so it is exact whatever changed. :func:`rebuild` does
that for every series: migration 0006 on an existing node, ``biobank omop sync``, and the
benchmark after its bulk load. A series whose patient has no OMOP person yet has no row
(the compiler never counted it: it joins persons).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, Select, delete, func, insert, select

from biobank.catalog.cohort_sql import age_span
from biobank.catalog.omop import COHORT_SERIES, PERSON
from biobank.catalog.schema import PATIENT, SERIES, SERIES_CURATION, STUDY

CHUNK = 500
"""Series or persons refreshed per statement."""

_COLUMNS = (
    "series_id",
    "person_id",
    "study_id",
    "modality",
    "body_part_examined",
    "manufacturer",
    "manufacturer_lower",
    "label",
    "orientation",
    "is3d",
    "contrast",
    "decision",
    "image_date",
    "age_span",
)


def source() -> Select[tuple[object, ...]]:
    """The rows of ``cohort_series`` computed from the catalogue and ``person``."""
    imaged = func.coalesce(SERIES.c.series_date, STUDY.c.study_date)
    return (
        select(
            SERIES.c.id,
            PERSON.c.person_id,
            STUDY.c.id,
            SERIES.c.modality,
            SERIES.c.body_part_examined,
            SERIES.c.manufacturer,
            func.lower(SERIES.c.manufacturer),
            SERIES_CURATION.c.label,
            SERIES_CURATION.c.orientation,
            SERIES_CURATION.c.is3d,
            SERIES_CURATION.c.contrast,
            SERIES_CURATION.c.decision,
            imaged,
            age_span(imaged, PERSON),
        )
        .select_from(PERSON)
        .join(PATIENT, PATIENT.c.patient_pseudonym == PERSON.c.person_source_value)
        .join(STUDY, STUDY.c.patient_id == PATIENT.c.id)
        .join(SERIES, SERIES.c.study_id == STUDY.c.id)
        .outerjoin(SERIES_CURATION, SERIES_CURATION.c.series_id == SERIES.c.id)
    )


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


def refresh_series(conn: Connection, series_ids: Iterable[int]) -> None:
    """Recompute the rows of these series (catalogue ids), in ``conn``'s transaction."""
    for chunk in _chunks(series_ids):
        conn.execute(delete(COHORT_SERIES).where(COHORT_SERIES.c.series_id.in_(chunk)))
        conn.execute(
            insert(COHORT_SERIES).from_select(_COLUMNS, source().where(SERIES.c.id.in_(chunk)))
        )


def refresh_persons(conn: Connection, person_ids: Iterable[int]) -> None:
    """Recompute the rows of every series of these persons, in ``conn``'s transaction."""
    for chunk in _chunks(person_ids):
        conn.execute(delete(COHORT_SERIES).where(COHORT_SERIES.c.person_id.in_(chunk)))
        conn.execute(
            insert(COHORT_SERIES).from_select(
                _COLUMNS, source().where(PERSON.c.person_id.in_(chunk))
            )
        )


def rebuild(conn: Connection) -> int:
    """Recompute the whole table, in ``conn``'s transaction; returns its number of rows."""
    conn.execute(delete(COHORT_SERIES))
    conn.execute(insert(COHORT_SERIES).from_select(_COLUMNS, source()))
    return int(conn.execute(select(func.count()).select_from(COHORT_SERIES)).scalar_one())


__all__ = ["CHUNK", "rebuild", "refresh_persons", "refresh_series", "source"]

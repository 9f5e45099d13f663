"""Reading the OMOP tables out: the CSV dump, and the facts the EUCAIM and MIABIS exports need.

**CSV dump** (:func:`export_omop_csv`): one ``<table>.csv`` per OMOP CDM 5.4 / MI-CDM table
of :data:`biobank.catalog.omop.OMOP_TABLES` (the ``concept`` seed included), UTF-8, a header
of the OHDSI column names in DDL order, RFC 4180 quoting, dates ``YYYY-MM-DD``, datetimes
``YYYY-MM-DD HH:MM:SS``, NULL as an empty field and an empty string as ``""`` (the
convention of PostgreSQL's CSV ``COPY``: the ``concept`` seed has empty, NOT NULL codes).
The files load unchanged into the OHDSI DDL: ``COPY <table> FROM '<table>.csv' WITH
(FORMAT csv, HEADER true)`` on PostgreSQL, any CSV importer elsewhere. Rows are streamed;
memory does not grow with the table.

**Facts** (:func:`patient_facts`, :func:`collection_facts`): plain dataclasses read
set-wise from ``person``, ``condition_occurrence``, ``measurement``/``observation``
(clinical variables, whose ``*_source_value`` is ``<form>.<variable>``), treatments
("Treatment Regimen" ``episode`` rows and ``drug_exposure``), ``image_occurrence``
and the catalogue's series. :mod:`biobank.datasets.exports` turns them into the EUCAIM
search view and the MIABIS collection descriptor.
"""

from __future__ import annotations

import datetime
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, func, select

from biobank.catalog.omop import (
    CDM_SOURCE,
    CONCEPT,
    CONDITION_OCCURRENCE,
    DRUG_EXPOSURE,
    EPISODE,
    IMAGE_OCCURRENCE,
    MEASUREMENT,
    OBSERVATION,
    OMOP_TABLES,
    PERSON,
)
from biobank.catalog.recording import chunked
from biobank.catalog.repository import Catalog
from biobank.catalog.schema import SERIES
from biobank.errors import InvalidInput

STREAM_ROWS = 5000
"""Rows fetched at a time by the dump."""
CONDITION_FIELD_CONCEPT = 1147127
"""``condition_occurrence.condition_occurrence_id`` (a variable qualifying a diagnosis)."""
TREATMENT_REGIMEN = 32531
"""Episode concept "Treatment Regimen": the clinical mapping opens one per treatment (a drug,
surgery, radiotherapy — not a biopsy)."""


# -- the CSV dump -------------------------------------------------------------------------


_NEEDS_QUOTES = frozenset(',"\r\n')


def _cell(value: Any) -> str:
    """One CSV field: NULL unquoted and empty, an empty string quoted (``""``)."""
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        if value == "" or not _NEEDS_QUOTES.isdisjoint(value):
            return '"' + value.replace('"', '""') + '"'
        return value
    return str(value)


def _dump_table(conn: Connection, table: Table, path: Path) -> int:
    key = list(table.primary_key.columns) or list(table.columns)[:1]
    stmt = select(*table.columns).order_by(*key)
    count = 0
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(column.name for column in table.columns) + "\n")
        result = conn.execution_options(yield_per=STREAM_ROWS).execute(stmt)
        for partition in result.partitions():
            handle.writelines(",".join(map(_cell, row)) + "\n" for row in partition)
            count += len(partition)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return count


@dataclass(frozen=True)
class CdmSource:
    """Who holds the data, for the ``cdm_source`` row of a dump (OMOP requires one)."""

    name: str
    """The site or node name (``cdm_source_name``, ``cdm_holder``)."""
    description: str = ""

    def row(self, today: datetime.date, concepts: int) -> dict[str, Any]:
        """The ``cdm_source`` row, dated ``today``."""
        return {
            "cdm_source_name": self.name[:255],
            "cdm_source_abbreviation": self.name[:25],
            "cdm_holder": self.name[:255],
            "source_description": self.description or None,
            "source_documentation_reference": None,
            "cdm_etl_reference": "Imaging Biobank (docs/omop.md)",
            "source_release_date": today,
            "cdm_release_date": today,
            "cdm_version": "v5.4",
            # the concept of CDM v5.4 is not in the verified seed: 0, with cdm_version said
            "cdm_version_concept_id": 0,
            "vocabulary_version": f"biobank concept seed ({concepts} concepts)",
        }


def export_omop_csv(
    catalog: Catalog, directory: Path, *, source: CdmSource | None = None
) -> dict[str, int]:
    """Write one CSV per OMOP CDM / MI-CDM table into ``directory`` (see the module doc).

    ``cdm_source`` is dumped as stored; when the node has none (the usual case) and
    ``source`` is given, the dump gets one row describing it, dated today.

    All tables are read in one transaction, so the dump is consistent. Each file is written
    to a temporary name and renamed when complete.

    Returns
    -------
    dict[str, int]
        Rows written per table name, in DDL reference order.

    Raises
    ------
    InvalidInput
        If ``directory`` exists and is not a directory.
    StorageError
        If the database failed.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InvalidInput(f"OMOP export: {directory} is not a directory; give a directory path")
    directory.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with catalog._reading("exporting the OMOP tables") as conn, conn.begin():
        for table in OMOP_TABLES:
            counts[table.name] = _dump_table(conn, table, directory / f"{table.name}.csv")
    if source is not None and counts.get(CDM_SOURCE.name) == 0:
        row = source.row(datetime.date.today(), counts.get(CONCEPT.name, 0))
        path = directory / f"{CDM_SOURCE.name}.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            handle.write(",".join(column.name for column in CDM_SOURCE.columns) + "\n")
            handle.write(",".join(_cell(row[column.name]) for column in CDM_SOURCE.columns) + "\n")
        counts[CDM_SOURCE.name] = 1
    return counts


# -- facts for the EUCAIM view and the MIABIS descriptor -----------------------------------


@dataclass(frozen=True)
class Term:
    """A coded value: vocabulary, code and label (from ``concept``), or a source value."""

    vocabulary: str
    code: str
    label: str


@dataclass(frozen=True)
class ConditionFact:
    """One diagnosis (``condition_occurrence``)."""

    condition_occurrence_id: int
    diagnosis: Term
    start_date: datetime.date


@dataclass(frozen=True)
class VariableFact:
    """One clinical variable value (a ``measurement`` or ``observation`` row of a form)."""

    variable: str
    """``<form>.<variable>`` (the row's ``*_source_value``)."""
    concept_id: int
    number: float | None
    text: str | None
    value: Term | None
    """The coded value (``value_as_concept_id``), if any."""
    day: datetime.date
    condition_occurrence_id: int | None
    """The diagnosis the value qualifies (``*_event_id`` with field concept 1147127)."""


@dataclass(frozen=True)
class StudyFact:
    """One imaging study of a person, from its ``image_occurrence`` rows and series."""

    study_instance_uid: str
    day: datetime.date
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    manufacturers: tuple[str, ...]
    series: int


@dataclass
class PatientFacts:
    """What the node knows about one person, for the EUCAIM search view."""

    person_id: int
    pseudonym: str
    gender_concept_id: int
    year_of_birth: int
    month_of_birth: int | None
    day_of_birth: int | None
    conditions: list[ConditionFact] = field(default_factory=list)
    variables: list[VariableFact] = field(default_factory=list)
    treatments: list[datetime.date] = field(default_factory=list)
    studies: list[StudyFact] = field(default_factory=list)


@dataclass(frozen=True)
class CollectionFacts:
    """Aggregate facts of the node's collection, for the MIABIS descriptor."""

    persons: int
    studies: int
    series: int
    sexes: dict[int, int]
    """Persons per ``gender_concept_id``."""
    age_low: int | None
    age_high: int | None
    """Youngest and oldest age in years at the person's first dated event."""
    modalities: dict[str, int]
    """Series per modality."""
    body_parts: dict[str, int]
    """Series per body part examined."""
    diagnoses: list[tuple[Term, int]]
    """Each diagnosis and how many persons have it, most frequent first."""
    clinical: bool
    """Whether any clinical data (conditions, form variables) is held."""


def _concept_names(conn: Connection, ids: set[int]) -> dict[int, Term]:
    found: dict[int, Term] = {}
    for chunk in chunked((str(i) for i in ids if i), 500):
        rows = conn.execute(
            select(
                CONCEPT.c.concept_id,
                CONCEPT.c.vocabulary_id,
                CONCEPT.c.concept_code,
                CONCEPT.c.concept_name,
            ).where(CONCEPT.c.concept_id.in_([int(i) for i in chunk]))
        )
        found.update({int(cid): Term(str(v), str(c), str(n)) for cid, v, c, n in rows})
    return found


def _term(concepts: dict[int, Term], concept_id: int | None, source: str | None) -> Term:
    if concept_id and concept_id in concepts:
        return concepts[concept_id]
    return Term("source", source or "", source or "")


def _persons(conn: Connection) -> dict[int, PatientFacts]:
    rows = conn.execute(
        select(
            PERSON.c.person_id,
            PERSON.c.person_source_value,
            PERSON.c.gender_concept_id,
            PERSON.c.year_of_birth,
            PERSON.c.month_of_birth,
            PERSON.c.day_of_birth,
        ).order_by(PERSON.c.person_source_value)
    )
    return {
        int(r[0]): PatientFacts(int(r[0]), str(r[1] or r[0]), int(r[2]), int(r[3]), r[4], r[5])
        for r in rows
    }


def _variables(conn: Connection, table: Table) -> Iterator[tuple[Any, ...]]:
    columns: tuple[ColumnElement[Any], ...]
    if table is MEASUREMENT:
        columns = (
            MEASUREMENT.c.person_id,
            MEASUREMENT.c.measurement_source_value,
            MEASUREMENT.c.measurement_concept_id,
            MEASUREMENT.c.value_as_number,
            MEASUREMENT.c.value_source_value,
            MEASUREMENT.c.value_as_concept_id,
            MEASUREMENT.c.measurement_date,
            MEASUREMENT.c.measurement_event_id,
            MEASUREMENT.c.meas_event_field_concept_id,
        )
    else:
        columns = (
            OBSERVATION.c.person_id,
            OBSERVATION.c.observation_source_value,
            OBSERVATION.c.observation_concept_id,
            OBSERVATION.c.value_as_number,
            func.coalesce(OBSERVATION.c.value_as_string, OBSERVATION.c.value_source_value),
            OBSERVATION.c.value_as_concept_id,
            OBSERVATION.c.observation_date,
            OBSERVATION.c.observation_event_id,
            OBSERVATION.c.obs_event_field_concept_id,
        )
    # Form variables are named "<form>.<variable>"; DICOM keywords have no dot.
    yield from conn.execute(select(*columns).where(columns[1].like("%.%")))


def patient_facts(catalog: Catalog) -> list[PatientFacts]:
    """Every person with their diagnoses, form variables, treatments and imaging studies.

    Sorted by pseudonym. One read transaction.
    """
    with catalog._reading("reading the OMOP facts of the EUCAIM view") as conn, conn.begin():
        persons = _persons(conn)
        conditions = conn.execute(
            select(
                CONDITION_OCCURRENCE.c.person_id,
                CONDITION_OCCURRENCE.c.condition_occurrence_id,
                CONDITION_OCCURRENCE.c.condition_concept_id,
                CONDITION_OCCURRENCE.c.condition_source_value,
                CONDITION_OCCURRENCE.c.condition_start_date,
            ).order_by(
                CONDITION_OCCURRENCE.c.condition_start_date,
                CONDITION_OCCURRENCE.c.condition_occurrence_id,
            )
        ).all()
        variables = [*_variables(conn, MEASUREMENT), *_variables(conn, OBSERVATION)]
        concepts = _concept_names(
            conn,
            {int(r[2] or 0) for r in conditions} | {int(r[5] or 0) for r in variables},
        )
        for person_id, cid, concept_id, source, day in conditions:
            persons[person_id].conditions.append(
                ConditionFact(int(cid), _term(concepts, concept_id, source), day)
            )
        for person_id, name, concept_id, number, text, value_id, day, event, field_id in variables:
            persons[person_id].variables.append(
                VariableFact(
                    variable=str(name),
                    concept_id=int(concept_id or 0),
                    number=None if number is None else float(number),
                    text=text,
                    value=concepts.get(int(value_id)) if value_id else None,
                    day=day,
                    condition_occurrence_id=(
                        int(event) if event and field_id == CONDITION_FIELD_CONCEPT else None
                    ),
                )
            )
        treatments = [
            *conn.execute(
                select(EPISODE.c.person_id, EPISODE.c.episode_start_date).where(
                    EPISODE.c.episode_concept_id == TREATMENT_REGIMEN
                )
            ),
            *conn.execute(
                select(DRUG_EXPOSURE.c.person_id, DRUG_EXPOSURE.c.drug_exposure_start_date)
            ),
        ]
        for person_id, day in treatments:
            persons[person_id].treatments.append(day)
        _attach_studies(conn, persons)
    for person in persons.values():
        person.treatments.sort()
    return sorted(persons.values(), key=lambda p: p.pseudonym)


def _attach_studies(conn: Connection, persons: dict[int, PatientFacts]) -> None:
    rows = conn.execute(
        select(
            IMAGE_OCCURRENCE.c.person_id,
            IMAGE_OCCURRENCE.c.image_study_uid,
            IMAGE_OCCURRENCE.c.image_occurrence_date,
            SERIES.c.modality,
            SERIES.c.body_part_examined,
            SERIES.c.manufacturer,
        )
        .join_from(
            IMAGE_OCCURRENCE,
            SERIES,
            IMAGE_OCCURRENCE.c.image_series_uid == SERIES.c.series_instance_uid,
            isouter=True,
        )
        .order_by(IMAGE_OCCURRENCE.c.person_id, IMAGE_OCCURRENCE.c.image_occurrence_id)
    )
    grouped: dict[tuple[int, str], dict[str, Any]] = {}
    for person_id, study_uid, day, modality, body_part, manufacturer in rows:
        study = grouped.setdefault(
            (int(person_id), str(study_uid)),
            {"day": day, "modalities": {}, "body_parts": {}, "manufacturers": {}, "series": 0},
        )
        study["day"] = min(study["day"], day)
        study["series"] += 1
        for key, value in (
            ("modalities", modality),
            ("body_parts", body_part),
            ("manufacturers", manufacturer),
        ):
            if value:
                study[key][str(value).strip()] = None
    for (person_id, study_uid), study in grouped.items():
        persons[person_id].studies.append(
            StudyFact(
                study_instance_uid=study_uid,
                day=study["day"],
                modalities=tuple(study["modalities"]),
                body_parts=tuple(study["body_parts"]),
                manufacturers=tuple(study["manufacturers"]),
                series=study["series"],
            )
        )
    for person in persons.values():
        person.studies.sort(key=lambda s: (s.day, s.study_instance_uid))


def _first_events(conn: Connection) -> dict[int, datetime.date]:
    firsts: dict[int, datetime.date] = {}
    for table, column in (
        (IMAGE_OCCURRENCE, IMAGE_OCCURRENCE.c.image_occurrence_date),
        (CONDITION_OCCURRENCE, CONDITION_OCCURRENCE.c.condition_start_date),
    ):
        rows = conn.execute(select(table.c.person_id, func.min(column)).group_by(table.c.person_id))
        for person_id, day in rows:
            if day is not None and (person_id not in firsts or day < firsts[person_id]):
                firsts[int(person_id)] = day
    return firsts


def collection_facts(catalog: Catalog) -> CollectionFacts:
    """Counts and value sets of the whole node (persons, imaging, diagnoses), one read."""
    with catalog._reading("reading the OMOP facts of the MIABIS descriptor") as conn, conn.begin():
        persons = conn.execute(
            select(PERSON.c.person_id, PERSON.c.gender_concept_id, PERSON.c.year_of_birth)
        ).all()
        sexes: dict[int, int] = defaultdict(int)
        for _, gender, _ in persons:
            sexes[int(gender)] += 1
        firsts = _first_events(conn)
        ages = [
            firsts[int(pid)].year - int(year)
            for pid, _, year in persons
            if year and int(pid) in firsts
        ]
        studies = conn.execute(
            select(func.count(func.distinct(IMAGE_OCCURRENCE.c.image_study_uid)))
        ).scalar_one()
        joined = (
            select(SERIES.c.modality, SERIES.c.body_part_examined, func.count())
            .join_from(
                IMAGE_OCCURRENCE,
                SERIES,
                IMAGE_OCCURRENCE.c.image_series_uid == SERIES.c.series_instance_uid,
            )
            .group_by(SERIES.c.modality, SERIES.c.body_part_examined)
        )
        modalities: dict[str, int] = defaultdict(int)
        body_parts: dict[str, int] = defaultdict(int)
        series = 0
        for modality, body_part, count in conn.execute(joined):
            series += int(count)
            modalities[(modality or "").strip().upper() or "UNKNOWN"] += int(count)
            body_parts[(body_part or "").strip().upper() or "UNKNOWN"] += int(count)
        diagnosis_rows = conn.execute(
            select(
                CONDITION_OCCURRENCE.c.condition_concept_id,
                CONDITION_OCCURRENCE.c.condition_source_value,
                func.count(func.distinct(CONDITION_OCCURRENCE.c.person_id)),
            ).group_by(
                CONDITION_OCCURRENCE.c.condition_concept_id,
                CONDITION_OCCURRENCE.c.condition_source_value,
            )
        ).all()
        concepts = _concept_names(conn, {int(r[0] or 0) for r in diagnosis_rows})
        variables = (
            conn.execute(
                select(func.count())
                .select_from(MEASUREMENT)
                .where(and_(MEASUREMENT.c.measurement_source_value.like("%.%")))
            ).scalar_one()
            + conn.execute(
                select(func.count())
                .select_from(OBSERVATION)
                .where(OBSERVATION.c.observation_source_value.like("%.%"))
            ).scalar_one()
        )
    diagnoses: dict[Term, int] = defaultdict(int)
    for concept_id, source, count in diagnosis_rows:
        diagnoses[_term(concepts, concept_id, source)] += int(count)
    return CollectionFacts(
        persons=len(persons),
        studies=int(studies),
        series=series,
        sexes=dict(sexes),
        age_low=min(ages) if ages else None,
        age_high=max(ages) if ages else None,
        modalities=dict(sorted(modalities.items())),
        body_parts=dict(sorted(body_parts.items())),
        diagnoses=sorted(diagnoses.items(), key=lambda item: (-item[1], item[0].code)),
        clinical=bool(diagnosis_rows) or variables > 0,
    )


__all__ = [
    "CONDITION_FIELD_CONCEPT",
    "TREATMENT_REGIMEN",
    "CollectionFacts",
    "ConditionFact",
    "PatientFacts",
    "StudyFact",
    "Term",
    "VariableFact",
    "collection_facts",
    "export_omop_csv",
    "patient_facts",
]

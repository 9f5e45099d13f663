"""Ingested imaging in OMOP: persons, imaging procedures, ``image_occurrence``, ``image_feature``.

:func:`sync_imaging` maps every catalogued series that has no ``image_occurrence`` yet (the
anti-join on ``image_series_uid`` makes it idempotent and lets a failed run be retried):

- **person** — found or created by the patient pseudonym (``person_source_value``); sex
  (``PatientSex`` M/F → 8507/8532) and year of birth (``PatientBirthDate``, else the year of
  the study date minus ``PatientAge``) are filled only while unknown: the clinical form owns
  demographics (the rule of :func:`biobank.catalog.omop_person.set_demographics`, applied
  here with one ``executemany`` per column).
- **procedure_occurrence** — one per study (the imaging exam): ``procedure_date`` = study
  date (de-identified dates are already shifted), type 32817 (EHR),
  ``procedure_source_value`` = the study's first modality, ``procedure_concept_id`` = the
  SNOMED imaging procedure of that modality when the concept seed has it, else 0. A later
  series of the same study reuses the procedure of the study's first image_occurrence.
- **image_occurrence** — one per series: ``image_occurrence_date`` = the first of
  SeriesDate, StudyDate, AcquisitionDate, ContentDate, and as a last resort the date the
  series was catalogued (NOT NULL in MI-CDM; such a series is then dated by its arrival,
  not by its acquisition). ``modality_concept_id`` from the ImageWG "DICOM Value Sets"
  (2128009190 CT, 2128009230 MR, ...; 0 if unknown), ``anatomic_site_concept_id`` from
  BodyPartExamined through its SNOMED code (DICOM PS3.16 Annex L) when the concept seed has
  it, else 0; ``wadors_uri`` = ``/dicomweb/studies/<study>/series/<series>`` (relative to
  the node), ``local_path`` NULL (blobs are content-addressed, not per series).
- **image_feature** — acquisition parameters of the series' first instance: numbers
  (field strength, slice thickness, TR, TE, flip angle, kVp, pixel spacing, ...) become
  ``measurement`` rows (``value_as_number``), strings (manufacturer, model, body part,
  contrast agent presence, ...) ``observation`` rows (``value_as_string``); the concept is
  the ImageWG "DICOM Attributes" concept of the tag (e.g. 2128000823 Magnetic Field
  Strength) and the source value the DICOM keyword. Each gets an ``image_feature`` row
  pointing at it: ``image_feature_event_field_concept_id`` is the OMOP CDM *Table* concept
  of the table holding the value (1147330 measurement, 1147304 observation — the MI-CDM
  field specification asks for a concept of class "Table" of vocabulary CDM), type 32817,
  finding 0.

Then the persons' observation periods are recomputed. Everything is read set-wise (one row
per series, and only the wanted elements of the first instance's header are decoded) and
written in bulk with keys reserved ahead (``COPY`` on PostgreSQL, ``executemany`` on
SQLite), in transactions of :data:`SYNC_CHUNK` series.

:func:`sync_catalog_imaging` runs it on a :class:`Catalog` (``biobank omop sync``:
:func:`sync_imaging_all`); :func:`sync_imaging_quietly` is what ingest calls after each
batch: a failure is logged (type and count only) and the series are picked up again by the
next sync.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Date, Table, and_, bindparam, func, select, update

from biobank.catalog import cohort_series
from biobank.catalog.omop import (
    CONCEPT,
    IMAGE_FEATURE,
    IMAGE_OCCURRENCE,
    MEASUREMENT,
    OBSERVATION,
    PERSON,
    PROCEDURE_OCCURRENCE,
)
from biobank.catalog.omop_person import UNKNOWN, ensure_persons, refresh_observation_periods
from biobank.catalog.recording import chunked
from biobank.catalog.repository import Catalog
from biobank.catalog.schema import INSTANCE, PATIENT, SERIES, STUDY

logger = logging.getLogger(__name__)

SYNC_CHUNK = 1000
"""Series mapped per transaction."""
TYPE_EHR = 32817
"""Type concept of every row written here ("EHR")."""
MEASUREMENT_TABLE_CONCEPT = 1147330
"""OMOP CDM Table concept "measurement" (``image_feature_event_field_concept_id``)."""
OBSERVATION_TABLE_CONCEPT = 1147304
"""OMOP CDM Table concept "observation" (``image_feature_event_field_concept_id``)."""
GENDER_CONCEPTS = {"M": 8507, "F": 8532}
"""PatientSex (0010,0040) → OMOP gender concept (O and absent stay unknown, 0)."""
MILLIMETER = 8588
"""UCUM mm, the unit of the spacing and thickness measurements."""

MODALITY_CONCEPTS: dict[str, int] = {
    "BMD": 2128009184,
    "CR": 2128009189,
    "CT": 2128009190,
    "DOC": 2128009194,
    "DX": 2128009197,
    "ES": 2128009203,
    "GM": 2128009210,
    "IO": 2128009214,
    "IVUS": 2128009217,
    "KO": 2128009219,
    "MG": 2128009228,
    "MR": 2128009230,
    "NM": 2128009233,
    "OCT": 2128009236,
    "OP": 2128009239,
    "OPT": 2128009241,
    "OT": 2128009246,
    "PR": 2128009250,
    "PT": 2128009252,
    "PX": 2128009253,
    "REG": 2128009254,
    "RF": 2128009256,
    "RTDOSE": 2128009259,
    "RTIMAGE": 2128009260,
    "RTPLAN": 2128009261,
    "RTRECORD": 2128009262,
    "RTSTRUCT": 2128009263,
    "SEG": 2128009265,
    "SM": 2128009266,
    "SR": 2128009268,
    "US": 2128009275,
    "XA": 2128009279,
    "XC": 2128009280,
}
"""Modality (0008,0060) → ImageWG "DICOM Value Sets" concept (OHDSI/ImageWG
``omop_table_staging_v3.csv``; the ids are stable). Others are looked up in ``concept``."""

PROCEDURE_SNOMED: dict[str, str] = {
    "CT": "77477000",
    "MR": "113091000",
    "PT": "82918005",
    "US": "16310003",
    "MG": "71651007",
    "CR": "363680008",
    "DX": "363680008",
    "NM": "373205008",
}
"""Modality → SNOMED CT code of the imaging procedure; its OMOP concept is looked up in the
concept seed (``procedure_concept_id`` 0 when the seed lacks it)."""

BODY_PART_SNOMED: dict[str, str] = {
    "ABDOMEN": "113345001",
    "BRAIN": "12738006",
    "BREAST": "76752008",
    "CHEST": "51185008",
    "COLON": "71854001",
    "HEAD": "69536005",
    "HEART": "80891009",
    "KIDNEY": "64033007",
    "LIVER": "10200004",
    "LUNG": "39607008",
    "NECK": "45048000",
    "PANCREAS": "15776009",
    "PELVIS": "12921003",
    "PROSTATE": "41216001",
    "RECTUM": "34402009",
    "WHOLEBODY": "38266002",
}
"""BodyPartExamined (0018,0015) → SNOMED CT body structure (DICOM PS3.16 Annex L)."""


@dataclass(frozen=True)
class AcquisitionAttribute:
    """A header attribute recorded as an image feature."""

    keyword: str
    tag: str
    """Eight hex digits, the DICOM JSON key and the ImageWG ``concept_code``."""
    concept_id: int
    """ImageWG "DICOM Attributes" concept."""
    numeric: bool
    unit: str | None = None


ACQUISITION_ATTRIBUTES: tuple[AcquisitionAttribute, ...] = (
    AcquisitionAttribute("MagneticFieldStrength", "00180087", 2128000823, True, "T"),
    AcquisitionAttribute("SliceThickness", "00180050", 2128000808, True, "mm"),
    AcquisitionAttribute("SpacingBetweenSlices", "00180088", 2128000824, True, "mm"),
    AcquisitionAttribute("PixelSpacing", "00280030", 2128002087, True, "mm"),
    AcquisitionAttribute("RepetitionTime", "00180080", 2128000816, True, "ms"),
    AcquisitionAttribute("EchoTime", "00180081", 2128000817, True, "ms"),
    AcquisitionAttribute("InversionTime", "00180082", 2128000818, True, "ms"),
    AcquisitionAttribute("EchoTrainLength", "00180091", 2128000827, True),
    AcquisitionAttribute("FlipAngle", "00181314", 2128000990, True, "deg"),
    AcquisitionAttribute("KVP", "00180060", 2128000809, True, "kV"),
    AcquisitionAttribute("XRayTubeCurrent", "00181151", 2128000924, True, "mA"),
    AcquisitionAttribute("ExposureTime", "00181150", 2128000923, True, "ms"),
    AcquisitionAttribute("Manufacturer", "00080070", 2128000047, False),
    AcquisitionAttribute("ManufacturerModelName", "00081090", 2128000168, False),
    AcquisitionAttribute("BodyPartExamined", "00180015", 2128000783, False),
    AcquisitionAttribute("ScanningSequence", "00180020", 2128000784, False),
    AcquisitionAttribute("SequenceVariant", "00180021", 2128000785, False),
    AcquisitionAttribute("MRAcquisitionType", "00180023", 2128000787, False),
    AcquisitionAttribute("ConvolutionKernel", "00181210", 2128000974, False),
    AcquisitionAttribute("ContrastBolusAgent", "00180010", 2128000779, False),
)
"""What :func:`sync_imaging` records per series (ImageWG concept ids, checked against
``omop_table_staging_v3.csv``). Pixel Spacing records its first (row) value as the number
and both values as ``value_source_value``. Contrast/Bolus Agent records only its presence
(``YES`` when it has a value, ``NO`` when present but empty): the agent's name is free text.
"""

_UNITS = {"mm": MILLIMETER}
_STRING_LIMIT = 60  # observation.value_as_string
_SOURCE_LIMIT = 50  # *_source_value

_ACQUISITION_DATE = "00080022"
_CONTENT_DATE = "00080023"
_PATIENT_AGE = "00101010"


@dataclass
class _Series:
    series_id: int
    series_uid: str
    study_uid: str
    modality: str | None
    body_part: str | None
    series_date: datetime.date | None
    study_date: datetime.date | None
    pseudonym: str
    patient_sex: str | None
    birth_date: datetime.date | None
    created: datetime.date
    header: dict[str, Any] | None = None


@dataclass(frozen=True)
class SyncReport:
    """What one :func:`sync_imaging` call wrote."""

    series: int = 0
    persons: int = 0
    procedures: int = 0
    features: int = 0


def _values(header: dict[str, Any] | None, tag: str) -> list[Any]:
    if not header:
        return []
    element = header.get(tag)
    if not isinstance(element, dict):
        return []
    values = element.get("Value")
    return list(values) if isinstance(values, list) else []


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _text(values: list[Any]) -> str | None:
    parts = [str(v).strip() for v in values if isinstance(v, str | int | float)]
    text = "\\".join(p for p in parts if p)
    return text or None


def _da(values: list[Any]) -> datetime.date | None:
    text = _text(values[:1])
    if text is None or len(text) != 8 or not text.isdigit():
        return None
    try:
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _age_years(values: list[Any]) -> int | None:
    """PatientAge (AS, ``nnnY``/``M``/``W``/``D``) in whole years."""
    text = _text(values[:1])
    if text is None or len(text) != 4 or not text[:3].isdigit():
        return None
    number, unit = int(text[:3]), text[3].upper()
    divisor = {"Y": 1, "M": 12, "W": 52, "D": 365}.get(unit)
    return None if divisor is None else number // divisor


def occurrence_date(series: _Series) -> datetime.date:
    """The image_occurrence date: series, study, acquisition, content date, else catalogued."""
    return (
        series.series_date
        or series.study_date
        or _da(_values(series.header, _ACQUISITION_DATE))
        or _da(_values(series.header, _CONTENT_DATE))
        or series.created
    )


def _demographics(series: _Series) -> dict[str, object]:
    values: dict[str, object] = {}
    sex = (series.patient_sex or "").strip().upper()[:1]
    if sex in GENDER_CONCEPTS:
        values["gender_concept_id"] = GENDER_CONCEPTS[sex]
    if series.birth_date is not None:
        values["year_of_birth"] = series.birth_date.year
    else:
        age = _age_years(_values(series.header, _PATIENT_AGE))
        seen = series.study_date or series.series_date
        if age is not None and seen is not None:
            values["year_of_birth"] = seen.year - age
    return values


def _feature_values(
    header: dict[str, Any] | None,
) -> list[tuple[AcquisitionAttribute, float | None, str | None]]:
    """(attribute, number, text) of each acquisition attribute the header has."""
    found: list[tuple[AcquisitionAttribute, float | None, str | None]] = []
    if not header:
        return found
    for attribute in ACQUISITION_ATTRIBUTES:
        if attribute.tag not in header:
            continue
        values = _values(header, attribute.tag)
        if attribute.keyword == "ContrastBolusAgent":
            found.append((attribute, None, "YES" if _text(values) else "NO"))
        elif attribute.numeric:
            number = _number(values[0]) if values else None
            if number is not None:
                found.append((attribute, number, _text(values)))
        else:
            text = _text(values)
            if text is not None:
                found.append((attribute, None, text))
    return found


def _unsynced(conn: Connection, uids: Sequence[str] | None, limit: int) -> list[_Series]:
    stmt = (
        select(
            SERIES.c.id,
            SERIES.c.series_instance_uid,
            STUDY.c.study_instance_uid,
            SERIES.c.modality,
            SERIES.c.body_part_examined,
            SERIES.c.series_date,
            STUDY.c.study_date,
            PATIENT.c.patient_pseudonym,
            PATIENT.c.patient_sex,
            PATIENT.c.patient_birth_date,
            SERIES.c.created_at,
        )
        .join_from(SERIES, STUDY, SERIES.c.study_id == STUDY.c.id)
        .join(PATIENT, STUDY.c.patient_id == PATIENT.c.id)
        .outerjoin(
            IMAGE_OCCURRENCE,
            IMAGE_OCCURRENCE.c.image_series_uid == SERIES.c.series_instance_uid,
        )
        .where(IMAGE_OCCURRENCE.c.image_occurrence_id.is_(None))
        .order_by(SERIES.c.id)
        .limit(limit)
    )
    if uids is not None:
        stmt = stmt.where(SERIES.c.series_instance_uid.in_(uids))
    return [
        _Series(
            series_id=row[0],
            series_uid=row[1],
            study_uid=row[2],
            modality=row[3],
            body_part=row[4],
            series_date=row[5],
            study_date=row[6],
            pseudonym=row[7],
            patient_sex=row[8],
            birth_date=row[9],
            created=row[10].date(),
        )
        for row in conn.execute(stmt)
    ]


_DECODER = json.JSONDecoder()


def header_elements(text: str, tags: Iterable[str]) -> dict[str, Any]:
    """The DICOM JSON elements ``tags`` of a header, without parsing the whole header.

    A header is kilobytes of JSON (private blocks, sequences) of which a few elements are
    wanted: one scan finds their keys and only their values are decoded. An element nested
    in a sequence is taken when the top level lacks it (e.g. the functional groups of an
    enhanced multi-frame object); tags are sorted at each level of DICOM JSON, so a
    top-level element comes first.
    """
    return _elements(text, _key_pattern(tuple(sorted(set(tags)))))


@functools.cache
def _key_pattern(tags: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile('"(' + "|".join(re.escape(tag) for tag in tags) + r')"\s*:\s*')


def _elements(text: str, pattern: re.Pattern[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for match in pattern.finditer(text):
        tag = match.group(1)
        if tag in found:
            continue
        try:
            element, _ = _DECODER.raw_decode(text, match.end())
        except ValueError:
            continue
        if isinstance(element, dict):
            found[tag] = element
    return found


_WANTED_TAGS = (
    *(attribute.tag for attribute in ACQUISITION_ATTRIBUTES),
    _ACQUISITION_DATE,
    _CONTENT_DATE,
    _PATIENT_AGE,
)
_WANTED_PATTERN = _key_pattern(tuple(sorted(set(_WANTED_TAGS))))


def _read_headers(conn: Connection, batch: list[_Series]) -> None:
    """Attach to each series the wanted elements of its first instance's header."""
    by_id = {s.series_id: s for s in batch}
    firsts = select(func.min(INSTANCE.c.id)).where(INSTANCE.c.series_id.in_(by_id))
    firsts = firsts.group_by(INSTANCE.c.series_id)
    ids = [row[0] for row in conn.execute(firsts)]
    if not ids:
        return
    rows = conn.execute(
        select(INSTANCE.c.series_id, INSTANCE.c.header).where(INSTANCE.c.id.in_(ids))
    )
    for series_id, header in rows:
        by_id[series_id].header = _elements(header or "", _WANTED_PATTERN)


def _concepts_by_code(conn: Connection, vocabulary: str, codes: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    rows = conn.execute(
        select(CONCEPT.c.concept_code, CONCEPT.c.concept_id).where(
            and_(CONCEPT.c.vocabulary_id == vocabulary, CONCEPT.c.concept_code.in_(wanted))
        )
    )
    return {str(code): int(concept_id) for code, concept_id in rows}


def _modality_concepts(conn: Connection, modalities: Iterable[str]) -> dict[str, int]:
    known = {m: MODALITY_CONCEPTS[m] for m in modalities if m in MODALITY_CONCEPTS}
    others = [m for m in modalities if m not in MODALITY_CONCEPTS]
    if others:
        rows = conn.execute(
            select(CONCEPT.c.concept_code, CONCEPT.c.concept_id).where(
                and_(
                    CONCEPT.c.vocabulary_id == "DICOM",
                    CONCEPT.c.concept_class_id == "DICOM Value Sets",
                    CONCEPT.c.concept_code.in_(others),
                )
            )
        )
        known.update({str(code): int(concept_id) for code, concept_id in rows})
    return known


def _first_modality(modality: str | None) -> str:
    return (modality or "").split("\\")[0].strip().upper()


def _reserve_ids(conn: Connection, table: Table, key: str, count: int) -> list[int]:
    """``count`` new primary keys of ``table``, taken before the rows are inserted.

    Inserting with known keys lets the rows that point at them be built without a round
    trip per row (no ``RETURNING``). PostgreSQL draws them from the column's sequence;
    SQLite writers hold the database lock (``BEGIN IMMEDIATE``), so the next keys after the
    largest are free.
    """
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        sequence = func.pg_get_serial_sequence(table.name, key)
        rows = conn.execute(
            select(func.nextval(sequence)).select_from(func.generate_series(1, count))
        )
        return [int(row[0]) for row in rows]
    start = conn.execute(select(func.coalesce(func.max(table.c[key]), 0))).scalar_one()
    return list(range(int(start) + 1, int(start) + 1 + count))


def _bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys in the same order) fast, in ``conn``'s transaction.

    PostgreSQL: ``COPY ... FROM STDIN`` on the connection's psycopg connection. SQLite: one
    ``executemany`` of the plain statement, dates as ISO text (how SQLAlchemy stores them).
    The values are typed already (ints, floats, short strings, dates); SQLAlchemy's
    per-row parameter processing is what this skips — it cost more than the database.
    """
    if not rows:
        return
    columns = list(rows[0])
    names = ", ".join(table.c[name].name for name in columns)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(list(row.values()))
        return
    marks = ", ".join("?" for _ in columns)
    dates = [i for i, name in enumerate(columns) if isinstance(table.c[name].type, Date)]
    values = [list(row.values()) for row in rows]
    for row_values in values:
        for i in dates:
            if row_values[i] is not None:
                row_values[i] = row_values[i].isoformat()
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({names}) VALUES ({marks})", [tuple(v) for v in values]
    )


def _insert(conn: Connection, table: Table, key: str, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` with reserved keys (in bulk); return the keys in order."""
    ids = _reserve_ids(conn, table, key, len(rows))
    for row, new_id in zip(rows, ids, strict=True):
        row[key] = new_id
    _bulk_insert(conn, table, rows)
    return ids


def _ensure_persons(conn: Connection, batch: list[_Series]) -> dict[str, int]:
    """The person of each pseudonym (created when new), demographics filled.

    Sex and year of birth are written only where unknown, as
    :func:`~biobank.catalog.omop_person.set_demographics` with ``only_unknown=True`` does,
    but one ``executemany`` per column for the whole chunk.
    """
    persons = ensure_persons(conn, {s.pseudonym for s in batch})
    values: dict[int, dict[str, object]] = {}
    for series in batch:  # the first series of a person that knows a value gives it
        found = values.setdefault(persons[series.pseudonym], {})
        for column, value in _demographics(series).items():
            found.setdefault(column, value)
    for column in ("gender_concept_id", "year_of_birth"):
        updates = [
            {"p_id": person_id, "p_value": found[column]}
            for person_id, found in values.items()
            if column in found
        ]
        if updates:
            conn.execute(
                update(PERSON)
                .where(and_(PERSON.c.person_id == bindparam("p_id"), PERSON.c[column] == UNKNOWN))
                .values({column: bindparam("p_value")}),
                updates,
            )
    return persons


def _sync_chunk(conn: Connection, batch: list[_Series]) -> SyncReport:
    _read_headers(conn, batch)
    persons = _ensure_persons(conn, batch)
    modalities = {_first_modality(s.modality) for s in batch} - {""}
    modality_ids = _modality_concepts(conn, modalities)
    procedure_ids = _concepts_by_code(
        conn, "SNOMED", (PROCEDURE_SNOMED[m] for m in modalities if m in PROCEDURE_SNOMED)
    )
    body_parts = {(s.body_part or "").strip().upper() for s in batch} - {""}
    site_ids = _concepts_by_code(
        conn, "SNOMED", (BODY_PART_SNOMED[b] for b in body_parts if b in BODY_PART_SNOMED)
    )

    # One procedure per study: reuse the study's, else create it.
    study_uids = sorted({s.study_uid for s in batch})
    procedures: dict[str, int] = {}
    for chunk in chunked(study_uids):
        rows = conn.execute(
            select(
                IMAGE_OCCURRENCE.c.image_study_uid,
                func.min(IMAGE_OCCURRENCE.c.procedure_occurrence_id),
            )
            .where(IMAGE_OCCURRENCE.c.image_study_uid.in_(chunk))
            .group_by(IMAGE_OCCURRENCE.c.image_study_uid)
        )
        procedures.update({str(uid): int(pid) for uid, pid in rows})
    new_studies: dict[str, _Series] = {}
    for series in batch:
        if series.study_uid not in procedures:
            new_studies.setdefault(series.study_uid, series)
    if new_studies:
        rows_in = []
        for series in new_studies.values():
            modality = _first_modality(series.modality)
            code = PROCEDURE_SNOMED.get(modality)
            rows_in.append(
                {
                    "person_id": persons[series.pseudonym],
                    "procedure_concept_id": procedure_ids.get(code, UNKNOWN) if code else UNKNOWN,
                    "procedure_date": series.study_date or occurrence_date(series),
                    "procedure_type_concept_id": TYPE_EHR,
                    "procedure_source_value": modality[:_SOURCE_LIMIT] or None,
                }
            )
        new_ids = _insert(conn, PROCEDURE_OCCURRENCE, "procedure_occurrence_id", rows_in)
        for uid, pid in zip(new_studies, new_ids, strict=True):
            procedures[uid] = pid

    occurrence_ids = _insert(
        conn,
        IMAGE_OCCURRENCE,
        "image_occurrence_id",
        [
            {
                "person_id": persons[s.pseudonym],
                "procedure_occurrence_id": procedures[s.study_uid],
                "anatomic_site_concept_id": site_ids.get(
                    BODY_PART_SNOMED.get((s.body_part or "").strip().upper(), ""), UNKNOWN
                ),
                "wadors_uri": f"/dicomweb/studies/{s.study_uid}/series/{s.series_uid}",
                "local_path": None,
                "image_occurrence_date": occurrence_date(s),
                "image_study_uid": s.study_uid,
                "image_series_uid": s.series_uid,
                "modality_concept_id": modality_ids.get(_first_modality(s.modality), UNKNOWN),
            }
            for s in batch
        ],
    )
    features = _write_features(conn, batch, occurrence_ids, persons)
    refresh_observation_periods(conn, persons.values())
    # cohort_series: the chunk's new series, and ages if a birth was filled from a header.
    cohort_series.refresh_persons(conn, persons.values())
    return SyncReport(
        series=len(batch), persons=len(persons), procedures=len(new_studies), features=features
    )


def _write_features(
    conn: Connection, batch: list[_Series], occurrence_ids: list[int], persons: dict[str, int]
) -> int:
    measurements: list[dict[str, Any]] = []
    observations: list[dict[str, Any]] = []
    measured: list[tuple[int, int, int]] = []  # (person, occurrence, concept) per measurement
    observed: list[tuple[int, int, int]] = []
    for series, occurrence_id in zip(batch, occurrence_ids, strict=True):
        person_id = persons[series.pseudonym]
        day = occurrence_date(series)
        for attribute, number, text in _feature_values(series.header):
            if attribute.numeric:
                measurements.append(
                    {
                        "person_id": person_id,
                        "measurement_concept_id": attribute.concept_id,
                        "measurement_date": day,
                        "measurement_type_concept_id": TYPE_EHR,
                        "value_as_number": number,
                        "unit_concept_id": _UNITS.get(attribute.unit or "", UNKNOWN),
                        "unit_source_value": attribute.unit,
                        "measurement_source_value": attribute.keyword,
                        "value_source_value": text[:_SOURCE_LIMIT] if text else None,
                    }
                )
                measured.append((person_id, occurrence_id, attribute.concept_id))
            else:
                observations.append(
                    {
                        "person_id": person_id,
                        "observation_concept_id": attribute.concept_id,
                        "observation_date": day,
                        "observation_type_concept_id": TYPE_EHR,
                        "value_as_string": (text or "")[:_STRING_LIMIT],
                        "observation_source_value": attribute.keyword,
                        "value_source_value": (text or "")[:_SOURCE_LIMIT],
                    }
                )
                observed.append((person_id, occurrence_id, attribute.concept_id))
    features: list[dict[str, Any]] = []
    for table, key, rows, links, field in (
        (MEASUREMENT, "measurement_id", measurements, measured, MEASUREMENT_TABLE_CONCEPT),
        (OBSERVATION, "observation_id", observations, observed, OBSERVATION_TABLE_CONCEPT),
    ):
        if not rows:
            continue
        for (person_id, occurrence_id, concept_id), event_id in zip(
            links, _insert(conn, table, key, rows), strict=True
        ):
            features.append(
                {
                    "person_id": person_id,
                    "image_occurrence_id": occurrence_id,
                    "image_feature_event_field_concept_id": field,
                    "image_feature_event_id": event_id,
                    "image_feature_concept_id": concept_id,
                    "image_feature_type_concept_id": TYPE_EHR,
                    "image_finding_concept_id": UNKNOWN,
                }
            )
    _bulk_insert(conn, IMAGE_FEATURE, features)
    return len(features)


def _add(total: SyncReport, done: SyncReport) -> SyncReport:
    return SyncReport(
        series=total.series + done.series,
        persons=total.persons + done.persons,
        procedures=total.procedures + done.procedures,
        features=total.features + done.features,
    )


def sync_imaging(conn: Connection, series_uids: Iterable[str] | None = None) -> SyncReport:
    """Map catalogued series without an ``image_occurrence`` to OMOP, in ``conn``'s transaction.

    ``series_uids`` (Series Instance UIDs) limits the sync to those series (the series of
    one ingest batch); None maps every series still unmapped. Series already mapped are
    skipped (anti-join on ``image_series_uid``), so a repeated call does nothing.
    :func:`sync_catalog_imaging` runs it in transactions of :data:`SYNC_CHUNK` series.

    Returns
    -------
    SyncReport
        The number of series mapped, persons touched, procedures created, features written.
    """
    uids = None if series_uids is None else sorted(set(series_uids))
    total = SyncReport()
    groups: Iterable[Sequence[str] | None] = [None] if uids is None else chunked(uids)
    for group in groups:
        while batch := _unsynced(conn, group, SYNC_CHUNK):
            total = _add(total, _sync_chunk(conn, batch))
            if len(batch) < SYNC_CHUNK:
                break
    return total


def sync_catalog_imaging(catalog: Catalog, series_uids: Iterable[str] | None = None) -> SyncReport:
    """:func:`sync_imaging` on ``catalog``, one transaction per :data:`SYNC_CHUNK` series.

    Raises
    ------
    StorageError
        If the database failed (what was committed before stays; run the sync again).
    """
    uids = None if series_uids is None else sorted(set(series_uids))
    total = SyncReport()
    groups: Iterable[Sequence[str] | None] = [None] if uids is None else chunked(uids)
    for group in groups:
        while True:
            with catalog._writing("mapping series to OMOP image_occurrence") as conn:
                batch = _unsynced(conn, group, SYNC_CHUNK)
                done = _sync_chunk(conn, batch) if batch else SyncReport()
            total = _add(total, done)
            if len(batch) < SYNC_CHUNK:
                break
    if total.series:
        logger.info(
            "omop: mapped %d series (%d image features, %d new procedures)",
            total.series,
            total.features,
            total.procedures,
        )
    return total


def sync_imaging_all(catalog: Catalog) -> SyncReport:
    """Map every series not yet in OMOP (``biobank omop sync``), then rebuild ``cohort_series``.

    The rebuild (:func:`biobank.catalog.cohort_series.rebuild`) repairs whatever a write
    outside the maintained paths left behind.
    """
    report = sync_catalog_imaging(catalog, None)
    with catalog._writing("rebuilding the cohort series table") as conn:
        rows = cohort_series.rebuild(conn)
    logger.info("omop: cohort_series rebuilt (%d series)", rows)
    return report


def sync_imaging_quietly(catalog: Catalog, series_uids: Iterable[str] | None) -> SyncReport | None:
    """:func:`sync_catalog_imaging` for ingest: a failure is logged, never raised.

    ``series_uids`` are the series of the batch (the ingest service), or None for every
    series still unmapped (the ``biobank ingest`` pipeline, which so also retries what an
    earlier failure left). Unmapped series are mapped by the next sync (the next CLI
    ingest, or ``biobank omop sync``). The log line names the error type and a count only.
    """
    uids = None if series_uids is None else sorted(set(series_uids))
    if uids is not None and not uids:
        return SyncReport()
    try:
        return sync_catalog_imaging(catalog, uids)
    except Exception as exc:  # noqa: BLE001 - the ingest must not fail for its OMOP view
        logger.warning(
            "omop: mapping %s series to image_occurrence failed (%s); they stay unmapped "
            "until the next sync (biobank omop sync)",
            "all unmapped" if uids is None else len(uids),
            type(exc).__name__,
        )
        return None


__all__ = [
    "ACQUISITION_ATTRIBUTES",
    "BODY_PART_SNOMED",
    "MEASUREMENT_TABLE_CONCEPT",
    "MODALITY_CONCEPTS",
    "OBSERVATION_TABLE_CONCEPT",
    "PROCEDURE_SNOMED",
    "SYNC_CHUNK",
    "TYPE_EHR",
    "AcquisitionAttribute",
    "SyncReport",
    "header_elements",
    "occurrence_date",
    "sync_catalog_imaging",
    "sync_imaging",
    "sync_imaging_all",
    "sync_imaging_quietly",
]

r"""The DICOM query engine behind QIDO-RS (PS3.18 §10.6) and C-FIND (PS3.4 C.4.1).

A :class:`DicomQuery` names a level (patient, study, series, instance), matching keys (tag →
the value as DICOM writes it: ``Doe^J*``, ``20240101-20240131``, ``1.2.3,1.2.4``), the
attributes to return, paging, and optionally the study or series it is scoped to and the user
whose studies alone may be seen. :func:`run_search` compiles it to one ``SELECT`` over the
indexed columns; nothing is read from the blob store, and headers are read only for return
attributes that have no column.

Matching (PS3.4 C.2.2.2): single value; universal (empty or ``*``); wildcard (``*``, ``?``)
on text attributes; UID list (``\\`` or ``,`` separated) on UI attributes; range on dates
and times (``A-B``, ``-B``, ``A-``); a multi-valued ModalitiesInStudy matches studies with a
series of any of the modalities. ``fuzzy`` makes person-name matching case-insensitive and a
prefix match (PS3.18 ``fuzzymatching=true``). A person name written with component groups
(``Yamada^Tarou=山田^太郎``) matches a query on any one group. Keys the engine cannot match
on are reported in :attr:`SearchResult.unsupported` (QIDO-RS then sends a warning) and
ignored, as PS3.18 §8.3.4.1 says.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydicom.datadict import dictionary_VR
from sqlalchemy import ColumnElement, Connection, and_, exists, func, or_, select

from biobank.catalog.queries import ESCAPE
from biobank.catalog.schema import INSTANCE, PATIENT, SERIES, STUDY, STUDY_OWNER
from biobank.errors import InvalidQuery

if TYPE_CHECKING:
    from biobank.catalog.queries import AnySelect

MAX_LIMIT = 10_000
"""The most matches one query returns (a client pages with ``offset`` beyond it)."""


class QueryLevel(enum.StrEnum):
    """The level of a query (QIDO-RS resource or C-FIND QueryRetrieveLevel)."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    INSTANCE = "IMAGE"


_ORDER = [QueryLevel.PATIENT, QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.INSTANCE]


@dataclass(frozen=True)
class DicomQuery:
    """One query; see the module docstring for the matching rules."""

    level: QueryLevel
    match: Mapping[int, str] = field(default_factory=dict)
    include: frozenset[int] = frozenset()
    include_all: bool = False
    fuzzy: bool = False
    limit: int = 1000
    offset: int = 0
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    owner_user_id: int | None = None


@dataclass
class SearchResult:
    """The matches (DICOM JSON objects) and the keys that could not be matched on."""

    matches: list[dict[str, Any]]
    unsupported: list[int]


# --- what each key maps to ----------------------------------------------------------------

_P, _ST, _SE, _I = PATIENT.c, STUDY.c, SERIES.c, INSTANCE.c


class _Kind(enum.Enum):
    TEXT = "text"  # exact or wildcard
    PN = "pn"
    UID = "uid"  # UID list
    DATE = "date"
    TIME = "time"
    INT = "int"
    CS = "cs"  # exact or wildcard; a multi-valued key matches any value


@dataclass(frozen=True)
class _Key:
    level: QueryLevel
    column: Any
    kind: _Kind


_KEYS: dict[int, _Key] = {
    0x00100010: _Key(QueryLevel.PATIENT, _P.patient_name, _Kind.PN),
    0x00100020: _Key(QueryLevel.PATIENT, _P.patient_pseudonym, _Kind.TEXT),
    0x00100030: _Key(QueryLevel.PATIENT, _P.patient_birth_date, _Kind.DATE),
    0x00100040: _Key(QueryLevel.PATIENT, _P.patient_sex, _Kind.CS),
    0x0020000D: _Key(QueryLevel.STUDY, _ST.study_instance_uid, _Kind.UID),
    0x00080020: _Key(QueryLevel.STUDY, _ST.study_date, _Kind.DATE),
    0x00080030: _Key(QueryLevel.STUDY, _ST.study_time, _Kind.TIME),
    0x00080050: _Key(QueryLevel.STUDY, _ST.accession_number, _Kind.TEXT),
    0x00080090: _Key(QueryLevel.STUDY, _ST.referring_physician_name, _Kind.PN),
    0x00200010: _Key(QueryLevel.STUDY, _ST.study_id, _Kind.TEXT),
    0x00081030: _Key(QueryLevel.STUDY, _ST.study_description, _Kind.TEXT),
    0x00080061: _Key(QueryLevel.STUDY, _SE.modality, _Kind.CS),  # via the study's series
    0x0020000E: _Key(QueryLevel.SERIES, _SE.series_instance_uid, _Kind.UID),
    0x00080060: _Key(QueryLevel.SERIES, _SE.modality, _Kind.CS),
    0x00200011: _Key(QueryLevel.SERIES, _SE.series_number, _Kind.INT),
    0x0008103E: _Key(QueryLevel.SERIES, _SE.series_description, _Kind.TEXT),
    0x00180015: _Key(QueryLevel.SERIES, _SE.body_part_examined, _Kind.CS),
    0x00080021: _Key(QueryLevel.SERIES, _SE.series_date, _Kind.DATE),
    0x00080031: _Key(QueryLevel.SERIES, _SE.series_time, _Kind.TIME),
    0x00181030: _Key(QueryLevel.SERIES, _SE.protocol_name, _Kind.TEXT),
    0x00080070: _Key(QueryLevel.SERIES, _SE.manufacturer, _Kind.TEXT),
    0x00081090: _Key(QueryLevel.SERIES, _SE.manufacturer_model_name, _Kind.TEXT),
    0x00080016: _Key(QueryLevel.INSTANCE, _I.sop_class_uid, _Kind.UID),
    0x00080018: _Key(QueryLevel.INSTANCE, _I.sop_instance_uid, _Kind.UID),
    0x00200013: _Key(QueryLevel.INSTANCE, _I.instance_number, _Kind.INT),
    0x00280010: _Key(QueryLevel.INSTANCE, _I.rows, _Kind.INT),
    0x00280011: _Key(QueryLevel.INSTANCE, _I.columns, _Kind.INT),
    0x00280008: _Key(QueryLevel.INSTANCE, _I.number_of_frames, _Kind.INT),
    0x00280100: _Key(QueryLevel.INSTANCE, _I.bits_allocated, _Kind.INT),
}

#: Attributes of the levels above an instance, for ``includefield=all`` (Patient, General
#: Study, Patient Study, Clinical Trial Subject/Study, General Series, General Equipment,
#: Frame of Reference modules); the instance level returns its whole header.
PATIENT_LEVEL = frozenset(
    {
        0x00100010, 0x00100020, 0x00100021, 0x00100022, 0x00100024, 0x00100030,
        0x00100032, 0x00100040, 0x00101000, 0x00101001, 0x00101002, 0x00102160,
        0x00102201, 0x00102202, 0x00102292, 0x00102293, 0x00102294, 0x00102295,
        0x00102296, 0x00102297, 0x00102298, 0x00102299, 0x00104000, 0x00120062,
        0x00120063, 0x00120064, 0x00120010, 0x00120020, 0x00120021, 0x00120030,
        0x00120031, 0x00120040, 0x00120042, 0x00120081, 0x00120082,
    }
)  # fmt: skip
STUDY_LEVEL = frozenset(
    {
        0x00080020, 0x00080030, 0x00080050, 0x00080051, 0x00080056, 0x00080061,
        0x00080062, 0x00080090, 0x00080096, 0x0008009C, 0x00080201, 0x00081030,
        0x00081032, 0x00081048, 0x00081049, 0x00081060, 0x00081062, 0x00081080,
        0x00081084, 0x00101010, 0x00101020, 0x00101021, 0x00101022, 0x00101023,
        0x00101030, 0x00102000, 0x00102110, 0x00102180, 0x001021A0, 0x001021B0,
        0x001021C0, 0x001021D0, 0x00120050, 0x00120051, 0x00120083, 0x0020000D,
        0x00200010, 0x00321034, 0x00321060, 0x00321064, 0x00380010, 0x00380014,
        0x00380060, 0x00380062, 0x00380064, 0x00380500, 0x00400031, 0x00400032,
        0x00400033, 0x00401012,
    }
) | PATIENT_LEVEL  # fmt: skip
SERIES_LEVEL = frozenset(
    {
        0x00080021, 0x00080031, 0x00080060, 0x00080064, 0x00080068, 0x00080070,
        0x00080080, 0x00081010, 0x00081040, 0x00081050, 0x00081052, 0x00081070,
        0x00081072, 0x0008103E, 0x00081090, 0x00081111, 0x00180015, 0x00181000,
        0x00181002, 0x00181008, 0x00181009, 0x00181010, 0x00181016, 0x00181018,
        0x00181019, 0x00181020, 0x00181030, 0x00181050, 0x00181200, 0x00181201,
        0x00185100, 0x0020000E, 0x00200011, 0x00200052, 0x00200060, 0x00201040,
        0x00280051, 0x00280108, 0x00280109, 0x00400244, 0x00400245, 0x00400250,
        0x00400251, 0x00400253, 0x00400254, 0x00400260, 0x00400275, 0x00400280,
        0x00080005, 0x00080201,
    }
)  # fmt: skip

#: The return attributes each level always carries (PS3.18 Tables 6.7.1-2, -2a, -2b),
#: besides RetrieveURL, which the HTTP layer adds.
STUDY_RETURN = (
    0x00080020, 0x00080030, 0x00080050, 0x00080056, 0x00080061, 0x00080090,
    0x00081030, 0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x0020000D,
    0x00200010, 0x00201206, 0x00201208,
)  # fmt: skip
SERIES_RETURN = (
    0x00080060, 0x0008103E, 0x0020000E, 0x00200011, 0x00201209, 0x00080021,
    0x00080031, 0x00180015, 0x00400244, 0x00400245, 0x00400275, 0x0020000D,
)  # fmt: skip
INSTANCE_RETURN = (
    0x00080016, 0x00080018, 0x00080056, 0x00200013, 0x00280010, 0x00280011,
    0x00280100, 0x00280008, 0x0020000D, 0x0020000E,
)  # fmt: skip
PATIENT_RETURN = (0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x00201200)

_AVAILABILITY = 0x00080056


def tag_vr(tag: int) -> str:
    """The VR of ``tag`` in the data dictionary (``UN`` for private or unknown tags)."""
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


# --- matching -----------------------------------------------------------------------------


def _like(column: Any, value: str, *, fold: bool = False) -> ColumnElement[bool]:
    escaped = value.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%")
    pattern = escaped.replace("_", ESCAPE + "_").replace("*", "%").replace("?", "_")
    if fold:
        condition: ColumnElement[bool] = func.lower(column).like(pattern.lower(), escape=ESCAPE)
        return condition
    return column.like(pattern, escape=ESCAPE)  # type: ignore[no-any-return]


def _text(column: Any, value: str, fold: bool = False) -> ColumnElement[bool]:
    if "*" in value or "?" in value or fold:
        return _like(column, value, fold=fold)
    condition: ColumnElement[bool] = column == value
    return condition


def _person_name(column: Any, value: str, fuzzy: bool) -> ColumnElement[bool]:
    if fuzzy and not value.endswith("*"):
        value += "*"  # fuzzy: a prefix of the name, whatever the case
    whole = _text(column, value, fold=fuzzy)
    if "=" in value:
        return whole
    # A name with component groups (alphabetic=ideographic=phonetic) matches on any group.
    groups = [value + "=*", "*=" + value, "*=" + value + "=*"]
    return or_(whole, *(_like(column, g, fold=fuzzy) for g in groups))


def _parse_date(text: str, key: int) -> datetime.date:
    digits = text.strip()
    if len(digits) == 10 and digits[4] == digits[7] and digits[4] in ".-":
        digits = digits[:4] + digits[5:7] + digits[8:]  # ACR-NEMA / ISO style, leniently
    if len(digits) != 8 or not digits.isdigit():
        raise InvalidQuery(
            f"{key:08X}: {text!r} is not a date; write YYYYMMDD, or a range "
            "YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-"
        )
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise InvalidQuery(f"{key:08X}: {text!r} is not a valid calendar date") from None


def _range(value: str) -> tuple[str, str] | None:
    if "-" not in value:
        return None
    low, _, high = value.partition("-")
    return low.strip(), high.strip()


def _date(column: Any, value: str, key: int) -> ColumnElement[bool]:
    bounds = _range(value) if not (len(value) == 10 and value.count("-") == 2) else None
    if bounds is None:
        condition: ColumnElement[bool] = column == _parse_date(value, key)
        return condition
    low, high = bounds
    if not low and not high:
        raise InvalidQuery(f"{key:08X}: '-' is not a date range; give at least one end")
    parts = []
    if low:
        parts.append(column >= _parse_date(low, key))
    if high:
        parts.append(column <= _parse_date(high, key))
    return and_(*parts)


def _time_text(text: str, key: int) -> str:
    digits = text.replace(":", "").strip()
    head = digits.split(".")[0]
    if not head.isdigit() or len(head) not in (2, 4, 6):
        raise InvalidQuery(f"{key:08X}: {text!r} is not a time; write HHMMSS or a range A-B")
    return digits


def _time(column: Any, value: str, key: int) -> ColumnElement[bool]:
    bounds = _range(value)
    if bounds is None:
        return _like(column, _time_text(value, key) + "*")
    low, high = bounds
    parts = []
    if low:
        parts.append(column >= _time_text(low, key))
    if high:
        parts.append(column <= _time_text(high, key) + "\uffff")  # 1200 takes 120059.99
    return and_(*parts) if parts else column.is_not(None)


def _values(value: str) -> list[str]:
    separator = "\\" if "\\" in value else ","
    return [v.strip() for v in value.split(separator) if v.strip()]


def _int(column: Any, value: str, key: int) -> ColumnElement[bool]:
    try:
        numbers = [int(v) for v in _values(value)]
    except ValueError:
        raise InvalidQuery(f"{key:08X}: {value!r} is not an integer") from None
    return column.in_(numbers)  # type: ignore[no-any-return]


def _condition(key: int, spec: _Key, value: str, fuzzy: bool) -> ColumnElement[bool] | None:
    value = value.strip()
    if set(value) <= {"*"}:
        return None  # universal matching
    column = spec.column
    kind = spec.kind
    if kind is _Kind.UID:
        uids = _values(value)
        return column.in_(uids) if len(uids) > 1 else column == uids[0]  # type: ignore[no-any-return]
    if kind is _Kind.DATE:
        return _date(column, value, key)
    if kind is _Kind.TIME:
        return _time(column, value, key)
    if kind is _Kind.INT:
        return _int(column, value, key)
    if kind is _Kind.PN:
        return _person_name(column, value, fuzzy)
    if kind is _Kind.CS:
        values = _values(value) if key == 0x00080061 else [value]
        return or_(*(_text(column, v) for v in values))
    return _text(column, value)


# --- compiling ----------------------------------------------------------------------------


def _check(query: DicomQuery) -> None:
    if not 0 <= query.limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit={query.limit}: give a limit between 0 and {MAX_LIMIT}")
    if query.offset < 0:
        raise InvalidQuery(f"offset={query.offset}: give an offset >= 0")


def _conditions(query: DicomQuery) -> tuple[dict[QueryLevel, list[Any]], list[int]]:
    """Conditions per level of the table they apply to; keys that cannot be matched."""
    found: dict[QueryLevel, list[Any]] = {level: [] for level in _ORDER}
    unsupported: list[int] = []
    top = _ORDER.index(query.level)
    for key, value in query.match.items():
        spec = _KEYS.get(key)
        if spec is None or _ORDER.index(spec.level) > top:
            if value.strip() not in ("", "*"):
                unsupported.append(key)
            continue
        condition = _condition(key, spec, value, query.fuzzy)
        if condition is None:
            continue
        if key == 0x00080061:  # ModalitiesInStudy: the study has such a series
            condition = exists(select(1).where(_SE.study_id == _ST.id, condition))
            found[QueryLevel.STUDY].append(condition)
        else:
            found[spec.level].append(condition)
    if query.study_instance_uid:
        found[QueryLevel.STUDY].append(_ST.study_instance_uid == query.study_instance_uid)
    if query.series_instance_uid:
        found[QueryLevel.SERIES].append(_SE.series_instance_uid == query.series_instance_uid)
    return found, unsupported


def owned_studies_condition(user_id: int) -> ColumnElement[bool]:
    """The condition "``study`` is one that user ``user_id`` uploaded (part of)".

    Add it to a query of ``study`` (or of a table joined to it) to keep an uploader to its
    own studies.
    """
    owned = select(STUDY_OWNER.c.study_id).where(STUDY_OWNER.c.user_id == user_id)
    condition: ColumnElement[bool] = _ST.id.in_(owned)
    return condition


def _owned(query: DicomQuery) -> ColumnElement[bool] | None:
    if query.owner_user_id is None:
        return None
    return owned_studies_condition(query.owner_user_id)


def _select(query: DicomQuery) -> tuple[AnySelect, list[int]]:
    found, unsupported = _conditions(query)
    level = query.level
    owned = _owned(query)
    stmt: AnySelect
    order: tuple[Any, ...]
    if level is QueryLevel.PATIENT:
        stmt = select(_P.id, _P.patient_name, _P.patient_pseudonym, _P.patient_birth_date,
                      _P.patient_sex, _P.number_of_studies)  # fmt: skip
        studies = found[QueryLevel.STUDY] + ([owned] if owned is not None else [])
        if studies:
            stmt = stmt.where(exists(select(1).where(_ST.patient_id == _P.id, *studies)))
        return stmt.where(*found[QueryLevel.PATIENT]).order_by(_P.id), unsupported
    patient_conditions = found[QueryLevel.PATIENT]
    study_conditions = found[QueryLevel.STUDY] + ([owned] if owned is not None else [])
    if level is QueryLevel.STUDY:
        stmt = select(
            _ST.id, _ST.study_instance_uid, _ST.study_date, _ST.study_time,
            _ST.accession_number, _ST.study_id, _ST.study_description,
            _ST.referring_physician_name, _ST.modalities_in_study, _ST.number_of_series,
            _ST.number_of_instances, _P.patient_pseudonym, _P.patient_name,
            _P.patient_birth_date, _P.patient_sex,
        ).join_from(STUDY, PATIENT, _ST.patient_id == _P.id)  # fmt: skip
        stmt = stmt.where(*patient_conditions, *study_conditions).order_by(_ST.id)
        return stmt, unsupported
    series_conditions = found[QueryLevel.SERIES]
    if level is QueryLevel.SERIES:
        stmt = select(
            _SE.id, _SE.series_instance_uid, _SE.modality, _SE.series_number,
            _SE.series_description, _SE.series_date, _SE.series_time, _SE.body_part_examined,
            _SE.number_of_instances, _SE.extra_attributes, _ST.study_instance_uid,
        ).join_from(SERIES, STUDY, _SE.study_id == _ST.id)  # fmt: skip
        if patient_conditions:
            stmt = stmt.join_from(STUDY, PATIENT, _ST.patient_id == _P.id)
        stmt = stmt.where(*patient_conditions, *study_conditions, *series_conditions)
        # Across studies, the primary key keeps paging cheap and stable.
        order = (
            (_SE.study_id, _SE.series_number.is_(None), _SE.series_number, _SE.id)
            if query.study_instance_uid
            else (_SE.id,)
        )
        return stmt.order_by(*order), unsupported
    stmt = select(
        _I.id, _I.sop_instance_uid, _I.sop_class_uid, _I.instance_number, _I.rows,
        _I.columns, _I.number_of_frames, _I.bits_allocated, _SE.series_instance_uid,
        _ST.study_instance_uid,
    ).join_from(INSTANCE, SERIES, _I.series_id == _SE.id).join_from(
        SERIES, STUDY, _SE.study_id == _ST.id
    )  # fmt: skip
    if patient_conditions:
        stmt = stmt.join_from(STUDY, PATIENT, _ST.patient_id == _P.id)
    stmt = stmt.where(
        *patient_conditions, *study_conditions, *series_conditions,
        *found[QueryLevel.INSTANCE],
    )  # fmt: skip
    if query.series_instance_uid:
        order = (_I.instance_number.is_(None), _I.instance_number, _I.id)
    else:
        order = (_I.id,)
    return stmt.order_by(*order), unsupported


# --- results ------------------------------------------------------------------------------


def _element(tag: int, value: Any) -> dict[str, Any]:
    vr = tag_vr(tag)
    if value is None or value == "" or value == ():
        return {"vr": vr}
    if vr == "PN":
        groups = str(value).split("=")
        names = ("Alphabetic", "Ideographic", "Phonetic")
        return {"vr": vr, "Value": [{n: g for n, g in zip(names, groups, strict=False) if g}]}
    if isinstance(value, datetime.date):
        return {"vr": vr, "Value": [value.strftime("%Y%m%d")]}
    if isinstance(value, list | tuple):
        return {"vr": vr, "Value": list(value)}
    if vr in ("IS", "US", "UL", "SL", "SS"):
        return {"vr": vr, "Value": [int(value)]}
    if isinstance(value, str) and "\\" in value and vr in ("CS", "LO", "SH"):
        return {"vr": vr, "Value": value.split("\\")}
    return {"vr": vr, "Value": [value]}


def _finish(
    query: DicomQuery,
    base: dict[int, Any],
    header: Mapping[str, Any] | None,
    level_tags: frozenset[int] | None,
) -> dict[str, Any]:
    """Columns, then (from the header) what was asked for and has no column."""
    out = {f"{tag:08X}": _element(tag, value) for tag, value in base.items()}
    if header is not None:
        wanted: Iterable[str]
        if query.include_all:
            wanted = (
                header if level_tags is None else (k for k in header if int(k, 16) in level_tags)
            )
        else:
            wanted = (f"{tag:08X}" for tag in query.include)
        for key in wanted:
            element = header.get(key)
            if key in out or element is None:
                continue
            if level_tags is None and "BulkDataURI" in element:
                continue  # QIDO returns attributes, not bulk data
            out[key] = element
    if not query.include_all:
        for tag in query.include:  # asked for, known to be absent: returned empty
            out.setdefault(f"{tag:08X}", {"vr": tag_vr(tag)})
    return dict(sorted(out.items()))


def _needs_header(query: DicomQuery, columns: Iterable[int]) -> bool:
    return query.include_all or bool(query.include - set(columns))


def _headers(conn: Connection, instance_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not instance_ids:
        return {}
    rows = conn.execute(select(_I.id, _I.header).where(_I.id.in_(instance_ids)))
    return {row.id: json.loads(row.header) for row in rows}


def _first_instances(conn: Connection, where: Any, group: Any) -> dict[int, int]:
    """The first instance (lowest id) per group (series or study id)."""
    stmt = select(group, func.min(_I.id)).join_from(INSTANCE, SERIES, _I.series_id == _SE.id)
    return {row[0]: row[1] for row in conn.execute(stmt.where(where).group_by(group))}


def run_search(conn: Connection, query: DicomQuery) -> SearchResult:
    """Run ``query`` on an open connection; see the module docstring."""
    _check(query)
    stmt, unsupported = _select(query)
    rows = list(conn.execute(stmt.limit(query.limit).offset(query.offset)).mappings())
    build: Callable[[Connection, DicomQuery, list[Any]], list[dict[str, Any]]]
    build = {
        QueryLevel.PATIENT: _patients,
        QueryLevel.STUDY: _studies,
        QueryLevel.SERIES: _series,
        QueryLevel.INSTANCE: _instances,
    }[query.level]
    return SearchResult(build(conn, query, rows), sorted(unsupported))


def _patients(conn: Connection, query: DicomQuery, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [row["id"] for row in rows]
    headers: dict[int, dict[str, Any]] = {}
    if ids and _needs_header(query, PATIENT_RETURN):
        firsts = _join_study(conn, ids)
        loaded = _headers(conn, list(firsts.values()))
        headers = {pid: loaded[iid] for pid, iid in firsts.items() if iid in loaded}
    out = []
    for row in rows:
        base = {
            0x00100010: row["patient_name"],
            0x00100020: row["patient_pseudonym"],
            0x00100030: row["patient_birth_date"],
            0x00100040: row["patient_sex"],
            0x00201200: row["number_of_studies"],
        }
        out.append(_finish(query, base, headers.get(row["id"]), PATIENT_LEVEL))
    return out


def _join_study(conn: Connection, patient_ids: list[int]) -> dict[int, int]:
    stmt = (
        select(_ST.patient_id, func.min(_I.id))
        .join_from(INSTANCE, SERIES, _I.series_id == _SE.id)
        .join_from(SERIES, STUDY, _SE.study_id == _ST.id)
        .where(_ST.patient_id.in_(patient_ids))
        .group_by(_ST.patient_id)
    )
    return {row[0]: row[1] for row in conn.execute(stmt)}


def _studies(conn: Connection, query: DicomQuery, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [row["id"] for row in rows]
    headers: dict[int, dict[str, Any]] = {}
    if ids and _needs_header(query, STUDY_RETURN):
        firsts = _first_instances(conn, _SE.study_id.in_(ids), _SE.study_id)
        loaded = _headers(conn, list(firsts.values()))
        headers = {sid: loaded[iid] for sid, iid in firsts.items() if iid in loaded}
    out = []
    for row in rows:
        modalities = row["modalities_in_study"]
        base = {
            0x00080020: row["study_date"],
            0x00080030: row["study_time"],
            0x00080050: row["accession_number"],
            _AVAILABILITY: "ONLINE",
            0x00080061: tuple(modalities.split("\\")) if modalities else None,
            0x00080090: row["referring_physician_name"],
            0x00081030: row["study_description"],
            0x00100010: row["patient_name"],
            0x00100020: row["patient_pseudonym"],
            0x00100030: row["patient_birth_date"],
            0x00100040: row["patient_sex"],
            0x0020000D: row["study_instance_uid"],
            0x00200010: row["study_id"],
            0x00201206: row["number_of_series"],
            0x00201208: row["number_of_instances"],
        }
        out.append(_finish(query, base, headers.get(row["id"]), STUDY_LEVEL))
    return out


def _series(conn: Connection, query: DicomQuery, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [row["id"] for row in rows]
    headers: dict[int, dict[str, Any]] = {}
    if ids and _needs_header(query, SERIES_RETURN):
        firsts = _first_instances(conn, _SE.id.in_(ids), _SE.id)
        loaded = _headers(conn, list(firsts.values()))
        headers = {sid: loaded[iid] for sid, iid in firsts.items() if iid in loaded}
    out = []
    for row in rows:
        base: dict[int, Any] = {
            0x00080060: row["modality"],
            0x0008103E: row["series_description"],
            0x0020000E: row["series_instance_uid"],
            0x00200011: row["series_number"],
            0x00201209: row["number_of_instances"],
            0x00080021: row["series_date"],
            0x00080031: row["series_time"],
            0x00180015: row["body_part_examined"],
            0x0020000D: row["study_instance_uid"],
        }
        element = _finish(query, base, headers.get(row["id"]), SERIES_LEVEL)
        extra = row["extra_attributes"]  # the Performed Procedure Step attributes, if any
        if extra:
            for key, value in json.loads(extra).items():
                element.setdefault(key, value)
        out.append(dict(sorted(element.items())))
    return out


def _instances(conn: Connection, query: DicomQuery, rows: list[Any]) -> list[dict[str, Any]]:
    headers: dict[int, dict[str, Any]] = {}
    if rows and _needs_header(query, INSTANCE_RETURN):
        headers = _headers(conn, [row["id"] for row in rows])
    out = []
    for row in rows:
        base = {
            0x00080016: row["sop_class_uid"],
            0x00080018: row["sop_instance_uid"],
            _AVAILABILITY: "ONLINE",
            0x00200013: row["instance_number"],
            0x00280010: row["rows"],
            0x00280011: row["columns"],
            0x00280100: row["bits_allocated"],
            0x00280008: row["number_of_frames"],
            0x0020000D: row["study_instance_uid"],
            0x0020000E: row["series_instance_uid"],
        }
        out.append(_finish(query, base, headers.get(row["id"]), None))
    return out


__all__ = [
    "INSTANCE_RETURN",
    "MAX_LIMIT",
    "PATIENT_LEVEL",
    "SERIES_LEVEL",
    "SERIES_RETURN",
    "STUDY_LEVEL",
    "STUDY_RETURN",
    "DicomQuery",
    "QueryLevel",
    "SearchResult",
    "owned_studies_condition",
    "run_search",
    "tag_vr",
]

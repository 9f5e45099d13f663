r"""C-FIND, C-MOVE and C-GET identifiers (PS3.4 C.4) turned into catalogue queries.

A C-FIND identifier holds the keys to match (elements with a value) and the keys to return
(every element). :func:`parse_find` reads the identifier's values *as DICOM writes them*,
straight from the encoded bytes (``Doe^J*``, ``20240101-20240131``, ``1.2.3\1.2.4``), so
that wildcards in numeric or date elements never go through pydicom's value conversion;
:meth:`FindRequest.query` makes the :class:`~biobank.catalog.search.DicomQuery` and
:meth:`FindRequest.response` the response identifier: the requested keys only (PS3.4
C.4.1.1.3.2), plus Specific Character Set ``ISO_IR 192`` (the catalogue holds Unicode) and the
Query/Retrieve Level.

A C-MOVE or C-GET identifier names what to send by its unique keys (Patient ID, Study,
Series or SOP Instance UIDs, one or a list; PS3.4 C.4.2.2.1); :func:`parse_retrieve` checks
them and :func:`retrieve_instances` lists the catalogued instances they name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue

from biobank.catalog import Catalog, InstanceSummary
from biobank.catalog.search import (
    MAX_LIMIT,
    PATIENT_LEVEL,
    PATIENT_RETURN,
    SERIES_LEVEL,
    SERIES_RETURN,
    STUDY_LEVEL,
    STUDY_RETURN,
    DicomQuery,
    QueryLevel,
    tag_vr,
)
from biobank.errors import InvalidQuery

QUERY_RETRIEVE_LEVEL = 0x00080052
SPECIFIC_CHARACTER_SET = 0x00080005
RETRIEVE_AE_TITLE = 0x00080054
PATIENT_ID = 0x00100020
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
SOP_INSTANCE_UID = 0x00080018

MAX_SUBOPERATIONS = 65535
"""The most instances one C-MOVE or C-GET sends (its counters are US)."""

PATIENT_ROOT = "PATIENT"
STUDY_ROOT = "STUDY"

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
VERIFICATION = "1.2.840.10008.1.1"

#: The Q/R information model (its root) of each SOP class served (PS3.4 C.6).
MODELS: dict[str, str] = {
    PATIENT_ROOT_FIND: PATIENT_ROOT,
    PATIENT_ROOT_MOVE: PATIENT_ROOT,
    PATIENT_ROOT_GET: PATIENT_ROOT,
    STUDY_ROOT_FIND: STUDY_ROOT,
    STUDY_ROOT_MOVE: STUDY_ROOT,
    STUDY_ROOT_GET: STUDY_ROOT,
}

_LEVELS = {level.value: level for level in QueryLevel}
_ORDER = [QueryLevel.PATIENT, QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.INSTANCE]
#: The unique key of each level (PS3.4 C.4.1.2.2).
_UNIQUE = {
    QueryLevel.PATIENT: PATIENT_ID,
    QueryLevel.STUDY: STUDY_INSTANCE_UID,
    QueryLevel.SERIES: SERIES_INSTANCE_UID,
    QueryLevel.INSTANCE: SOP_INSTANCE_UID,
}
#: VRs whose values are text in the Specific Character Set (the others are ASCII).
_ANY_LEVEL = frozenset({RETRIEVE_AE_TITLE, 0x00080056})  # Retrieve AE Title, Availability
#: The attributes a response of each level may carry a value for: those of the level and the
#: levels above. A key of a level below is returned empty — a study has no one Series Number
#: (the IMAGE level returns whatever the instance's header holds).
_LEVEL_TAGS: dict[QueryLevel, frozenset[int]] = {
    QueryLevel.PATIENT: PATIENT_LEVEL | frozenset(PATIENT_RETURN) | _ANY_LEVEL,
    QueryLevel.STUDY: STUDY_LEVEL | frozenset(STUDY_RETURN) | _ANY_LEVEL,
    QueryLevel.SERIES: SERIES_LEVEL
    | STUDY_LEVEL
    | frozenset(SERIES_RETURN)
    | frozenset(STUDY_RETURN)
    | _ANY_LEVEL,
}
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_TEXT_VRS = _CHARSET_VRS | frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
_SKIPPED_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


# --- reading identifiers ------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    """One element of an identifier: its tag, VR, and value as DICOM writes it."""

    tag: int
    vr: str
    value: str | None  # None: a sequence or binary value (universal for matching)


def _encodings(identifier: Dataset) -> list[str]:
    element = identifier.get_item(SPECIFIC_CHARACTER_SET)
    if element is None or not element.value:
        return ["iso8859"]
    raw = element.value
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    terms = text.split("\\") if isinstance(text, str) else list(text)
    try:
        return convert_encodings([t.strip() for t in terms])
    except (LookupError, ValueError):
        raise InvalidQuery(
            "(0008,0005) Specific Character Set names an unknown character set; "
            "use ISO_IR 192 (UTF-8) or ISO_IR 100"
        ) from None


def _text(raw: bytes, vr: str, encodings: list[str]) -> str:
    if vr in _CHARSET_VRS:
        text = decode_bytes(raw, encodings, {0x5C, 0x3D, 0x5E} if vr == "PN" else {0x5C})
    else:
        text = raw.decode("ascii", "replace")
    return text.rstrip(" \x00")


def _converted(element: DataElement) -> str | None:
    value = element.value
    if value is None or value == "" or value == b"":
        return ""
    if isinstance(value, bytes):
        return None
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _keys(identifier: Dataset) -> Iterator[_Key]:
    """Every top-level element but Query/Retrieve Level and Specific Character Set."""
    encodings = _encodings(identifier)
    for tag in identifier.keys():  # noqa: SIM118 - iterating the dataset converts values
        number = int(tag)
        if number in (QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET) or tag.group in (0, 2):
            continue
        element = identifier.get_item(tag)
        if element is None:  # pragma: no cover - keys() lists what get_item finds
            continue
        if not isinstance(element, RawDataElement):  # already converted
            yield _Key(number, element.VR, None if element.VR == "SQ" else _converted(element))
            continue
        vr = element.VR or tag_vr(number)
        value: str | None
        if vr in _TEXT_VRS:
            value = _text(element.value or b"", vr, encodings)
        elif vr == "SQ" or vr in _SKIPPED_VRS:
            value = None  # sequences and bulk data: universal for matching
        else:  # binary numbers (US, UL, FL, ...): no wildcards to lose in conversion
            value = _converted(identifier[tag])
        yield _Key(number, vr, value)


def _level(identifier: Dataset, model: str, operation: str) -> QueryLevel:
    element = identifier.get_item(QUERY_RETRIEVE_LEVEL)
    raw = element.value if element is not None else None
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw or "")
    level = _LEVELS.get(text.strip(" \x00").upper())
    allowed = [lv for lv in _ORDER if model == PATIENT_ROOT or lv is not QueryLevel.PATIENT]
    if level is None or level not in allowed:
        names = ", ".join(lv.value for lv in allowed)
        root = "Patient Root" if model == PATIENT_ROOT else "Study Root"
        raise InvalidQuery(
            f"{operation}: (0008,0052) QueryRetrieveLevel must be one of {names} for the "
            f"{root} information model"
        )
    return level


def _single_uid(value: str | None) -> str | None:
    """A UID that names one entity (no list, no wildcard), else None."""
    if not value or any(c in value for c in "\\,*?"):
        return None
    return value.strip()


# --- C-FIND -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FindRequest:
    r"""A checked C-FIND identifier.

    Attributes
    ----------
    level : QueryLevel
        The Query/Retrieve Level.
    match : Mapping of int to str
        The matching keys: tag → value as DICOM writes it (multiple values joined by ``\\``).
    return_keys : tuple of (int, str)
        Every key of the identifier (tag, VR), in order: what a response carries.
    study_instance_uid, series_instance_uid : str or None
        The hierarchical restriction (the study of a SERIES or IMAGE query, the series of an
        IMAGE query) when the identifier names one.
    """

    level: QueryLevel
    match: Mapping[int, str]
    return_keys: tuple[tuple[int, str], ...]
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None

    @property
    def matching_tags(self) -> str:
        """The matching keys' tags (never their values), e.g. ``00100010,00080020``."""
        return ",".join(f"{tag:08X}" for tag in self.match) or "-"

    def query(self, limit: int, offset: int = 0) -> DicomQuery:
        """The catalogue query for ``limit`` matches from ``offset``."""
        return DicomQuery(
            level=self.level,
            match=dict(self.match),
            include=frozenset(tag for tag, _ in self.return_keys),
            limit=limit,
            offset=offset,
            study_instance_uid=self.study_instance_uid,
            series_instance_uid=self.series_instance_uid,
        )

    def response(self, match: Mapping[str, Any], retrieve_ae_title: str) -> Dataset:
        """The response identifier for one match (DICOM JSON): the requested keys only.

        Keys of the levels below the query's come back empty; bulk data are never returned.
        """
        wanted = dict(self.return_keys)
        allowed = _LEVEL_TAGS.get(self.level)
        kept = {
            key: element
            for key, element in match.items()
            if int(key, 16) in wanted
            and (allowed is None or int(key, 16) in allowed)
            and "BulkDataURI" not in element
        }
        ds = Dataset.from_json(kept)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = self.level.value
        for tag, vr in self.return_keys:
            if tag == RETRIEVE_AE_TITLE:
                ds.RetrieveAETitle = retrieve_ae_title
            elif tag not in ds:
                ds.add_new(tag, vr if vr else tag_vr(tag), None)
        return ds


def parse_find(identifier: Dataset, model: str) -> FindRequest:
    """Check a C-FIND identifier of the ``model`` root (:data:`PATIENT_ROOT`, ...).

    Raises
    ------
    InvalidQuery
        If the level is missing or not of the model, or the character set is unknown.
    """
    level = _level(identifier, model, "C-FIND")
    match: dict[int, str] = {}
    return_keys: list[tuple[int, str]] = []
    for key in _keys(identifier):
        return_keys.append((key.tag, key.vr))
        if key.value and key.value.strip():
            match[key.tag] = key.value
    top = _ORDER.index(level)
    study = series = None
    if top >= _ORDER.index(QueryLevel.SERIES):
        study = _single_uid(match.get(STUDY_INSTANCE_UID))
        if study is not None:
            del match[STUDY_INSTANCE_UID]
    if top >= _ORDER.index(QueryLevel.INSTANCE):
        series = _single_uid(match.get(SERIES_INSTANCE_UID))
        if series is not None:
            del match[SERIES_INSTANCE_UID]
    return FindRequest(level, match, tuple(return_keys), study, series)


# --- C-MOVE and C-GET ---------------------------------------------------------------------


_NAMES = {
    PATIENT_ID: "PatientID",
    STUDY_INSTANCE_UID: "StudyInstanceUID",
    SERIES_INSTANCE_UID: "SeriesInstanceUID",
    SOP_INSTANCE_UID: "SOPInstanceUID",
}


@dataclass(frozen=True)
class RetrieveRequest:
    """A checked C-MOVE or C-GET identifier: the level and the unique keys given."""

    level: QueryLevel
    match: Mapping[int, str]


def parse_retrieve(identifier: Dataset, model: str, operation: str) -> RetrieveRequest:
    """Check a C-MOVE or C-GET identifier: the level's unique key names what to send.

    Raises
    ------
    InvalidQuery
        If the level is wrong, or its unique key is missing, empty or a wildcard.
    """
    level = _level(identifier, model, operation)
    keys = {key.tag: key.value for key in _keys(identifier)}
    unique = _UNIQUE[level]
    value = (keys.get(unique) or "").strip()
    if not value or any(c in value for c in "*?"):
        raise InvalidQuery(
            f"{operation} at {level.value} level: give ({unique >> 16:04X},{unique & 0xFFFF:04X}) "
            f"{_NAMES[unique]}, one value or a list, without wildcards"
        )
    top = _ORDER.index(level)
    match: dict[int, str] = {}
    for lv in _ORDER[: top + 1]:
        given = (keys.get(_UNIQUE[lv]) or "").strip()
        if given and (lv is not QueryLevel.PATIENT or model == PATIENT_ROOT):
            if any(c in given for c in "*?"):
                continue  # a wildcard in a key above the level: as universal
            match[_UNIQUE[lv]] = given
    return RetrieveRequest(level, match)


def retrieve_instances(
    catalog: Catalog, request: RetrieveRequest, *, limit: int = MAX_SUBOPERATIONS
) -> list[InstanceSummary]:
    """The catalogued instances ``request`` names, study by study, series by series.

    Raises
    ------
    InvalidQuery
        If more than ``limit`` instances match (retrieve fewer at a time).
    StorageError
        If the catalogue cannot be read.
    """
    found: list[str] = []
    series_order: dict[str, None] = {}
    offset = 0
    while True:
        page = catalog.search(
            DicomQuery(
                level=QueryLevel.INSTANCE,
                match=dict(request.match),
                limit=MAX_LIMIT,
                offset=offset,
            )
        )
        for match in page.matches:
            found.append(match[f"{SOP_INSTANCE_UID:08X}"]["Value"][0])
            series_order.setdefault(match[f"{SERIES_INSTANCE_UID:08X}"]["Value"][0], None)
        if len(found) > limit:
            raise InvalidQuery(
                f"more than {limit} instances match at {request.level.value} level; "
                "retrieve fewer at a time (series by series)"
            )
        if len(page.matches) < MAX_LIMIT:
            break
        offset += MAX_LIMIT
    wanted = set(found)
    instances: list[InstanceSummary] = []
    for series_uid in series_order:
        instances.extend(
            instance
            for instance in catalog.find_instances(
                series_instance_uid=series_uid, limit=MAX_SUBOPERATIONS + 1
            )
            if instance.sop_instance_uid in wanted
        )
    return instances


__all__ = [
    "MAX_SUBOPERATIONS",
    "PATIENT_ROOT_FIND",
    "PATIENT_ROOT_GET",
    "PATIENT_ROOT_MOVE",
    "STUDY_ROOT_FIND",
    "STUDY_ROOT_GET",
    "STUDY_ROOT_MOVE",
    "VERIFICATION",
    "MODELS",
    "PATIENT_ROOT",
    "STUDY_ROOT",
    "FindRequest",
    "RetrieveRequest",
    "parse_find",
    "parse_retrieve",
    "retrieve_instances",
]

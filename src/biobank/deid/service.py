"""The de-identification engine: a Dataset in, a de-identified Dataset and its record out.

:func:`apply_profile` walks every element at every depth (sequences public and private,
per-frame functional groups, SR content trees) and applies the action Table E.1-1 gives it
under the profile's options; what the table does not list is kept only when our dictionary
knows it, it is not retired and it cannot carry identity (allow-list, ``research/deid.md``
§0.3). Private attributes go unless the creator-resolved safe list keeps them. Identifiers go
through keyed transforms (:mod:`biobank.deid.keys`). Pixel PHI follows the policy of
:mod:`biobank.deid.pixels`.

:func:`deidentify_bytes` wraps the engine for pipelines: bytes of a DICOM file in, bytes of
the de-identified file out, after the engine has checked its own work — no identifying value
it read from the input may occur anywhere in the output header; a hit raises
:class:`~biobank.errors.QuarantineRequired` saying which attribute it came from and where it
was found.

Nothing here does I/O, logs a value from the input, or puts one in an exception message.
"""

from __future__ import annotations

import io
import logging
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydicom import Dataset, Sequence, dcmread, dcmwrite
from pydicom.datadict import dictionary_is_retired, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag

import biobank
from biobank.deid import pixels
from biobank.deid.dates import UnparseableDate, check_tm, shift_value
from biobank.deid.iod import resolve_composite
from biobank.deid.keys import Pseudonymizer
from biobank.deid.models import (
    BASIC_PROFILE_CODE,
    BASIC_PROFILE_MEANING,
    DeidRecord,
    Option,
    PatientIdentity,
    PixelAction,
    PixelRecord,
    Profile,
)
from biobank.deid.private import (
    Disposition,
    SafePrivateEntry,
    SafePrivateList,
    load_safe_private,
)
from biobank.deid.table import COMPOSITE_CODES, CompiledRules, compile_rules, load_table
from biobank.deid.text import TextCleaner, identifying_words
from biobank.dicom.parse import parse_file
from biobank.dicom.values import (
    elements,
    encodings_of,
    read_strings,
    store_raw,
    store_strings,
    vr_of,
)
from biobank.errors import DeidentificationError, InvalidDicom, QuarantineRequired

logger = logging.getLogger(__name__)

#: Our implementation class UID: 2.25 + a fixed 128-bit number chosen for Imaging Biobank.
IMPLEMENTATION_CLASS_UID = "2.25.176813417604183957414113384931283416117"
IMPLEMENTATION_VERSION_NAME = f"BIOBANK_{biobank.__version__}"[:16]

DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, Any] = {
    "AE": DUMMY_TEXT,
    "AS": "000Y",
    "CS": DUMMY_TEXT,
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": DUMMY_TEXT,
    "LT": DUMMY_TEXT,
    "PN": DUMMY_TEXT,
    "SH": DUMMY_TEXT,
    "ST": DUMMY_TEXT,
    "UC": DUMMY_TEXT,
    "UT": DUMMY_TEXT,
    "UR": "urn:anonymized",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
    "OB": b"\x00\x00",
    "OW": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "UN": b"\x00\x00",
}

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_FREE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UC"})
_DUMMY_TEXT_VRS = frozenset({"AE", "LO", "SH", "ST", "LT", "UT", "UC", "UR"})
_DATE_VRS = frozenset({"DA", "DT"})
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST"})
_STRING_VRS = _STRING_VRS | frozenset({"TM", "UC", "UI", "UR", "UT"})

#: Unlisted UI attributes that name a class, a syntax or a coding scheme, never an instance.
_CLASS_UID_KEYWORDS = frozenset(
    {
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "CodingSchemeUID",
        "MappingResourceUID",
        "ContextUID",
        "ImplementationClassUID",
        "PrivateInformationCreatorUID",
        "ContextGroupExtensionCreatorUID",
        "TemplateExtensionCreatorUID",
        "TemplateExtensionOrganizationUID",
    }
)

# Tags the engine itself writes or handles specially.
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_ISSUER_OF_PATIENT_ID = 0x00100021
_SOP_CLASS_UID = 0x00080016
_SOP_INSTANCE_UID = 0x00080018
_STUDY_UID = 0x0020000D
_SERIES_UID = 0x0020000E
_PIXEL_DATA = 0x7FE00010

#: Top-level attributes whose values are identifying: they seed the text cleaner and the
#: residual-PHI check. (Others are found during the walk: every PN value, for instance.)
_IDENTIFYING_TAGS = (
    0x00100010,  # PatientName
    0x00100020,  # PatientID
    0x00101000,  # OtherPatientIDs
    0x00101001,  # OtherPatientNames
    0x00101005,  # PatientBirthName
    0x00101060,  # PatientMotherBirthName
    0x00101040,  # PatientAddress
    0x00102154,  # PatientTelephoneNumbers
    0x00101090,  # MedicalRecordLocator
    0x00080050,  # AccessionNumber
    0x00200010,  # StudyID
    0x00080090,  # ReferringPhysicianName
    0x00081050,  # PerformingPhysicianName
    0x00081060,  # NameOfPhysiciansReadingStudy
    0x00081048,  # PhysiciansOfRecord
    0x00321032,  # RequestingPhysician
    0x00081070,  # OperatorsName
    0x00080080,  # InstitutionName
    0x00080081,  # InstitutionAddress
    0x00081040,  # InstitutionalDepartmentName
    0x00380010,  # AdmissionID
    0x00401001,  # RequestedProcedureID
    0x00400009,  # ScheduledProcedureStepID
    0x00400253,  # PerformedProcedureStepID
)
_DATE_TAGS_FOR_CHECK = (0x00100030, 0x00080020, 0x00080021, 0x00080022, 0x00080023)
_DEVICE_TAGS = (0x00081010, 0x00181000)  # StationName, DeviceSerialNumber
_INSTITUTION_TAGS = (0x00080080, 0x00080081, 0x00081040)

_MIN_CHECK_LENGTH = 4  # shorter values are too common to prove a leak (e.g. "CT", "M")


@dataclass
class DeidResult:
    """The de-identified dataset, its record, and the source identity for the site map.

    ``identity`` and ``identifying_values`` are PHI: they go to the site-local pseudonym map
    and the residual-PHI check, never to a report or a log.
    """

    dataset: Dataset
    record: DeidRecord
    identity: PatientIdentity
    identifying_values: frozenset[str] = field(repr=False, default=frozenset())
    equipment_values: frozenset[str] = field(repr=False, default=frozenset())


@dataclass
class DeidOutput:
    """Bytes of the de-identified file with its record (see :func:`deidentify_bytes`)."""

    data: bytes
    record: DeidRecord
    identity: PatientIdentity


class _Mode:
    NORMAL = 0  # top level and ordinary sequences
    CLEAN = 1  # inside a sequence under action C (Clean Structured Content / Graphics)
    DUMMY = 2  # inside a sequence under action D (content replaced by dummies)


@dataclass(frozen=True)
class _MemoEntry:
    """What processing one top-level element did: its encoded result and its evidence."""

    result: RawDataElement | None  # None: removed
    events: tuple[tuple[str, int], ...]
    counters: tuple[int, int, int, int, int]
    added: tuple[str, ...]


#: Decisions worth remembering (those that do real work on the value).
_MEMO_DECISIONS = frozenset({"walk", "D", "Z", "C", "clean-text", "shift"})
_MEMO_MAX_VALUE = 1 << 16
#: Memos per context fingerprint: see :func:`_memo_for`.
_MEMOS: dict[tuple[object, ...], dict[tuple[int, str, bytes], _MemoEntry]] = {}


def _memo_for(fingerprint: tuple[object, ...]) -> dict[tuple[int, str, bytes], _MemoEntry]:
    """The memo of element results for one context.

    The images of a series repeat most of their header: the same study, request and code
    sequences, descriptions and dates in every slice. How an element is de-identified depends
    only on its tag, VR and value bytes and on the context — profile, SOP class, key, the
    patient's date offset, the identifying values read from the instance and the character
    set — so within one context the result computed for the first slice is the result for
    every other. Results are stored encoded, and used encoded on the first slice too, so the
    output bytes do not depend on which instance came first (determinism across --jobs).
    """
    memo = _MEMOS.get(fingerprint)
    if memo is None:
        if len(_MEMOS) >= 64:
            _MEMOS.clear()
        memo = _MEMOS[fingerprint] = {}
    elif len(memo) > 20_000:
        memo.clear()
    return memo


@dataclass
class _Context:
    profile: Profile
    rules: CompiledRules
    pseudo: Pseudonymizer
    safe_private: SafePrivateList
    sop_class_uid: str
    day_offset: int
    record: DeidRecord
    cleaner: TextCleaner
    identifying: set[str]
    encodings: list[str]
    top: Dataset
    decisions: dict[tuple[int, str, int], str]
    retain_safe_private: bool
    shift_dates: bool
    full_dates: bool
    clean_descriptors: bool
    memo: dict[tuple[int, str, bytes], _MemoEntry] | None = None
    events: list[tuple[str, int]] | None = None
    added: list[str] | None = None

    def count(self, action: str, tag: int) -> None:
        self.record.actions[action] = self.record.actions.get(action, 0) + 1
        self.record.tags.setdefault(action, []).append(f"{tag:08X}")
        if self.events is not None:
            self.events.append((action, tag))

    def add_identifying(self, values: Iterable[str]) -> None:
        new = [v for v in values if v]
        self.identifying.update(new)
        if self.added is not None:
            self.added.extend(new)

    def counters(self) -> tuple[int, int, int, int, int]:
        r = self.record
        return (
            r.removed_private,
            r.kept_private,
            r.dates_shifted,
            r.dates_removed_unparseable,
            r.uids_remapped,
        )

    def values(self, ds: Dataset, tag: int, vr: str) -> list[str]:
        return read_strings(ds, tag, vr, self.encodings)

    def store(self, ds: Dataset, tag: int, vr: str, values: list[str]) -> None:
        store_strings(ds, tag, vr, values, self.encodings)


def _in_dictionary(tag: int) -> tuple[bool, bool]:
    """Return (known, retired) for a public tag."""
    try:
        return True, bool(dictionary_is_retired(tag))
    except KeyError:
        return False, False


def _keyword(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"


def _is_class_uid(keyword: str) -> bool:
    return keyword.endswith("ClassUID") or keyword in _CLASS_UID_KEYWORDS


def _well_known_uid(value: str) -> bool:
    return value.startswith("1.2.840.10008.")


def _first(ds: Dataset, tag: int, vr: str, encodings: list[str]) -> str:
    values = read_strings(ds, tag, vr, encodings)
    return values[0].strip() if values else ""


def _require_uid(ds: Dataset, tag: int, name: str) -> str:
    value = _first(ds, tag, "UI", [])
    if not value:
        raise InvalidDicom(
            f"missing {name} ({tag >> 16:04X},{tag & 0xFFFF:04X}); the file cannot be "
            "de-identified consistently — re-export it from the source system"
        )
    return value


def apply_profile(
    ds: Dataset,
    profile: Profile,
    pseudonymizer: Pseudonymizer,
    *,
    safe_private: SafePrivateList | None = None,
    text_detector: pixels.TextDetector | None = None,
) -> DeidResult:
    """De-identify ``ds`` in place following ``profile`` (PS3.15 E.1-1 and options).

    Returns the result with the record of every action taken; the record is stored as
    evidence. Raises :class:`~biobank.errors.InvalidDicom` when required UIDs are missing and
    :class:`~biobank.errors.QuarantineRequired` when the pixel policy holds the item back.
    """
    sop_class_uid = _require_uid(ds, _SOP_CLASS_UID, "SOP Class UID")
    _require_uid(ds, _SOP_INSTANCE_UID, "SOP Instance UID")
    study_uid = _require_uid(ds, _STUDY_UID, "Study Instance UID")
    _require_uid(ds, _SERIES_UID, "Series Instance UID")
    if sop_class_uid in profile.quarantine_sop_classes:
        raise QuarantineRequired(
            f"SOP class {sop_class_uid} is held back by profile {profile.name}"
        )

    # Pixel policy first: a quarantined item is not worth de-identifying.
    pixel_action, pixel_reason = pixels.decide_pixel_policy(ds, profile)
    if pixel_action is PixelAction.QUARANTINE:
        raise QuarantineRequired(pixel_reason)

    encodings = encodings_of(ds)
    issuer = _first(ds, _ISSUER_OF_PATIENT_ID, "LO", encodings)
    patient_id = _first(ds, _PATIENT_ID, "LO", encodings)
    warnings: list[str] = []
    if not patient_id:
        # Without a Patient ID each study stands for its own pseudonymous patient.
        issuer, patient_id = "biobank:no-patient-id", study_uid
        warnings.append("no Patient ID: the study was given its own pseudonymous patient")
    pseudonym = pseudonymizer.patient_pseudonym(issuer, patient_id)
    day_offset = pseudonymizer.date_offset_days(issuer, patient_id, profile.date_offset_max_days)

    identifying = _collect_identifying(ds, profile, encodings)
    equipment = frozenset(
        v.strip()
        for tag in (*_INSTITUTION_TAGS, *_DEVICE_TAGS)
        for v in read_strings(ds, tag, "LO", encodings)
        if v.strip()
    )
    record = DeidRecord(
        profile=profile.name,
        options=sorted(o.value for o in profile.options),
        patient_pseudonym=pseudonym,
        study_instance_uid="",
        series_instance_uid="",
        sop_instance_uid="",
        sop_class_uid=sop_class_uid,
        modality=_first(ds, 0x00080060, "CS", encodings)[:16],
        method_codes=[],
        warnings=warnings,
    )
    ctx = _Context(
        profile=profile,
        rules=compile_rules(profile),
        pseudo=pseudonymizer,
        safe_private=safe_private if safe_private is not None else load_safe_private(),
        sop_class_uid=sop_class_uid,
        day_offset=day_offset,
        record=record,
        cleaner=TextCleaner(identifying_words(identifying)),
        identifying=identifying,
        encodings=encodings,
        top=ds,
        decisions=_decisions(profile, sop_class_uid),
        retain_safe_private=Option.RETAIN_SAFE_PRIVATE in profile.options,
        shift_dates=profile.shifts_dates,
        full_dates=profile.keeps_full_dates,
        clean_descriptors=Option.CLEAN_DESCRIPTORS in profile.options,
    )

    if _fast_path(ds):
        ctx.memo = _memo_for(
            (
                profile.options,
                profile.allow_tags,
                sop_class_uid,
                pseudonymizer.key_id,
                day_offset,
                frozenset(identifying),
                tuple(encodings),
                id(ctx.safe_private),
            )
        )
    _process_dataset(ds, ctx, _Mode.NORMAL)
    _write_patient_and_evidence(ds, ctx, pseudonym)

    # Pixels: clean (burned-in text) or pass (bits above BitsStored zeroed).
    if pixel_action is PixelAction.CLEAN:
        detector = text_detector or pixels.default_text_detector()
        pixel_record = pixels.clean_pixel_data(ds, detector)
    elif pixel_action is PixelAction.PASS:
        changed = pixels.zero_unused_high_bits(ds)
        pixel_record = PixelRecord(PixelAction.PASS, pixel_reason, high_bits_zeroed=changed)
    else:
        pixel_record = PixelRecord(pixel_action, pixel_reason)
    record.pixel = pixel_record
    _write_method(ds, ctx, pixel_cleaned=pixel_record.action is PixelAction.CLEAN)
    _rebuild_file_meta(ds, sop_class_uid)

    record.study_instance_uid = _first(ds, _STUDY_UID, "UI", encodings)
    record.series_instance_uid = _first(ds, _SERIES_UID, "UI", encodings)
    record.sop_instance_uid = _first(ds, _SOP_INSTANCE_UID, "UI", encodings)
    return DeidResult(
        dataset=ds,
        record=record,
        identity=PatientIdentity(issuer=issuer, patient_id=patient_id, pseudonym=pseudonym),
        identifying_values=frozenset(identifying),
        equipment_values=equipment,
    )


def _collect_identifying(ds: Dataset, profile: Profile, encodings: list[str]) -> set[str]:
    """Identifying values of the top level (PHI), for cleaning and for the residual check."""
    tags: list[int] = list(_IDENTIFYING_TAGS)
    if Option.RETAIN_INSTITUTION_IDENTITY in profile.options:
        tags = [t for t in tags if t not in _INSTITUTION_TAGS]
    if Option.RETAIN_DEVICE_IDENTITY not in profile.options:
        tags.extend(_DEVICE_TAGS)
    if not profile.keeps_full_dates:
        tags.extend(_DATE_TAGS_FOR_CHECK)
    elems = elements(ds)
    values: set[str] = set()
    for tag in tags:
        if tag in elems:
            values.update(v.strip() for v in read_strings(ds, tag, vr_of(ds, tag), encodings))
    other = elems.get(0x00101002)  # OtherPatientIDsSequence
    if other is not None and vr_of(ds, 0x00101002) == "SQ":
        if type(other) is RawDataElement and not other.is_implicit_VR and other.value:
            # The sequence is removed anyway: pick its Patient IDs and issuers out of the
            # encoded items instead of decoding it (an extra hit only adds a scrub word).
            values.update(_scan_lo(other.value, (b"\x10\x00\x20\x00LO", b"\x10\x00\x21\x00LO")))
        else:
            for item in ds[0x00101002].value:
                for tag in (0x00100020, 0x00100021):
                    values.update(v.strip() for v in read_strings(item, tag, "LO", encodings))
    return {v for v in values if v}


def _scan_lo(data: bytes, markers: tuple[bytes, ...]) -> set[str]:
    """Values of explicit VR little endian LO elements with the given tag+VR bytes in ``data``."""
    found: set[str] = set()
    for marker in markers:
        pos = data.find(marker)
        while pos >= 0 and pos + 8 <= len(data):
            length = int.from_bytes(data[pos + 6 : pos + 8], "little")
            text = data[pos + 8 : pos + 8 + length].decode("latin-1").strip("\x00 ")
            found.update(v.strip() for v in text.split("\\") if v.strip())
            pos = data.find(marker, pos + 8)
    return found


#: Per (options, allowances, SOP class): the decision for each (tag, VR, mode). An element's
#: treatment depends on nothing else, so it is worked out once and looked up afterwards.
_DecisionKey = tuple[frozenset[Option], frozenset[int], str]
_DECISIONS: dict[_DecisionKey, dict[tuple[int, str, int], str]] = {}


def _decisions(profile: Profile, sop_class_uid: str) -> dict[tuple[int, str, int], str]:
    key = (profile.options, profile.allow_tags, sop_class_uid)
    cache = _DECISIONS.get(key)
    if cache is None:
        if len(_DECISIONS) > 256:
            _DECISIONS.clear()
        cache = _DECISIONS[key] = {}
    return cache


def _decide(tag: int, vr: str, mode: int, ctx: _Context) -> str:
    """How one public element is treated: an action code or one of the allow-list moves.

    ``keep`` (nothing to do), ``walk`` (keep a sequence and process its items), ``drop``
    (remove silently: file meta in the body, group lengths), ``X``/``Z``/``D``/``C``/``U``
    (table actions), ``uid``, ``shift``, ``tm`` and ``clean-text`` (allow-list treatments).
    """
    group = tag >> 16
    if group == 0x0002 or tag & 0xFFFF == 0:
        return "drop"
    if 0x6000 <= group <= 0x60FF or 0x5000 <= group <= 0x50FF:
        # Overlays and curves are removed whatever the options say (Clean Graphics gives
        # Overlay Data C, but a bitmap of burned text cannot be cleaned, and keeping it
        # without its Overlay Plane attributes breaks the IOD).
        return "X"
    if tag in ctx.profile.allow_tags:
        return "walk" if vr == "SQ" else "keep"
    action = ctx.rules.action_for(tag)
    if action is not None:
        if action in COMPOSITE_CODES:
            action = resolve_composite(action, _keyword(tag), ctx.sop_class_uid)
        if action == "K":
            return "walk" if vr == "SQ" else "keep"
        return action
    # Not in the table: the allow-list.
    known, retired = _in_dictionary(tag)
    if not known or retired:
        return "X"
    if vr == "SQ":
        return "walk"
    if vr == "PN":
        return "D"
    if vr == "UI":
        return "keep" if _is_class_uid(_keyword(tag)) else "uid"
    if vr in _DATE_VRS:
        if ctx.full_dates:
            return "keep"
        return "shift" if ctx.shift_dates else "X"
    if vr == "TM":
        return "keep" if ctx.full_dates else "tm"  # validated; clock times are kept
    if mode == _Mode.DUMMY and vr in _DUMMY_TEXT_VRS:
        # Inside a sequence whose action is D every text value is replaced, codes included:
        # a Person Identification Code Sequence identifies by its code values.
        return "D"
    if vr in _FREE_TEXT_VRS:
        return "clean-text" if mode == _Mode.CLEAN or ctx.clean_descriptors else "X"
    return "keep"


def _process_dataset(ds: Dataset, ctx: _Context, mode: int) -> None:
    """Apply the profile to every element of ``ds`` (recursively)."""
    private_creators: dict[int, int] = {}  # (group << 8 | slot) -> creator tag
    creator_names: dict[int, str] = {}
    kept_blocks: set[int] = set()
    elems = elements(ds)
    decisions = ctx.decisions
    memo = ctx.memo if ds is ctx.top else None
    for key in list(elems):
        tag = int(key)  # plain int: BaseTag's Python-level __eq__ is slow in lookups
        group = tag >> 16
        if group & 1:
            if tag & 0xFFFF <= 0x00FF:
                if tag & 0xFFFF >= 0x0010:
                    private_creators[group << 8 | (tag & 0xFF)] = key
                else:
                    del elems[key]  # group length or illegal (gggg,0001-000F)
                    ctx.record.removed_private += 1
                continue
            block = group << 8 | (tag >> 8 & 0xFF)
            if _process_private(ds, key, block, creator_names, ctx, mode):
                kept_blocks.add(block)
            continue
        elem = elems[key]
        vr = _element_vr(elem, tag)
        decision = decisions.get((tag, vr, mode))
        if decision is None:
            decision = decisions[(tag, vr, mode)] = _decide(tag, vr, mode, ctx)
        if decision == "keep":
            continue
        memo_key = None
        if (
            memo is not None
            and ctx.memo is memo
            and decision in _MEMO_DECISIONS
            and type(elem) is RawDataElement
            and elem.value is not None
            and len(elem.value) <= _MEMO_MAX_VALUE
        ):
            memo_key = (tag, vr, bytes(elem.value))
            hit = memo.get(memo_key)
            if hit is not None:
                _replay(ds, key, hit, ctx)
                continue
            before = ctx.counters()
            ctx.events, ctx.added = [], []
        if decision == "walk":
            _walk_items(ds, key, ctx, mode)
        elif decision == "drop":
            del elems[key]
        elif decision == "X":
            _remove(ds, key, ctx)
        elif decision == "uid":
            _remap_uids(ds, key, ctx)
        elif decision in ("shift", "tm"):
            _shift_element(ds, key, vr, ctx)
        elif decision == "clean-text":
            _clean_text(ds, key, vr, ctx)
        else:
            _apply(ds, key, decision, ctx, mode, vr)
        if memo_key is not None:
            _remember(ds, key, memo_key, before, ctx, memo)  # type: ignore[arg-type]
    for block, creator_tag in private_creators.items():
        if block not in kept_blocks:
            del elems[creator_tag]


def _replay(ds: Dataset, key: int, entry: _MemoEntry, ctx: _Context) -> None:
    """Apply a remembered result: the encoded element and the evidence it produced."""
    if entry.result is None:
        del elements(ds)[key]
    else:
        elements(ds)[key] = entry.result
    for action, tag in entry.events:
        ctx.count(action, tag)
    record = ctx.record
    removed, kept, shifted, unparseable, remapped = entry.counters
    record.removed_private += removed
    record.kept_private += kept
    record.dates_shifted += shifted
    record.dates_removed_unparseable += unparseable
    record.uids_remapped += remapped
    if entry.added:
        ctx.identifying.update(entry.added)


def _remember(
    ds: Dataset,
    key: int,
    memo_key: tuple[int, str, bytes],
    before: tuple[int, int, int, int, int],
    ctx: _Context,
    memo: dict[tuple[int, str, bytes], _MemoEntry],
) -> None:
    """Store what processing one element did, and leave the element in its encoded form."""
    events, added = ctx.events or [], ctx.added or []
    ctx.events = ctx.added = None
    if ctx.memo is not memo:
        return  # the text cleaner changed while processing it: not reusable
    result = elements(ds).get(key)
    raw = None
    if result is not None:
        raw = _as_raw(ds, key, result, ctx.encodings)
        if raw is None:
            return
        elements(ds)[key] = raw
    after = ctx.counters()
    memo[memo_key] = _MemoEntry(
        result=raw,
        events=tuple(events),
        counters=(
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2],
            after[3] - before[3],
            after[4] - before[4],
        ),
        added=tuple(added),
    )


def _element_vr(elem: Any, tag: int) -> str:
    vr = elem.VR
    if vr is None or vr == "UN":
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    text = str(vr)
    return text.split(" or ")[0] if " or " in text else text


def _process_private(
    ds: Dataset, tag: int, block: int, creators: dict[int, str], ctx: _Context, mode: int
) -> bool:
    """Keep a private element only if the safe list names it; return True if kept."""
    elems = elements(ds)
    if ctx.retain_safe_private and len(ctx.safe_private):
        group = tag >> 16
        creator = creators.get(block)
        if creator is None:
            creator_tag = group << 16 | (tag >> 8 & 0xFF)
            creator = _first(ds, creator_tag, "LO", ctx.encodings) if creator_tag in elems else ""
            creators[block] = creator
        entry = ctx.safe_private.lookup(group, creator, tag & 0xFF) if creator else None
        if entry is not None and _keep_private(ds, tag, entry, ctx, mode):
            ctx.record.kept_private += 1
            return True
    del elems[tag]
    ctx.record.removed_private += 1
    return False


def _keep_private(ds: Dataset, tag: int, entry: SafePrivateEntry, ctx: _Context, mode: int) -> bool:
    vr = vr_of(ds, tag)
    if entry.disposition is Disposition.KEEP:
        if vr == "SQ":
            _walk_items(ds, tag, ctx, mode)
            return tag in elements(ds)
        return True
    value_vr = entry.vr if vr == "UN" else vr
    if entry.disposition is Disposition.HASH_UID and value_vr == "UI":
        _remap_uids(ds, tag, ctx, vr="UI")
        return True
    if entry.disposition is Disposition.OFFSET_DATE and value_vr in ("DA", "DT", "TM"):
        if ctx.full_dates:
            return True
        if ctx.shift_dates:
            return _shift_element(ds, tag, value_vr, ctx, remove_on_error=False)
    return False


def _walk_items(ds: Dataset, tag: int, ctx: _Context, mode: int) -> None:
    """Process every item of a sequence, then drop the items the profile emptied.

    The sequence itself goes when no item is left: an empty item, or a Type 3 sequence with
    no items, is both a conformance error and a sign that something was there (karnak #51).
    """
    sequence = ds[tag].value
    for item in sequence:
        _process_dataset(item, ctx, mode)
    kept = [item for item in sequence if len(elements(item))]
    if len(kept) != len(sequence):
        if kept:
            ds[tag].value = Sequence(kept)
        else:
            _remove(ds, tag, ctx)


def _keep(ds: Dataset, tag: int, ctx: _Context, mode: int) -> None:
    if vr_of(ds, tag) == "SQ":
        _walk_items(ds, tag, ctx, mode)


def _remove(ds: Dataset, tag: int, ctx: _Context) -> None:
    del elements(ds)[tag]
    ctx.count("X", tag)


def _apply(
    ds: Dataset, tag: int, action: str, ctx: _Context, mode: int, vr: str | None = None
) -> None:
    """Apply a simple action code to one public element."""
    if action == "X":
        _remove(ds, tag, ctx)
        return
    if vr is None:
        vr = vr_of(ds, tag)
    if action == "K":
        _keep(ds, tag, ctx, mode)
        return
    if ds is ctx.top and tag in (_PATIENT_NAME, _PATIENT_ID):
        return  # written from the pseudonym afterwards (nested copies follow the table)
    ctx.count(action, tag)
    if action == "U":
        if vr == "SQ":
            _keep(ds, tag, ctx, mode)
        else:
            _remap_uids(ds, tag, ctx)
        return
    if action == "Z":
        if vr in _STRING_VRS or vr == "SQ":
            store_raw(ds, tag, vr, b"")
        else:
            ds[tag] = DataElement(tag, vr, None)
        return
    if action == "D":
        _dummy(ds, tag, vr, ctx, mode)
        return
    if action == "C":
        _clean(ds, tag, vr, ctx, mode)
        return
    raise DeidentificationError(f"unknown action code {action!r} for tag {tag:08X}")


def _dummy(ds: Dataset, tag: int, vr: str, ctx: _Context, mode: int) -> None:
    if vr == "SQ":
        _harvest_names(ds, tag, ctx)
        _walk_items(ds, tag, ctx, _Mode.DUMMY if mode != _Mode.CLEAN else mode)
        return
    if vr == "UI":
        _remap_uids(ds, tag, ctx)
        return
    if vr in _DATE_VRS or vr == "TM":
        if ctx.shift_dates and _shift_element(ds, tag, vr, ctx, remove_on_error=False):
            return
        if ctx.full_dates:
            return
    if vr == "PN":
        _collect_pn(ds, tag, ctx)
    dummy = _DUMMY_BY_VR.get(vr, DUMMY_TEXT)
    if vr in _STRING_VRS:
        ctx.store(ds, tag, vr, [str(dummy)])
    elif isinstance(dummy, bytes):
        store_raw(ds, tag, vr, dummy)
    else:
        ds[tag] = DataElement(tag, vr, dummy)


def _harvest_names(ds: Dataset, tag: int, ctx: _Context) -> None:
    """Learn every person name in a content tree before cleaning it.

    A name given in a PNAME item is then also scrubbed from the TEXT items around it.
    """
    found: set[str] = set()

    def visit(dataset: Dataset) -> None:
        for item_tag in list(elements(dataset)):
            item_vr = vr_of(dataset, item_tag)
            if item_vr == "SQ":
                for item in dataset[item_tag].value:
                    visit(item)
            elif item_vr == "PN":
                found.update(v.strip() for v in ctx.values(dataset, item_tag, "PN"))

    for item in ds[tag].value:
        visit(item)
    new = {v for v in found if v} - ctx.identifying
    if new:
        ctx.add_identifying(new)
        ctx.cleaner = TextCleaner(identifying_words(ctx.identifying))
        ctx.memo = None  # later elements see another cleaner: nothing more to remember


def _clean(ds: Dataset, tag: int, vr: str, ctx: _Context, mode: int) -> None:
    if vr == "SQ":
        _harvest_names(ds, tag, ctx)
        _walk_items(ds, tag, ctx, _Mode.CLEAN)
    elif vr in _DATE_VRS or vr == "TM":
        if ctx.full_dates:
            return
        if ctx.shift_dates:
            _shift_element(ds, tag, vr, ctx)
        else:
            _remove(ds, tag, ctx)
    elif vr == "PN":
        _collect_pn(ds, tag, ctx)
        ctx.store(ds, tag, vr, [DUMMY_TEXT])
    elif vr in _TEXT_VRS:
        _clean_text(ds, tag, vr, ctx)
    elif vr == "UI":
        _remap_uids(ds, tag, ctx)
    # Other VRs (codes, numbers) carry no free text: kept as they are.


def _collect_pn(ds: Dataset, tag: int, ctx: _Context) -> None:
    ctx.add_identifying(v.strip() for v in ctx.values(ds, tag, "PN"))


def _clean_text(ds: Dataset, tag: int, vr: str, ctx: _Context) -> None:
    values = ctx.values(ds, tag, vr)
    cleaned = [ctx.cleaner.clean(v) for v in values]
    if cleaned != values:
        ctx.store(ds, tag, vr, cleaned)
    ctx.count("C", tag)


def _remap_uids(ds: Dataset, tag: int, ctx: _Context, vr: str = "UI") -> None:
    values = ctx.values(ds, tag, vr)
    new = [v if not v or _well_known_uid(v) else ctx.pseudo.uid(v) for v in values]
    if new != values:
        ctx.record.uids_remapped += sum(1 for a, b in zip(values, new, strict=True) if a != b)
        ctx.store(ds, tag, "UI", new)


def _shift_element(
    ds: Dataset, tag: int, vr: str, ctx: _Context, *, remove_on_error: bool = True
) -> bool:
    """Shift (DA/DT) or validate (TM) one element; unparseable values are removed."""
    values = ctx.values(ds, tag, vr)
    if not values:
        return True
    try:
        if vr == "TM":
            new = [check_tm(v) if v else v for v in values]
        else:
            new = [shift_value(vr, v, ctx.day_offset) if v else v for v in values]
    except UnparseableDate:
        ctx.record.dates_removed_unparseable += 1
        if remove_on_error:
            _remove(ds, tag, ctx)
        return False
    if vr != "TM":
        ctx.record.dates_shifted += sum(1 for v in values if v)
        ctx.add_identifying(v.strip() for v in values)
    if new != values:
        ctx.store(ds, tag, vr, new)
    return True


def _write_patient_and_evidence(ds: Dataset, ctx: _Context, pseudonym: str) -> None:
    ctx.store(ds, _PATIENT_NAME, "PN", [pseudonym])
    ctx.store(ds, _PATIENT_ID, "LO", [pseudonym])
    ctx.store(ds, 0x00120062, "CS", ["YES"])  # PatientIdentityRemoved
    if ctx.shift_dates:
        state = "MODIFIED"
    elif ctx.full_dates:
        state = "UNMODIFIED"
    else:
        state = "REMOVED"
    ctx.store(ds, 0x00280303, "CS", [state])  # LongitudinalTemporalInformationModified


def _method_codes(profile: Profile, pixel_cleaned: bool) -> list[tuple[str, str]]:
    codes: list[tuple[str, str]] = [(BASIC_PROFILE_CODE, BASIC_PROFILE_MEANING)]
    codes.extend((o.code, o.meaning) for o in profile.options if o.is_table_column)
    if pixel_cleaned:
        codes.append((Option.CLEAN_PIXEL_DATA.code, Option.CLEAN_PIXEL_DATA.meaning))
    return sorted(codes)


@cache
def _encoded_code_sequence(codes: tuple[tuple[str, str], ...]) -> bytes:
    """The De-identification Method Code Sequence value, encoded once per set of codes.

    Explicit VR little endian with defined lengths: items of Code Value (0008,0100), Coding
    Scheme Designator (0008,0102) and Code Meaning (0008,0104).
    """

    def element(tag: int, vr: str, text: str) -> bytes:
        data = text.encode("ascii")
        if len(data) % 2:
            data += b" "
        return _HEADER.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(data)) + data

    items = b""
    for value, meaning in codes:
        body = (
            element(0x00080100, "SH", value)
            + element(0x00080102, "SH", "DCM")
            + element(0x00080104, "LO", meaning)
        )
        items += struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
    return items


def _write_method(ds: Dataset, ctx: _Context, *, pixel_cleaned: bool) -> None:
    """Write De-identification Method and its code sequence with the codes applied (CID 7050)."""
    codes = _method_codes(ctx.profile, pixel_cleaned)
    if pixel_cleaned:
        ctx.store(ds, 0x00280301, "CS", ["NO"])  # BurnedInAnnotation, only after cleaning
    if _fast_path(ds):
        store_raw(ds, 0x00120064, "SQ", _encoded_code_sequence(tuple(codes)))
    else:
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
    method = [
        f"Imaging Biobank {biobank.__version__}"[:64],
        f"PS3.15 E.1-1 profile {ctx.profile.name}"[:64],
        f"key {ctx.pseudo.key_id}",
    ]
    ctx.store(ds, 0x00120063, "LO", method)  # DeidentificationMethod
    ctx.record.method_codes = [value for value, _ in codes]


def _rebuild_file_meta(ds: Dataset, sop_class_uid: str) -> None:
    """Rebuild the file meta from the new dataset (no source AE title, our implementation).

    The elements are stored raw, so the fast encoder writes them without pydicom's writer.
    """
    old = getattr(ds, "file_meta", None)
    syntax = _first(old, 0x00020010, "UI", []) if old is not None else ""
    if not syntax:
        # A raw data set without file meta: keep the encoding it was read with.
        implicit = bool(getattr(ds, "original_encoding", (False, True))[0])
        syntax = "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1"
    meta = FileMetaDataset()
    store_raw(meta, 0x00020001, "OB", b"\x00\x01")
    store_strings(meta, 0x00020002, "UI", [sop_class_uid], [])
    store_strings(meta, 0x00020003, "UI", [_first(ds, _SOP_INSTANCE_UID, "UI", [])], [])
    store_strings(meta, 0x00020010, "UI", [syntax], [])
    store_strings(meta, 0x00020012, "UI", [IMPLEMENTATION_CLASS_UID], [])
    store_strings(meta, 0x00020013, "SH", [IMPLEMENTATION_VERSION_NAME], ["iso8859"])
    ds.file_meta = meta


# --- bytes in, bytes out -------------------------------------------------------------------


def read_dataset(data: bytes, source: str = "input") -> Dataset:
    """Parse DICOM file bytes (header and undecoded pixel bytes) with clear errors."""
    try:
        fast = parse_file(data)
    except Exception:  # noqa: BLE001 - anything odd: pydicom's reader decides and explains
        fast = None
    if fast is not None:
        return fast
    try:
        ds = dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError:
        try:
            ds = dcmread(io.BytesIO(data), force=True)
        except Exception as exc:  # noqa: BLE001 - any parser failure is an invalid file
            raise InvalidDicom(
                f"{source}: not a DICOM file (no DICM prefix and not a raw data set: "
                f"{exc.__class__.__name__})"
            ) from None
        if not len(ds) or 0x00080016 not in elements(ds):
            raise InvalidDicom(
                f"{source}: not a DICOM file (no DICM prefix, no SOP Class UID); "
                "check that the file is a DICOM export"
            ) from None
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt files
        raise InvalidDicom(
            f"{source}: unreadable DICOM ({exc.__class__.__name__}); the file may be "
            "truncated or corrupt — re-export it"
        ) from None
    return ds


_SLOW_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
)
_HEADER = struct.Struct("<HH2sH")
_HEADER_LONG = struct.Struct("<HH2s2xI")
_ITEM = struct.Struct("<HHI")
_HEADER_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL"}
    | {"SS", "ST", "TM", "UI", "UL", "US", "OB", "OD", "OF", "OL", "OV", "OW", "UC", "UN"}
    | {"UR", "UT", "SV", "UV"}
)


def encode_dataset(ds: Dataset) -> bytes:
    """Encode ``ds`` as a DICOM file (zeroed preamble, file meta as rebuilt).

    Hand-written fast path (the reason: pydicom's writer costs ~25 µs per element, several
    times the whole de-identification): when the data set was read as explicit VR little
    endian and is written in the same encoding, elements the engine did not touch are still
    undecoded ``RawDataElement`` values and are re-emitted verbatim with their header; every
    other element goes through pydicom's own ``write_data_element``. The output is byte for
    byte what ``Dataset.save_as`` writes (tested).
    """
    ds.preamble = b"\x00" * 128
    try:
        if _fast_path(ds):
            return _encode_explicit_le(ds)
        # The transfer syntax decides the encoding; it may differ from the one the data set
        # was read with (pixels re-encoded as native little endian), so pydicom converts.
        syntax = str(ds.file_meta.TransferSyntaxUID)
        buffer = io.BytesIO()
        dcmwrite(
            buffer,
            ds,
            implicit_vr=syntax == "1.2.840.10008.1.2",
            little_endian=syntax != "1.2.840.10008.1.2.2",
            enforce_file_format=True,
        )
        return buffer.getvalue()
    except Exception as exc:  # noqa: BLE001 - encoding failure must name the class only
        raise DeidentificationError(
            f"the de-identified instance could not be encoded ({exc.__class__.__name__}: "
            "an attribute has a value its VR does not allow)"
        ) from None


def _fast_path(ds: Dataset) -> bool:
    """Whether ``ds`` is written by the hand-written explicit VR little endian encoder."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not syntax or syntax in _SLOW_SYNTAXES:
        return False
    return tuple(getattr(ds, "original_encoding", (None, None))) in ((False, True), (None, None))


def _encode_explicit_le(ds: Dataset) -> bytes:
    meta: list[bytes] = []
    _encode_elements(meta, ds.file_meta, [])
    body = b"".join(meta)
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    chunks: list[bytes] = [b"\x00" * 128 + b"DICM", group_length, body]
    _encode_elements(chunks, ds, encodings_of(ds))
    return b"".join(chunks)  # one copy of the pixel data, not one per buffer growth


def _encode_elements(chunks: list[bytes], ds: Dataset, encodings: list[str]) -> None:
    """Encode the elements of ``ds`` (explicit VR LE) as pydicom's writer would."""
    elems = elements(ds)
    append = chunks.append
    for tag in sorted(elems):
        if not tag & 0xFFFF and tag >> 16 > 6:
            continue  # retired group lengths are never written
        elem = elems[tag]
        if type(elem) is RawDataElement:
            if elem.VR is not None and not elem.is_implicit_VR and elem.is_little_endian:
                value = elem.value or b""
                vr = elem.VR
                if elem.length == 0xFFFFFFFF:  # sequence or encapsulated pixel data
                    append(_HEADER_LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), 0xFFFFFFFF))
                    append(value)
                    append(_SEQUENCE_DELIMITER)
                    continue
                header = _HEADER_LONG if vr in _LONG_VRS else _HEADER
                append(header.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
                append(value)
                continue
            elem = ds[tag]
        if elem.VR == "SQ":
            value, undefined = _sequence_value(elem, encodings_of(ds, encodings))
            length = 0xFFFFFFFF if undefined else len(value)
            append(_HEADER_LONG.pack(tag >> 16, tag & 0xFFFF, b"SQ", length) + value)
            if undefined:
                append(_SEQUENCE_DELIMITER)
        else:
            fp = DicomBytesIO()
            fp.is_little_endian = True
            fp.is_implicit_VR = False
            write_data_element(fp, elem, encodings)
            append(fp.getvalue())


_SEQUENCE_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def _sequence_value(elem: DataElement, encodings: list[str]) -> tuple[bytes, bool]:
    """Encode a sequence's items; return (value, undefined length) as pydicom writes them."""
    body: list[bytes] = []
    for item in elem.value or ():
        content: list[bytes] = []
        _encode_elements(content, item, encodings_of(item, encodings))
        data = b"".join(content)
        if item.is_undefined_length_sequence_item:
            body.append(_ITEM.pack(0xFFFE, 0xE000, 0xFFFFFFFF) + data)
            body.append(_ITEM.pack(0xFFFE, 0xE00D, 0))
        else:
            body.append(_ITEM.pack(0xFFFE, 0xE000, len(data)) + data)
    return b"".join(body), bool(elem.is_undefined_length)


def _as_raw(ds: Dataset, key: int, elem: Any, encodings: list[str]) -> RawDataElement | None:
    """The encoded form of a processed element, as the encoder would write it; None if odd."""
    if type(elem) is RawDataElement:
        return elem if not elem.is_implicit_VR and elem.is_little_endian else None
    if elem.VR == "SQ":
        value, undefined = _sequence_value(elem, encodings_of(ds, encodings))
        length = 0xFFFFFFFF if undefined else len(value)
        return RawDataElement(BaseTag(key), "SQ", length, value, 0, False, True)
    if elem.is_undefined_length or elem.VR not in _HEADER_VRS:
        return None
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_data_element(fp, elem, encodings)
    encoded = fp.getvalue()
    value = encoded[12:] if elem.VR in _LONG_VRS else encoded[8:]
    return RawDataElement(BaseTag(key), elem.VR, len(value), value, 0, False, True)


def residual_phi(
    data: bytes, values: Iterable[str], ds: Dataset, equipment_values: Iterable[str] = ()
) -> list[str]:
    """Return where identifying ``values`` occur in the header of encoded ``data`` (no values).

    The pixel data element is left out (pixel PHI is the pixel policy's business). Each hit is
    described as the output attribute containing it, e.g. ``StudyDescription (0008,1030)``.
    ``equipment_values`` (institution and device identity) are not counted when they occur
    only in the attributes that describe the equipment's maker, which every profile keeps:
    a vendor's own site ("OFFIS" in both Institution Name and Manufacturer) is not a leak.
    """
    equipment = {v.upper() for v in equipment_values}
    pixel_len = 0
    if _PIXEL_DATA in elements(ds):
        raw = elements(ds)[_PIXEL_DATA]
        value = raw.value
        pixel_len = len(value) if isinstance(value, bytes | bytearray) else 0
    header = data[: len(data) - pixel_len].upper() if pixel_len else data.upper()
    hits: list[str] = []
    for value in values:
        if len(value) < _MIN_CHECK_LENGTH:
            continue
        for encoding in ("utf-8", "latin-1"):
            try:
                needle = value.upper().encode(encoding)
            except UnicodeEncodeError:
                continue
            # Fast test first; then require a token boundary, so that an MRN's digits inside
            # a remapped 2.25 UID or a decimal number are not taken for a leak.
            if needle in header and _token_in(needle, header):
                places = _locate(ds, value.upper())
                if value.upper() in equipment:
                    places = [p for p in places if not p.startswith(_MAKER_ATTRIBUTES)]
                    if not places:
                        break
                hits.append(places[0] if places else "the encoded header")
                break
    return sorted(set(hits))


#: Attributes naming the equipment's maker and model; kept by every profile.
_MAKER_ATTRIBUTES = (
    "Manufacturer (0008,0070)",
    "ManufacturerModelName (0008,1090)",
    "SoftwareVersions (0018,1020)",
    "DeviceDescription",
    "CodeMeaning",
)


def _token_in(needle: bytes, haystack: bytes) -> bool:
    edge = rb"[0-9.]" if needle[:1].isdigit() else rb"[A-Z0-9_]"
    tail = rb"[0-9.]" if needle[-1:].isdigit() else rb"[A-Z0-9_]"
    pattern = rb"(?<!" + edge + rb")" + re.escape(needle) + rb"(?!" + tail + rb")"
    return re.search(pattern, haystack) is not None


def _locate(ds: Dataset, needle: str) -> list[str]:
    """Name the output attributes whose values contain ``needle`` (PHI-free descriptions)."""
    found: list[str] = []

    def visit(dataset: Dataset, path: str) -> None:
        for elem in dataset:
            tag = int(elem.tag)
            where = f"{path}{elem.keyword or 'private'} ({tag >> 16:04X},{tag & 0xFFFF:04X})"
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item, where + " > ")
            elif elem.VR in _STRING_VRS or elem.VR in ("OB", "UN"):
                value = elem.value
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                if needle in text.upper():
                    found.append(where)

    visit(ds, "")
    visit(ds.file_meta, "file meta ")
    return found


def deidentify_bytes(
    data: bytes,
    profile: Profile,
    pseudonymizer: Pseudonymizer,
    *,
    safe_private: SafePrivateList | None = None,
    text_detector: pixels.TextDetector | None = None,
    source: str = "input",
    on_dataset: Callable[[Dataset], None] | None = None,
) -> DeidOutput:
    """De-identify the DICOM file in ``data`` and return the bytes of the result.

    The engine verifies its own work before returning: any identifying value it read from the
    input found in the output header raises :class:`~biobank.errors.QuarantineRequired`.
    ``source`` names the item in error messages (e.g. a relative path) and must not be PHI.
    """
    ds = read_dataset(data, source)
    if (
        str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        == ("1.2.840.10008.1.3.10")
        or "DirectoryRecordSequence" in ds
    ):
        raise QuarantineRequired(
            "a DICOMDIR is never copied: it names patients and files; regenerate it from the "
            "de-identified output"
        )
    result = apply_profile(
        ds, profile, pseudonymizer, safe_private=safe_private, text_detector=text_detector
    )
    if on_dataset is not None:
        on_dataset(result.dataset)
    out = encode_dataset(result.dataset)
    hits = residual_phi(out, result.identifying_values, result.dataset, result.equipment_values)
    if hits:
        raise QuarantineRequired(
            "identifying value(s) from the input survived de-identification in: "
            + "; ".join(hits)
            + " — the item is held back; report this profile gap"
        )
    return DeidOutput(data=out, record=result.record, identity=result.identity)


def table_edition() -> str:
    """The edition of the packaged Table E.1-1."""
    return load_table().edition


__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "DeidOutput",
    "DeidResult",
    "apply_profile",
    "deidentify_bytes",
    "encode_dataset",
    "read_dataset",
    "residual_phi",
    "table_edition",
]

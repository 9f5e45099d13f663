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

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset, Sequence
from pydicom.datadict import dictionary_is_retired, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement

from biobank.deid import pixels
from biobank.deid.context import (
    MEMO_DECISIONS,
    MEMO_MAX_VALUE,
    Context,
    Mode,
    memo_for,
    remember,
    replay,
)
from biobank.deid.dates import UnparseableDate, check_tm, shift_value
from biobank.deid.evidence import (
    IMPLEMENTATION_CLASS_UID,
    rebuild_file_meta,
    write_identity_evidence,
    write_method,
)
from biobank.deid.iod import resolve_composite
from biobank.deid.keys import Pseudonymizer
from biobank.deid.models import (
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
from biobank.deid.table import COMPOSITE_CODES, compile_rules, load_table
from biobank.deid.text import TextCleaner, identifying_words
from biobank.deid.verify import residual_phi
from biobank.dicom.io import encode_dataset, fast_path, read_dataset
from biobank.dicom.values import (
    element_vr,
    elements,
    encodings_of,
    read_strings,
    store_raw,
    vr_of,
)
from biobank.errors import DeidentificationError, InvalidDicom, QuarantineRequired

logger = logging.getLogger(__name__)


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

#: Identifying attributes that Table E.1-1 (2024b and the later rows we have) does not list and
#: whose VR would let the allow-list keep them (LO/SH/UR text, not person names or free text,
#: which are handled by VR): dates written as text, contacts, file names, network addresses,
#: owners, and the DICOS traveller identifiers. Removed unless a profile's allow_tags names them.
IDENTIFYING_NOT_IN_TABLE = frozenset(
    {
        0x00100033,  # Patient's Birth Date in Alternative Calendar (LO)
        0x00100034,  # Patient's Death Date in Alternative Calendar (LO)
        0x0008040B,  # Filename in Container (UR)
        0x00181803,  # NTP Source Address (LO)
        0x00380016,  # Route of Admissions (LO)
        0x0074100A,  # Contact URI (UR)
        0x0074100C,  # Contact Display Name (LO)
        0x21000160,  # Owner ID (SH)
        0x40101007,  # Route Segment ID
        0x4010101A,  # Boarding Pass ID
        0x4010101E,  # Route Segment Start Location ID
        0x4010101F,  # Route Segment End Location ID
        0x4010102A,  # Assigned Location
        0x40101051,  # Itinerary ID
        0x40101053,  # Itinerary ID Assigning Authority
        0x40101054,  # Route ID
        0x40101055,  # Route ID Assigning Authority
        0x40101058,  # Carrier ID
        0x40101078,  # PTO Location Description
    }
)

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
    ctx = Context(
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

    if fast_path(ds):
        ctx.memo = memo_for(
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
    _process_dataset(ds, ctx, Mode.NORMAL)
    write_identity_evidence(ds, pseudonym, profile, encodings)

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
    record.method_codes = write_method(
        ds,
        profile,
        pseudonymizer.key_id,
        encodings,
        pixel_cleaned=pixel_record.action is PixelAction.CLEAN,
    )
    rebuild_file_meta(ds, sop_class_uid)

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


def _decide(tag: int, vr: str, mode: int, ctx: Context) -> str:
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
    if tag in IDENTIFYING_NOT_IN_TABLE:
        return "X"
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
    if mode == Mode.DUMMY and vr in _DUMMY_TEXT_VRS:
        # Inside a sequence whose action is D every text value is replaced, codes included:
        # a Person Identification Code Sequence identifies by its code values.
        return "D"
    if vr in _FREE_TEXT_VRS:
        return "clean-text" if mode == Mode.CLEAN or ctx.clean_descriptors else "X"
    return "keep"


def _process_dataset(ds: Dataset, ctx: Context, mode: int) -> None:
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
        vr = element_vr(elem, tag)
        decision = decisions.get((tag, vr, mode))
        if decision is None:
            decision = decisions[(tag, vr, mode)] = _decide(tag, vr, mode, ctx)
        if decision == "keep":
            continue
        memo_key = None
        if (
            memo is not None
            and ctx.memo is memo
            and decision in MEMO_DECISIONS
            and type(elem) is RawDataElement
            and elem.value is not None
            and len(elem.value) <= MEMO_MAX_VALUE
        ):
            memo_key = (tag, vr, bytes(elem.value))
            hit = memo.get(memo_key)
            if hit is not None:
                replay(ds, key, hit, ctx)
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
            remember(ds, key, memo_key, before, ctx, memo)  # type: ignore[arg-type]
    for block, creator_tag in private_creators.items():
        if block not in kept_blocks:
            del elems[creator_tag]


def _process_private(
    ds: Dataset, tag: int, block: int, creators: dict[int, str], ctx: Context, mode: int
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


def _keep_private(ds: Dataset, tag: int, entry: SafePrivateEntry, ctx: Context, mode: int) -> bool:
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


def _walk_items(ds: Dataset, tag: int, ctx: Context, mode: int) -> None:
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


def _keep(ds: Dataset, tag: int, ctx: Context, mode: int) -> None:
    if vr_of(ds, tag) == "SQ":
        _walk_items(ds, tag, ctx, mode)


def _remove(ds: Dataset, tag: int, ctx: Context) -> None:
    del elements(ds)[tag]
    ctx.count("X", tag)


def _apply(
    ds: Dataset, tag: int, action: str, ctx: Context, mode: int, vr: str | None = None
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


def _dummy(ds: Dataset, tag: int, vr: str, ctx: Context, mode: int) -> None:
    if vr == "SQ":
        _harvest_names(ds, tag, ctx)
        _walk_items(ds, tag, ctx, Mode.DUMMY if mode != Mode.CLEAN else mode)
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


def _harvest_names(ds: Dataset, tag: int, ctx: Context) -> None:
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


def _clean(ds: Dataset, tag: int, vr: str, ctx: Context, mode: int) -> None:
    if vr == "SQ":
        _harvest_names(ds, tag, ctx)
        _walk_items(ds, tag, ctx, Mode.CLEAN)
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


def _collect_pn(ds: Dataset, tag: int, ctx: Context) -> None:
    ctx.add_identifying(v.strip() for v in ctx.values(ds, tag, "PN"))


def _clean_text(ds: Dataset, tag: int, vr: str, ctx: Context) -> None:
    values = ctx.values(ds, tag, vr)
    cleaned = [ctx.cleaner.clean(v) for v in values]
    if cleaned != values:
        ctx.store(ds, tag, vr, cleaned)
    ctx.count("C", tag)


def _remap_uids(ds: Dataset, tag: int, ctx: Context, vr: str = "UI") -> None:
    values = ctx.values(ds, tag, vr)
    new = [v if not v or _well_known_uid(v) else ctx.pseudo.uid(v) for v in values]
    if new != values:
        ctx.record.uids_remapped += sum(1 for a, b in zip(values, new, strict=True) if a != b)
        ctx.store(ds, tag, "UI", new)


def _shift_element(
    ds: Dataset, tag: int, vr: str, ctx: Context, *, remove_on_error: bool = True
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

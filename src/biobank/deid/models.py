"""Value types of the de-identification engine: actions, options, profiles and records.

Everything here is plain data. A :class:`DeidRecord` is the evidence kept for each instance;
it never holds a value read from the input header (no PHI), only tags, keywords, counts,
pseudonymous identifiers and the new UIDs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Action(enum.StrEnum):
    """PS3.15 Table E.1-1 action codes, after composite codes are resolved."""

    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"


class Option(enum.StrEnum):
    """PS3.15 Annex E options: the table's columns plus the two pixel options of E.3.1/E.3.2.

    The value is the column name in ``ps3.15-annex-e.json``; :attr:`code` is the CID 7050 code.
    """

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"
    CLEAN_PIXEL_DATA = "clean_pixel_data"
    CLEAN_RECOGNIZABLE_VISUAL_FEATURES = "clean_recognizable_visual_features"

    @property
    def code(self) -> str:
        """CID 7050 code value of this option (DCM coding scheme)."""
        return _OPTION_CODES[self]

    @property
    def meaning(self) -> str:
        """CID 7050 code meaning of this option."""
        return _OPTION_MEANINGS[self]

    @property
    def is_table_column(self) -> bool:
        """Whether Table E.1-1 has a column for this option (E.3.1/E.3.2 have none)."""
        return self not in (Option.CLEAN_PIXEL_DATA, Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES)


BASIC_PROFILE_CODE = "113100"
BASIC_PROFILE_MEANING = "Basic Application Confidentiality Profile"

_OPTION_CODES: dict[Option, str] = {
    Option.CLEAN_PIXEL_DATA: "113101",
    Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES: "113102",
    Option.CLEAN_GRAPHICS: "113103",
    Option.CLEAN_STRUCTURED_CONTENT: "113104",
    Option.CLEAN_DESCRIPTORS: "113105",
    Option.RETAIN_LONGITUDINAL_FULL_DATES: "113106",
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: "113107",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "113108",
    Option.RETAIN_DEVICE_IDENTITY: "113109",
    Option.RETAIN_UIDS: "113110",
    Option.RETAIN_SAFE_PRIVATE: "113111",
    Option.RETAIN_INSTITUTION_IDENTITY: "113112",
}

_OPTION_MEANINGS: dict[Option, str] = {
    Option.CLEAN_PIXEL_DATA: "Clean Pixel Data Option",
    Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES: "Clean Recognizable Visual Features Option",
    Option.CLEAN_GRAPHICS: "Clean Graphics Option",
    Option.CLEAN_STRUCTURED_CONTENT: "Clean Structured Content Option",
    Option.CLEAN_DESCRIPTORS: "Clean Descriptors Option",
    Option.RETAIN_LONGITUDINAL_FULL_DATES: (
        "Retain Longitudinal Temporal Information Full Dates Option"
    ),
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "Retain Longitudinal Temporal Information Modified Dates Option"
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: "Retain Patient Characteristics Option",
    Option.RETAIN_DEVICE_IDENTITY: "Retain Device Identity Option",
    Option.RETAIN_UIDS: "Retain UIDs Option",
    Option.RETAIN_SAFE_PRIVATE: "Retain Safe Private Option",
    Option.RETAIN_INSTITUTION_IDENTITY: "Retain Institution Identity Option",
}


class PixelAction(enum.StrEnum):
    """What the pixel PHI policy decided for an instance."""

    PASS = "pass"  # pixels copied through untouched (beyond zeroing unused high bits)
    CLEAN = "clean"  # burned-in text detected and masked on every frame
    QUARANTINE = "quarantine"  # must not be released; not written
    NONE = "none"  # the instance has no pixel data


class Outcome(enum.StrEnum):
    """What became of one input item."""

    WRITTEN = "written"
    DUPLICATE = "duplicate"  # the same output already exists, byte for byte
    QUARANTINED = "quarantined"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Profile:
    """A named set of Annex E options, with project-specific allowances.

    ``allow_tags`` lists public tags (``0xGGGGEEEE``) that are kept although they would be
    removed as retired or unknown to our dictionary; ``quarantine_sop_classes`` adds SOP
    classes that are always held back.
    """

    name: str
    options: frozenset[Option]
    description: str = ""
    allow_tags: frozenset[int] = frozenset()
    quarantine_sop_classes: frozenset[str] = frozenset()
    date_offset_max_days: int = 3650

    @property
    def shifts_dates(self) -> bool:
        """Whether dates are shifted by a per-patient offset (Modified Dates option)."""
        return Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in self.options

    @property
    def keeps_full_dates(self) -> bool:
        """Whether dates are kept as they are (Full Dates option)."""
        return Option.RETAIN_LONGITUDINAL_FULL_DATES in self.options


@dataclass(frozen=True)
class PixelRecord:
    """What was done to the pixel data of one instance (no PHI: counts and boxes only)."""

    action: PixelAction
    reason: str
    frames: int = 0
    regions_masked: int = 0
    high_bits_zeroed: bool = False
    reencoded_transfer_syntax: str | None = None
    residual_text_found: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "action": self.action.value,
            "reason": self.reason,
            "frames": self.frames,
            "regions_masked": self.regions_masked,
            "high_bits_zeroed": self.high_bits_zeroed,
            "reencoded_transfer_syntax": self.reencoded_transfer_syntax,
            "residual_text_found": self.residual_text_found,
        }


@dataclass
class DeidRecord:
    """Evidence of what the engine did to one instance. Contains no PHI.

    ``actions`` counts elements per action code; ``removed_private`` counts private elements
    removed; ``tags`` maps each resolved action code to the sorted list of tags (``GGGGEEEE``)
    it was applied to at any depth (values are never recorded).
    """

    profile: str
    options: list[str]
    patient_pseudonym: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    method_codes: list[str]
    actions: dict[str, int] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    removed_private: int = 0
    kept_private: int = 0
    dates_shifted: int = 0
    dates_removed_unparseable: int = 0
    uids_remapped: int = 0
    pixel: PixelRecord | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "profile": self.profile,
            "options": self.options,
            "patient_pseudonym": self.patient_pseudonym,
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "modality": self.modality,
            "method_codes": self.method_codes,
            "actions": dict(sorted(self.actions.items())),
            "tags": {k: sorted(set(v)) for k, v in sorted(self.tags.items())},
            "removed_private": self.removed_private,
            "kept_private": self.kept_private,
            "dates_shifted": self.dates_shifted,
            "dates_removed_unparseable": self.dates_removed_unparseable,
            "uids_remapped": self.uids_remapped,
            "pixel": self.pixel.to_json() if self.pixel else None,
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class PatientIdentity:
    """The source identity of a patient, as seen in the input. This *is* PHI.

    It travels only from the engine to the site-local pseudonym map; never into a record,
    a report, a log or an output file.
    """

    issuer: str
    patient_id: str
    pseudonym: str


__all__ = [
    "BASIC_PROFILE_CODE",
    "BASIC_PROFILE_MEANING",
    "Action",
    "DeidRecord",
    "Option",
    "Outcome",
    "PatientIdentity",
    "PixelAction",
    "PixelRecord",
    "Profile",
]

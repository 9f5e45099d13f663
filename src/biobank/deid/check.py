"""Is an incoming instance already de-identified? The acceptance check of a central node.

A central node takes only data de-identified at a site (by ``biobank deid`` or another
PS3.15-conformant de-identifier) and rejects the rest. :func:`check_deidentified` reads the
evidence PS3.15 E.1.1 asks a de-identifier to write, takes the options it declares from the
CID 7050 codes of De-identification Method Code Sequence, and judges every element at every
depth against Table E.1-1 resolved for those options — the table's own resolution
(:func:`~biobank.deid.table.compile_rules`), not a copy of it:

1. Patient Identity Removed (0012,0062) is ``YES``;
2. De-identification Method (0012,0063) or its Code Sequence (0012,0064) has a value;
3. the code sequence, when present, holds 113100 (Basic Profile); its other CID 7050 codes
   are the declared options (unknown codes are ignored); a free-text method alone declares
   the Basic Profile with no option;
4. no public attribute whose action is ``X`` under those options is present with a value.
   Composite codes (``X/Z``, ``X/D``, ``X/Z/D``…) are not flagged as such: at the top level
   they are resolved by the attribute's Type in the instance's IOD with the engine's
   :func:`~biobank.deid.iod.resolve_composite`, and flagged only when that gives ``X``;
   nested, they are not flagged (their Type depends on the enclosing macro);
5. private attributes: without Retain Safe Private (113111) any private block is a reason,
   once per block; with it, every private attribute must be on the creator-resolved safe
   list, and safe-listed dates need a Retain Longitudinal option;
6. Burned In Annotation (0028,0301) is not ``YES``;
7. no Overlay Data (60xx,3000) unless Clean Graphics (113103) is declared.

The reasons are PHI-free: they name attributes (keyword, tag, sequence path), never a value;
the one string taken from the data set is a private block's Private Creator (a vendor's block
name), reduced to printable ASCII. The data set is not modified: undecoded sequences are
decoded into temporary objects, values are read from the raw bytes where they are raw, and
pixel data are never touched. Rule sets are compiled once per set of declared options.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from pydicom import Dataset, Sequence
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.multival import MultiValue

from biobank.deid.iod import resolve_composite
from biobank.deid.models import BASIC_PROFILE_CODE, Option, Profile
from biobank.deid.private import (
    Disposition,
    SafePrivateEntry,
    SafePrivateList,
    load_safe_private,
)
from biobank.deid.table import (
    COMPOSITE_CODES,
    CompiledRules,
    TableRow,
    compile_rules,
    load_table,
)
from biobank.dicom.values import SINGLE_VALUE_VRS, element_vr, elements, encodings_of, read_strings

#: At most this many reasons are listed; the rest are counted in one last line.
MAX_REASONS = 20

#: What to do about any reason: the same advice everywhere, so it reads as one instruction.
_FIX = "de-identify at the site with `biobank deid` or a PS3.15-conformant tool, then resend"

_PATIENT_IDENTITY_REMOVED = 0x00120062
_DEID_METHOD = 0x00120063
_DEID_METHOD_CODES = 0x00120064
_LONGITUDINAL_MODIFIED = 0x00280303
_BURNED_IN_ANNOTATION = 0x00280301
_SOP_CLASS_UID = 0x00080016
_CODE_VALUE = 0x00080100
_CODING_SCHEME = 0x00080102

#: Evidence a de-identifier writes (PS3.15 E.1.1, E.3.6): never a reason in itself.
_EVIDENCE_TAGS = frozenset(
    {_PATIENT_IDENTITY_REMOVED, _DEID_METHOD, _DEID_METHOD_CODES, _LONGITUDINAL_MODIFIED}
)

_OPTION_BY_CODE: dict[str, Option] = {option.code: option for option in Option}

_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)


@dataclass(frozen=True)
class _Rules:
    """Table E.1-1 resolved for one set of declared options, ready for lookups."""

    options: frozenset[Option]
    compiled: CompiledRules
    removed: frozenset[int]  # exact public tags whose action is X
    composite: dict[int, str]  # exact public tags whose action is composite
    declared: str  # the declared options, for messages
    clean_graphics: bool
    retain_safe_private: bool
    keeps_dates: bool


_RULES: dict[frozenset[Option], _Rules] = {}
_TOP_REMOVED: dict[tuple[frozenset[Option], str], frozenset[int]] = {}


def _rules_for(options: frozenset[Option]) -> _Rules:
    """The rules for ``options`` (cached: at most one entry per option set seen)."""
    rules = _RULES.get(options)
    if rules is not None:
        return rules
    compiled = compile_rules(Profile(name="declared", options=options))
    codes = sorted(o.code for o in options)
    rules = _Rules(
        options=options,
        compiled=compiled,
        removed=frozenset(
            tag
            for tag, action in compiled.by_tag.items()
            if action == "X" and tag not in _EVIDENCE_TAGS
        ),
        composite={
            tag: action for tag, action in compiled.by_tag.items() if action in COMPOSITE_CODES
        },
        declared=(
            f"Basic Profile {BASIC_PROFILE_CODE} with options {', '.join(codes)}"
            if codes
            else f"Basic Profile {BASIC_PROFILE_CODE} with no option"
        ),
        clean_graphics=Option.CLEAN_GRAPHICS in options,
        retain_safe_private=Option.RETAIN_SAFE_PRIVATE in options,
        keeps_dates=bool(
            options
            & {Option.RETAIN_LONGITUDINAL_FULL_DATES, Option.RETAIN_LONGITUDINAL_MODIFIED_DATES}
        ),
    )
    if len(_RULES) > 256:
        _RULES.clear()
    _RULES[options] = rules
    return rules


def _top_removed(rules: _Rules, sop_class_uid: str) -> frozenset[int]:
    """Top-level tags whose composite action is X in the IOD of ``sop_class_uid`` (cached)."""
    key = (rules.options, sop_class_uid)
    found = _TOP_REMOVED.get(key)
    if found is None:
        found = frozenset(
            tag
            for tag, code in rules.composite.items()
            if resolve_composite(code, _keyword(tag), sop_class_uid) == "X"
        )
        if len(_TOP_REMOVED) > 1024:
            _TOP_REMOVED.clear()
        _TOP_REMOVED[key] = found
    return found


@cache
def _keyword(tag: int) -> str:
    keyword = keyword_for_tag(tag)
    if keyword:
        return keyword
    row = load_table().row_for(tag)
    return row.keyword if row is not None else ""


@cache
def _label(tag: int) -> str:
    """``Keyword (gggg,eeee)`` for a public tag; ``private (gggg,eeee)`` for a private one."""
    where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    if tag >> 16 & 1:
        return f"private {where}"
    keyword = _keyword(tag)
    return f"{keyword} {where}" if keyword else f"unknown attribute {where}"


@cache
def _overlay_data_row() -> TableRow | None:
    """The table's row for Overlay Data (60XX,3000)."""
    return next((row for row in load_table().rows if row.pattern == "60XX3000"), None)


def _printable(text: str) -> str:
    """A Private Creator as it may appear in a reason: printable ASCII, at most 64 characters."""
    return "".join(c for c in text if " " <= c <= "~").strip()[:64]


def _has_value(elem: Any, vr: str) -> bool:
    """Whether ``elem`` holds a value (a sequence: at least one item), without decoding it."""
    if type(elem) is RawDataElement:
        raw = elem.value
        if raw is None:  # deferred read: assume there is something
            return bool(elem.length)
        if vr in _STRING_VRS:
            strip = b" \x00" if vr in SINGLE_VALUE_VRS else b" \x00\\"
            return bool(bytes(raw).strip(strip))
        return len(raw) > 0
    return not _empty(elem.value)


def _empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip(" \x00\\")
    if isinstance(value, bytes | bytearray):
        return not value
    if isinstance(value, Sequence):
        return not len(value)
    if isinstance(value, MultiValue | list | tuple):
        return all(_empty(v) for v in value)
    return not str(value).strip(" \x00\\")


def _items(ds: Dataset, elem: Any, encodings: list[str]) -> list[Dataset]:
    """The items of a sequence element, decoding a raw one into a temporary object.

    Raises ValueError when the value does not decode as a sequence.
    """
    if type(elem) is RawDataElement:
        if elem.value is None and elem.length:
            raise ValueError("value not read (deferred)")
        if not elem.value:
            return []
        elem = convert_raw_data_element(elem, encoding=encodings, ds=ds)
    value = elem.value
    if isinstance(value, Sequence):
        return list(value)
    if value is None or value == b"" or value == "":
        return []
    raise ValueError("not a sequence")


#: Safe-list lookups remembered per (list, group, creator): element offset -> entry or None.
_SafeBlock = dict[int, SafePrivateEntry | None]
_SAFE_MEMO: dict[tuple[int, int, str], tuple[SafePrivateList, _SafeBlock]] = {}


def _safe_block(safe: SafePrivateList, group: int, creator: str) -> _SafeBlock:
    """The remembered lookups of ``creator``'s block in ``group`` (filled as elements come)."""
    key = (id(safe), group, creator)
    found = _SAFE_MEMO.get(key)
    if found is None or found[0] is not safe:
        if len(_SAFE_MEMO) > 4096:
            _SAFE_MEMO.clear()
        found = _SAFE_MEMO[key] = (safe, {})
    return found[1]


class _Block:
    """A private block met in one data set: its creator and what was said about it."""

    __slots__ = ("creator", "lookups", "reported")

    def __init__(self, creator: str, lookups: _SafeBlock | None) -> None:
        self.creator = creator
        self.lookups = lookups
        self.reported = False

    def named(self) -> str:
        if not self.creator:
            return "no Private Creator"
        return f'creator "{_printable(self.creator)}"'


_UNKNOWN = object()


#: Decoded De-identification Method Code Sequences by their encoded value: a de-identifier
#: writes the same bytes into every instance, so each distinct value is decoded once.
_CODE_ITEMS: dict[tuple[bool, bool, tuple[str, ...], bytes], list[Dataset]] = {}


def _code_items(ds: Dataset, elem: Any, encodings: list[str]) -> list[Dataset]:
    """The items of De-identification Method Code Sequence (shared; never modify them)."""
    value = elem.value if type(elem) is RawDataElement else None
    if not isinstance(value, bytes) or len(value) > 4096:
        return _items(ds, elem, encodings)
    key = (bool(elem.is_implicit_VR), bool(elem.is_little_endian), tuple(encodings), value)
    items = _CODE_ITEMS.get(key)
    if items is None:
        items = _items(ds, elem, encodings)
        if len(_CODE_ITEMS) > 256:
            _CODE_ITEMS.clear()
        _CODE_ITEMS[key] = items
    return items


class _Check:
    """One run of the check: the rules, the reasons found so far, and the evidence items."""

    __slots__ = ("code_items", "count", "encodings", "reasons", "rules", "safe", "top_removed")

    def __init__(
        self,
        rules: _Rules,
        safe: SafePrivateList,
        top_removed: frozenset[int],
        encodings: list[str],
        code_items: list[Dataset] | None,
    ) -> None:
        self.rules = rules
        self.safe = safe
        self.top_removed = top_removed
        self.encodings = encodings
        self.code_items = code_items  # the evidence sequence, decoded once (None: undecodable)
        self.reasons: list[str] = []
        self.count = 0

    def add(self, reason: str) -> None:
        self.count += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)

    def walk(self, ds: Dataset, path: str, top: bool) -> None:
        """Judge every element of ``ds`` and of the sequences in it (in the data set's order)."""
        rules = self.rules
        removed = rules.removed
        compiled = rules.compiled
        by_tag = compiled.by_tag
        top_removed = self.top_removed if top else frozenset()
        blocks: dict[int, _Block] = {}
        for key, elem in elements(ds).items():
            tag = int(key)  # plain int: BaseTag hashes and compares in Python
            group = tag >> 16
            if group & 1:
                self._private(ds, elem, tag, path, blocks)
                continue
            if not tag & 0xFFFF:
                continue  # group length: a byte count, nothing to judge
            vr = elem.VR
            if vr is None or vr == "UN":
                vr = element_vr(elem, tag)
            if tag in removed or tag in top_removed:
                if _has_value(elem, vr):
                    self._removed(tag, path)
                continue
            if tag not in by_tag and (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF):
                self._repeating_group(elem, vr, tag, path)
            elif tag == _BURNED_IN_ANNOTATION:
                values = read_strings(ds, tag, "CS", [])
                if values and values[0].upper() == "YES":
                    self.add(
                        f"{path}BurnedInAnnotation (0028,0301) is YES: the pixel data still "
                        "hold burned-in text; clean the pixels (Clean Pixel Data Option, "
                        f"113101) — {_FIX}"
                    )
            elif vr == "SQ":
                if top and tag == _DEID_METHOD_CODES:
                    items = self.code_items or []  # decoded (or reported) once already
                    where = "DeidentificationMethodCodeSequence"
                    for index, item in enumerate(items):
                        self.walk(item, f"{where}[{index}] > ", top=False)
                else:
                    self._sequence(ds, elem, tag, f"{path}{_keyword(tag) or _label(tag)}")

    def _removed(self, tag: int, path: str) -> None:
        code = self.rules.compiled.action_for(tag) or "X"
        if code == "X":
            why = "Table E.1-1 says X (remove)"
        else:
            why = f"Table E.1-1 says {code}, which is X (remove) for this IOD"
        self.add(
            f"{path}{_label(tag)} is present with a value, but {why} under the declared "
            f"{self.rules.declared}; {_FIX}"
        )

    def _repeating_group(self, elem: Any, vr: str, tag: int, path: str) -> None:
        """Curves (50xx) and overlays (60xx), matched by the table's own repeating-group rows."""
        action = self.rules.compiled.action_for(tag)
        if action is None or not _has_value(elem, vr):
            return
        row = load_table().row_for(tag)
        if row is not None and row is _overlay_data_row() and not self.rules.clean_graphics:
            self.add(
                f"{path}{_label(tag)} is present but the Clean Graphics Option (113103) is not "
                "declared: an overlay can carry identifying text; remove the overlay, or "
                f"clean it and declare 113103 — {_FIX}"
            )
        elif action == "X":
            self._removed(tag, path)

    def _sequence(self, ds: Dataset, elem: Any, tag: int, where: str) -> None:
        try:
            items = _items(ds, elem, self.encodings)
        except Exception:  # noqa: BLE001 - any decoding failure means it cannot be judged
            self.add(
                f"{where} ({tag >> 16:04X},{tag & 0xFFFF:04X}) cannot be decoded as a "
                f"sequence, so it cannot be checked; {_FIX}"
            )
            return
        for index, item in enumerate(items):
            self.walk(item, f"{where}[{index}] > ", top=False)

    def _private(
        self, ds: Dataset, elem: Any, tag: int, path: str, blocks: dict[int, _Block]
    ) -> None:
        group = tag >> 16
        element = tag & 0xFFFF
        if element <= 0x00FF:
            if element == 0 or element >= 0x0010:
                return  # group length or Private Creator
            if group << 8 not in blocks:  # (gggg,0001-000F): outside any block
                blocks[group << 8] = _Block("", None)
                self.add(
                    f"{path}private group {group:04X} has attributes outside any private block "
                    f"(gggg,0001-000F), which no de-identifier keeps; {_FIX}"
                )
            return
        slot = element >> 8
        block = blocks.get(group << 8 | slot)
        if block is None:
            values = read_strings(ds, group << 16 | slot, "LO", self.encodings)
            creator = values[0] if values else ""
            retain = self.rules.retain_safe_private and creator
            lookups = _safe_block(self.safe, group, creator) if retain else None
            block = blocks[group << 8 | slot] = _Block(creator, lookups)
        if not self.rules.retain_safe_private:
            if not block.reported:
                block.reported = True
                self.add(
                    f"{path}private block ({group:04X},{slot:02X}xx), {block.named()}, is present "
                    "but the Retain Safe Private Option (113111) is not declared, so no private "
                    f"attribute may remain; {_FIX}"
                )
            return
        entry = None
        if block.lookups is not None:
            found = block.lookups.get(element & 0xFF, _UNKNOWN)
            if found is _UNKNOWN:
                found = block.lookups[element & 0xFF] = self.safe.lookup(
                    group, block.creator, element
                )
            entry = found if isinstance(found, SafePrivateEntry) else None
        if entry is None:
            self.add(
                f"{path}{_label(tag)}, {block.named()}, is not on the safe private list (Retain "
                f"Safe Private Option, PS3.15 E.3.10); {_FIX}"
            )
            return
        vr = elem.VR or "UN"  # a private VR is known only where it is encoded
        if entry.disposition is Disposition.OFFSET_DATE:
            if not self.rules.keeps_dates and _has_value(elem, vr):
                self.add(
                    f"{path}{_label(tag)}, {block.named()}, is a safe-listed date, but neither "
                    "Retain Longitudinal Temporal Information option (113106, 113107) is "
                    f"declared; {_FIX}"
                )
        elif vr == "SQ":
            self._sequence(ds, elem, tag, f"{path}{_label(tag)}")


def _declared_options(
    ds: Dataset, encodings: list[str], reasons: list[str]
) -> tuple[frozenset[Option], list[Dataset] | None]:
    """The options ``ds`` declares and the decoded code items (None: undecodable).

    Rules 1-3: reasons about the evidence itself are appended to ``reasons``.
    """
    identity = read_strings(ds, _PATIENT_IDENTITY_REMOVED, "CS", [])
    if not identity:
        reasons.append(
            "PatientIdentityRemoved (0012,0062) is missing or empty: the instance does not "
            f"declare that it was de-identified (PS3.15 E.1.1); {_FIX}"
        )
    elif identity[0].upper() != "YES":
        reasons.append(
            "PatientIdentityRemoved (0012,0062) is not YES: the instance declares that it was "
            f"not de-identified; {_FIX}"
        )
    method = [v for v in read_strings(ds, _DEID_METHOD, "LO", encodings) if v]
    coded = elements(ds).get(_DEID_METHOD_CODES)
    items: list[Dataset] | None = []
    if coded is not None:
        try:
            items = _code_items(ds, coded, encodings)
        except Exception:  # noqa: BLE001 - a broken sequence declares nothing
            items = None
    if items is None:
        reasons.append(
            "DeidentificationMethodCodeSequence (0012,0064) cannot be decoded, so the options "
            f"applied are unknown; {_FIX}"
        )
        return frozenset(), None
    if not method and not items:
        reasons.append(
            "neither DeidentificationMethod (0012,0063) nor DeidentificationMethodCodeSequence "
            "(0012,0064) has a value: the de-identification method is not declared (PS3.15 "
            f"E.1.1); {_FIX}"
        )
    if not items:
        return frozenset(), items  # free text only: the Basic Profile with no option
    codes: set[str] = set()
    for item in items:
        values = read_strings(item, _CODE_VALUE, "SH", encodings)
        scheme = read_strings(item, _CODING_SCHEME, "SH", encodings)
        if values and scheme and scheme[0].upper() == "DCM":
            codes.add(values[0])
    if BASIC_PROFILE_CODE not in codes:
        reasons.append(
            "DeidentificationMethodCodeSequence (0012,0064) lacks code 113100 (Basic "
            "Application Confidentiality Profile, DCM), which every PS3.15 de-identification "
            f"applies; {_FIX}"
        )
    return frozenset(_OPTION_BY_CODE[c] for c in codes if c in _OPTION_BY_CODE), items


def check_deidentified(ds: Dataset, *, safe_private: SafePrivateList | None = None) -> list[str]:
    """Return the reasons ``ds`` is not acceptable as de-identified data (empty: acceptable).

    The rules are those of PS3.15 Annex E summarised in this module's docstring: the evidence
    (Patient Identity Removed, De-identification Method and its CID 7050 codes), then every
    element at every depth against Table E.1-1 resolved for the declared options, private
    blocks against the Retain Safe Private Option and ``safe_private`` (the packaged safe list
    by default), burned-in annotation and overlays.

    Each reason names the attribute (keyword, tag and sequence path), says what is wrong and
    what to do, and never quotes a value. At most :data:`MAX_REASONS` are listed; a last line
    counts the others. ``ds`` is not modified.
    """
    encodings = encodings_of(ds)
    header: list[str] = []
    options, code_items = _declared_options(ds, encodings, header)
    rules = _rules_for(options)
    sop_class = read_strings(ds, _SOP_CLASS_UID, "UI", [])
    check = _Check(
        rules,
        safe_private if safe_private is not None else load_safe_private(),
        _top_removed(rules, sop_class[0] if sop_class else ""),
        encodings,
        code_items,
    )
    for reason in header:
        check.add(reason)
    check.walk(ds, "", top=True)
    reasons = check.reasons
    if check.count > len(reasons):
        more = check.count - len(reasons)
        reasons.append(f"and {more} more reason{'s' if more > 1 else ''}")
    return reasons


__all__ = ["MAX_REASONS", "check_deidentified"]

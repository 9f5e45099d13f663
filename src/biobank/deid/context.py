"""The state of one instance's de-identification, and the memo of element results.

:class:`Context` carries what the walk needs (profile, compiled rules, keyed transforms, the
identifying values read so far, the record being written). The memo (:func:`memo_for`)
remembers how a top-level element was de-identified, so that the other instances of a
series reuse it: see its docstring for why that is safe and deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.dataelem import RawDataElement

from biobank.deid.keys import Pseudonymizer
from biobank.deid.models import DeidRecord, Profile
from biobank.deid.private import SafePrivateList
from biobank.deid.table import CompiledRules
from biobank.deid.text import TextCleaner
from biobank.dicom.io import as_raw
from biobank.dicom.values import elements, read_strings, store_strings


class Mode:
    """How the walk treats free text: as in the profile, cleaned, or replaced by dummies."""

    NORMAL = 0  # top level and ordinary sequences
    CLEAN = 1  # inside a sequence under action C (Clean Structured Content / Graphics)
    DUMMY = 2  # inside a sequence under action D (content replaced by dummies)


@dataclass(frozen=True)
class MemoEntry:
    """What processing one top-level element did: its encoded result and its evidence."""

    result: RawDataElement | None  # None: removed
    events: tuple[tuple[str, int], ...]
    counters: tuple[int, int, int, int, int]
    added: tuple[str, ...]


#: Decisions worth remembering (those that do real work on the value).
MEMO_DECISIONS = frozenset({"walk", "D", "Z", "C", "clean-text", "shift"})
MEMO_MAX_VALUE = 1 << 16
#: Memos per context fingerprint: see :func:`memo_for`.
_MEMOS: dict[tuple[object, ...], dict[tuple[int, str, bytes], MemoEntry]] = {}


def memo_for(fingerprint: tuple[object, ...]) -> dict[tuple[int, str, bytes], MemoEntry]:
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
class Context:
    """Everything the walk over one instance needs, and the record it writes."""

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
    memo: dict[tuple[int, str, bytes], MemoEntry] | None = None
    events: list[tuple[str, int]] | None = None
    added: list[str] | None = None

    def count(self, action: str, tag: int) -> None:
        """Record that ``action`` was applied to ``tag`` (in the record and the memo's events)."""
        self.record.actions[action] = self.record.actions.get(action, 0) + 1
        self.record.tags.setdefault(action, []).append(f"{tag:08X}")
        if self.events is not None:
            self.events.append((action, tag))

    def add_identifying(self, values: Iterable[str]) -> None:
        """Add identifying values found during the walk (for the self-check and the memo)."""
        new = [v for v in values if v]
        self.identifying.update(new)
        if self.added is not None:
            self.added.extend(new)

    def counters(self) -> tuple[int, int, int, int, int]:
        """The record's counters, to measure what one element changed."""
        r = self.record
        return (
            r.removed_private,
            r.kept_private,
            r.dates_shifted,
            r.dates_removed_unparseable,
            r.uids_remapped,
        )

    def values(self, ds: Dataset, tag: int, vr: str) -> list[str]:
        """The element's string values, decoded with this instance's character set."""
        return read_strings(ds, tag, vr, self.encodings)

    def store(self, ds: Dataset, tag: int, vr: str, values: list[str]) -> None:
        """Replace the element's values, encoded with this instance's character set."""
        store_strings(ds, tag, vr, values, self.encodings)


def replay(ds: Dataset, key: int, entry: MemoEntry, ctx: Context) -> None:
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


def remember(
    ds: Dataset,
    key: int,
    memo_key: tuple[int, str, bytes],
    before: tuple[int, int, int, int, int],
    ctx: Context,
    memo: dict[tuple[int, str, bytes], MemoEntry],
) -> None:
    """Store what processing one element did, and leave the element in its encoded form."""
    events, added = ctx.events or [], ctx.added or []
    ctx.events = ctx.added = None
    if ctx.memo is not memo:
        return  # the text cleaner changed while processing it: not reusable
    result = elements(ds).get(key)
    raw = None
    if result is not None:
        raw = as_raw(ds, key, result, ctx.encodings)
        if raw is None:
            return
        elements(ds)[key] = raw
    after = ctx.counters()
    memo[memo_key] = MemoEntry(
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


__all__ = ["MEMO_DECISIONS", "Context", "MemoEntry", "Mode", "memo_for", "remember", "replay"]

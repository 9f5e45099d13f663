"""Cleaning free text (PS3.15 E.3.5 Clean Descriptors, E.3.4 Clean Structured Content).

A descriptor such as ``CT THORAX DOE JOHN 03/15/24 MRN 1234567`` keeps its clinical words and
loses what identifies: every word of the identifying values the engine read from the same
header (names, IDs, accession, addresses, institution), and anything shaped like a date, a
long number, a phone number or an e-mail address. Whole words are replaced, never parts of
words, so cleaning itself cannot leak ("Big" must not become "none Bore").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"

_PATTERNS = [
    # e-mail addresses
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    # dates: 2024-03-15, 15/03/2024, 03.15.24, 2024/3/15
    r"\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b",
    # dates with month names: 15 Mar 2024, March 15, 2024, 15-MAR-24
    r"\b\d{1,2}[\s/-]*(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?[\s/-]*\d{2,4}\b",
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+\d{2,4}\b",
    # phone numbers: +44 20 7946 0958, (555) 123-4567
    r"\+?\(?\d[\d\s().-]{6,}\d",
    # any run of 5+ digits (MRNs, accession numbers, compact dates such as 20240315)
    r"\d{5,}",
]
_PATTERN_RE = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)
_WORD_SPLIT = re.compile(r"[\s^=,;:/\\|()\[\]{}\"'.-]+")


#: Words too generic to identify anyone; scrubbing them would ruin descriptions
#: ("CT CHEST" must not lose "CT" because the institution is "CT Imaging Centre").
STOP_WORDS = frozenset(
    [
        "THE",
        "OF",
        "AND",
        "FOR",
        "DE",
        "DEL",
        "DELLA",
        "DES",
        "DU",
        "LA",
        "LE",
        "LES",
        "DI",
        "DA",
        "VON",
        "VAN",
        "DER",
        "DEN",
        "ET",
        "Y",
        "E",
        "UND",
        "HOSPITAL",
        "HOSPITALS",
        "CLINIC",
        "CLINICS",
        "CLINICA",
        "KLINIK",
        "KLINIKUM",
        "CENTER",
        "CENTRE",
        "CENTRO",
        "MEDICAL",
        "MEDICINE",
        "UNIVERSITY",
        "UNIVERSITAT",
        "UNIVERSITE",
        "UNIVERSIDAD",
        "UNIVERSITA",
        "INSTITUTE",
        "INSTITUT",
        "INSTITUTO",
        "HEALTH",
        "CARE",
        "GENERAL",
        "REGIONAL",
        "NATIONAL",
        "IMAGING",
        "RADIOLOGY",
        "DEPARTMENT",
        "DEPT",
        "STREET",
        "ROAD",
        "AVENUE",
        "ST",
        "RD",
        "AVE",
        "CT",
        "MR",
        "MRI",
        "PET",
        "US",
        "CR",
        "DX",
        "XA",
        "NM",
        "RT",
        "SR",
        "SEG",
        "HEAD",
        "CHEST",
        "ABDOMEN",
        "PELVIS",
        "BRAIN",
        "NECK",
        "SPINE",
        "BREAST",
        "PROSTATE",
        "LIVER",
    ]
)


def identifying_words(values: Iterable[str], min_length: int = 2) -> frozenset[str]:
    """Split identifying values (names, IDs, addresses…) into the words to scrub, upper-cased.

    Numeric words need four digits (shorter ones are everyday numbers, and runs of five or
    more are scrubbed by pattern anyway); generic words in :data:`STOP_WORDS` are skipped.
    """
    words: set[str] = set()
    for value in values:
        for word in _WORD_SPLIT.split(value):
            upper = word.upper()
            if len(upper) < min_length or upper in STOP_WORDS:
                continue
            if upper.isdigit() and len(upper) < 4:
                continue
            words.add(upper)
    return frozenset(words)


def _word_regex(words: frozenset[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


class TextCleaner:
    """Scrubs free text of the identifying words of one instance and of PHI-shaped patterns."""

    def __init__(self, words: frozenset[str]) -> None:
        self._word_re = _word_regex(words)

    def clean(self, text: str) -> str:
        """Return ``text`` with identifying words and patterns replaced by ``***``."""
        if not text:
            return text
        cleaned = _PATTERN_RE.sub(REDACTED, text)
        if self._word_re is not None:
            cleaned = self._word_re.sub(REDACTED, cleaned)
        return cleaned


__all__ = ["REDACTED", "STOP_WORDS", "TextCleaner", "identifying_words"]

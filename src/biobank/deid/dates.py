"""Shifting DA, DT and TM values by a whole number of days (PS3.15 E.3.6, Modified Dates).

Dates move by the patient's offset; the clock time of day is kept, so a DA+TM pair such as
StudyDate/StudyTime and a DT such as AcquisitionDateTime stay consistent with each other and
intervals within a patient are preserved exactly. Precision is preserved (``2024`` stays a
year, ``202403`` a month; a partial value is shifted from the first day of its period), so are
fractions and UTC offsets of DT values. Ranges (``A-B``) shift both ends. A value that does not
parse is never passed through: :func:`shift_value` raises :class:`UnparseableDate` and the
engine removes the element.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

_DA = re.compile(r"^(\d{4})(\d{2})?(\d{2})?$")
# YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?$")
_TM = re.compile(r"^(\d{2})(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
# Legacy ACR-NEMA forms sometimes found in old files.
_DA_LEGACY = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})$")
_TM_LEGACY = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,6})?)?$")


class UnparseableDate(ValueError):  # noqa: N818 - a value condition, not an error tree member
    """A DA/DT/TM value that cannot be read as a date or time."""


def _shift_ymd(year: str, month: str | None, day: str | None, days: int) -> str:
    base = dt.date(int(year), int(month or 1), int(day or 1))
    try:
        moved = base + dt.timedelta(days=days)
    except OverflowError:
        raise UnparseableDate("date out of range after shifting") from None
    if day is not None:
        return moved.strftime("%Y%m%d")
    if month is not None:
        return moved.strftime("%Y%m")
    return f"{moved.year:04d}"


def shift_da(value: str, days: int) -> str:
    """Shift one DA value (``YYYYMMDD``, partial, legacy ``YYYY.MM.DD``) by ``days``."""
    text = value.strip()
    legacy = _DA_LEGACY.match(text)
    if legacy:
        text = "".join(legacy.groups())
    match = _DA.match(text)
    if not match:
        raise UnparseableDate("not a DA value")
    try:
        return _shift_ymd(match.group(1), match.group(2), match.group(3), days)
    except ValueError as exc:  # month 13, day 32...
        raise UnparseableDate("invalid calendar date") from exc


def shift_dt(value: str, days: int) -> str:
    """Shift one DT value by ``days``, keeping precision, time, fraction and UTC offset."""
    text = value.strip()
    match = _DT.match(text)
    if not match:
        raise UnparseableDate("not a DT value")
    year, month, day, clock, offset = match.groups()
    if month is None and clock is not None:
        raise UnparseableDate("not a DT value")
    if clock is not None:
        hours = int(clock[0:2])
        minutes = int(clock[2:4]) if len(clock) >= 4 else 0
        seconds = int(clock[4:6]) if len(clock) >= 6 else 0
        if hours > 23 or minutes > 59 or seconds > 60:
            raise UnparseableDate("invalid time in DT value")
    if offset is not None:
        hours_off, minutes_off = int(offset[1:3]), int(offset[3:5])
        if hours_off > 14 or minutes_off > 59:
            raise UnparseableDate("invalid UTC offset in DT value")
    try:
        shifted = _shift_ymd(year, month, day, days)
    except ValueError as exc:
        raise UnparseableDate("invalid calendar date") from exc
    return shifted + (clock or "") + (offset or "")


def check_tm(value: str) -> str:
    """Validate one TM value (kept as is under a day shift); return it normalised."""
    text = value.strip()
    legacy = _TM_LEGACY.match(text)
    if legacy:
        text = legacy.group(1) + legacy.group(2) + (legacy.group(3) or "") + (legacy.group(4) or "")
    match = _TM.match(text)
    if not match:
        raise UnparseableDate("not a TM value")
    hours = int(text[0:2])
    minutes = int(text[2:4]) if len(text) >= 4 else 0
    seconds = int(text[4:6]) if len(text) >= 6 else 0
    if hours > 23 or minutes > 59 or seconds > 60:
        raise UnparseableDate("invalid TM value")
    return text


def _shift_range(value: str, days: int, func: Callable[[str, int], str]) -> str:
    parts = value.split("-")
    if len(parts) == 2:
        left, right = parts
        return "-".join(func(p, days) if p.strip() else "" for p in (left, right))
    raise UnparseableDate("not a range")


def shift_value(vr: str, value: str, days: int) -> str:
    """Shift one single value of VR ``DA``, ``DT`` or ``TM``; raise on anything unparseable."""
    if vr == "DA":
        if "-" in value.strip():
            return _shift_range(value, days, shift_da)
        return shift_da(value, days)
    if vr == "DT":
        try:
            return shift_dt(value, days)
        except UnparseableDate:
            # A DT range "A-B" (query style); a DT with a negative UTC offset parsed above.
            if value.count("-") in (1, 2, 3):
                for idx in [i for i, ch in enumerate(value) if ch == "-"]:
                    left, right = value[:idx], value[idx + 1 :]
                    try:
                        return "-".join(
                            shift_dt(p, days) if p.strip() else "" for p in (left, right)
                        )
                    except UnparseableDate:
                        continue
            raise
    if vr == "TM":
        if "-" in value:
            return "-".join(check_tm(p) if p.strip() else "" for p in value.split("-", 1))
        return check_tm(value)
    raise UnparseableDate(f"VR {vr} is not a date or time")


__all__ = ["UnparseableDate", "check_tm", "shift_da", "shift_dt", "shift_value"]

"""The checks an instance must pass before it is stored: identity and pixel data integrity.

De-identification (site) or the de-identification check (central) comes first; these checks
then make sure the catalogue can index the instance and a reader can decode it. Each problem
says what is wrong and what to do, and names attributes, never their values (which may be PHI
on the way in).
"""

from __future__ import annotations

import re

from pydicom import Dataset

from biobank.dicom.values import elements, encodings_of, read_int, read_strings

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_REQUIRED_UIDS = (
    (0x00080016, "SOPClassUID (0008,0016)"),
    (0x00080018, "SOPInstanceUID (0008,0018)"),
    (0x0020000D, "StudyInstanceUID (0020,000D)"),
    (0x0020000E, "SeriesInstanceUID (0020,000E)"),
)
_PIXEL_DATA = 0x7FE00010
#: Transfer syntaxes whose pixel data are not encapsulated (native).
_NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})
_NATIVE = _NATIVE | frozenset({"1.2.840.10008.1.2.1.99"})
_EXPORT_AGAIN = "export the instance again from the source system"


def check_uid(value: str) -> str | None:
    """Why ``value`` is not a valid UID (PS3.5 §9.1), or None."""
    if not value:
        return "is empty"
    if len(value) > 64:
        return f"is {len(value)} characters long (at most 64)"
    if not _UID.match(value):
        return "is not a UID (digits and dots, no leading zeros in a component)"
    return None


def validate_instance(ds: Dataset, transfer_syntax_uid: str) -> list[str]:
    """Return the problems that keep ``ds`` from being stored (empty: it can be stored)."""
    problems: list[str] = []
    uids: dict[int, str] = {}
    for tag, name in _REQUIRED_UIDS:
        values = read_strings(ds, tag, "UI", [])
        value = values[0].rstrip("\x00 ") if values else ""
        if not value:
            problems.append(f"{name} is missing; {_EXPORT_AGAIN}")
            continue
        why = check_uid(value)
        if why:
            problems.append(f"{name} {why}; {_EXPORT_AGAIN} or fix the sending system")
        uids[tag] = value
    sop = uids.get(0x00080018)
    if sop and sop in (uids.get(0x0020000D), uids.get(0x0020000E)):
        problems.append(
            "SOPInstanceUID (0008,0018) equals the study or series UID; the sending system "
            "assigns UIDs wrongly — fix it and export again"
        )
    if not read_strings(ds, 0x00100020, "LO", encodings_of(ds)):
        problems.append("PatientID (0010,0020) is missing or empty; the study cannot be filed")
    problems.extend(_pixel_problems(ds, transfer_syntax_uid))
    return problems


def _pixel_problems(ds: Dataset, transfer_syntax_uid: str) -> list[str]:
    elem = elements(ds).get(_PIXEL_DATA)
    if elem is None:
        return []
    value = elem.value
    if value is None or not isinstance(value, bytes | bytearray | memoryview):
        return [f"PixelData (7FE0,0010) has no readable value; {_EXPORT_AGAIN}"]
    rows = read_int(ds, 0x00280010, 0)
    columns = read_int(ds, 0x00280011, 0)
    if rows <= 0 or columns <= 0:
        return ["Rows/Columns (0028,0010/0011) are missing or zero although there is pixel data"]
    if transfer_syntax_uid not in _NATIVE:
        return [] if len(value) else [f"PixelData (7FE0,0010) is empty; {_EXPORT_AGAIN}"]
    bits = read_int(ds, 0x00280100, 0)
    if bits not in (1, 8, 16, 32, 64):
        return [f"BitsAllocated (0028,0100) is {bits}, not 1, 8, 16, 32 or 64"]
    samples = max(read_int(ds, 0x00280002, 1), 1)
    frames = max(read_int(ds, 0x00280008, 1), 1)
    pixels = rows * columns * samples * frames
    expected = (pixels + 7) // 8 if bits == 1 else pixels * (bits // 8)
    if len(value) < expected:
        return [
            f"PixelData (7FE0,0010) is truncated: {len(value)} bytes for {frames} frame(s) of "
            f"{rows}×{columns}×{samples} at {bits} bits ({expected} bytes expected); the file "
            f"was cut short — {_EXPORT_AGAIN}"
        ]
    return []


__all__ = ["check_uid", "validate_instance"]

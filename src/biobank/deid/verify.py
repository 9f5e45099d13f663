"""The engine's check of its own work: no identifying input value in the output header.

After an instance is de-identified and encoded, every identifying value the engine read from
the input (names, IDs, accession, addresses, institution, dates as written…) is searched for
in the output bytes before the pixel data. A hit means the profile missed something; the
caller quarantines the item, and the message names the attribute where the value was found —
never the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom import Dataset

from biobank.dicom.values import elements

_PIXEL_DATA = 0x7FE00010
_MIN_CHECK_LENGTH = 4  # shorter values are too common to prove a leak (e.g. "CT", "M")
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST"})
_STRING_VRS = _STRING_VRS | frozenset({"TM", "UC", "UI", "UR", "UT"})


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


__all__ = ["residual_phi"]

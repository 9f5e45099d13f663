"""Evidence written into a de-identified instance, and its rebuilt file meta.

PS3.15 E.1.1 asks a de-identifier to say what it did: Patient Identity Removed,
De-identification Method and its code sequence with the CID 7050 codes of the options
applied, and (E.3.6) whether dates were modified. The file meta is rebuilt from the new data
set so that no source UID or AE title survives in group 0002.
"""

from __future__ import annotations

import struct
from functools import cache

from pydicom import Dataset, Sequence
from pydicom.dataset import FileMetaDataset

import biobank
from biobank.deid.models import BASIC_PROFILE_CODE, BASIC_PROFILE_MEANING, Option, Profile
from biobank.dicom.io import fast_path
from biobank.dicom.values import read_strings, store_raw, store_strings

#: Our implementation class UID: 2.25 + a fixed 128-bit number chosen for Imaging Biobank.
IMPLEMENTATION_CLASS_UID = "2.25.176813417604183957414113384931283416117"
IMPLEMENTATION_VERSION_NAME = f"BIOBANK_{biobank.__version__}"[:16]

_HEADER = struct.Struct("<HH2sH")


def write_identity_evidence(
    ds: Dataset, pseudonym: str, profile: Profile, encodings: list[str]
) -> None:
    """Write the pseudonym as Patient's Name and ID, Patient Identity Removed and E.3.6 state."""
    store_strings(ds, 0x00100010, "PN", [pseudonym], encodings)  # PatientName
    store_strings(ds, 0x00100020, "LO", [pseudonym], encodings)  # PatientID
    store_strings(ds, 0x00120062, "CS", ["YES"], encodings)  # PatientIdentityRemoved
    if profile.shifts_dates:
        state = "MODIFIED"
    elif profile.keeps_full_dates:
        state = "UNMODIFIED"
    else:
        state = "REMOVED"
    # LongitudinalTemporalInformationModified
    store_strings(ds, 0x00280303, "CS", [state], encodings)


def method_codes(profile: Profile, pixel_cleaned: bool) -> list[tuple[str, str]]:
    """CID 7050 (code, meaning) pairs of what was applied.

    Basic, each option of the profile, and 113101 (Clean Pixel Data) only when pixels were
    actually cleaned.
    """
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


def write_method(
    ds: Dataset, profile: Profile, key_id: str, encodings: list[str], *, pixel_cleaned: bool
) -> list[str]:
    """Write De-identification Method and its code sequence (CID 7050); return the codes."""
    codes = method_codes(profile, pixel_cleaned)
    if pixel_cleaned:
        store_strings(ds, 0x00280301, "CS", ["NO"], encodings)  # BurnedInAnnotation, after
    if fast_path(ds):
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
        f"PS3.15 E.1-1 profile {profile.name}"[:64],
        f"key {key_id}",
    ]
    store_strings(ds, 0x00120063, "LO", method, encodings)  # DeidentificationMethod
    return [value for value, _ in codes]


def rebuild_file_meta(ds: Dataset, sop_class_uid: str) -> None:
    """Rebuild the file meta from the new dataset (no source AE title, our implementation).

    The elements are stored raw, so the fast encoder writes them without pydicom's writer.
    """
    old = getattr(ds, "file_meta", None)
    values = read_strings(old, 0x00020010, "UI", []) if old is not None else []
    syntax = values[0].strip() if values else ""
    if not syntax:
        # A raw data set without file meta: keep the encoding it was read with.
        implicit = bool(getattr(ds, "original_encoding", (False, True))[0])
        syntax = "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1"
    sop_instance = read_strings(ds, 0x00080018, "UI", [])
    meta = FileMetaDataset()
    store_raw(meta, 0x00020001, "OB", b"\x00\x01")
    store_strings(meta, 0x00020002, "UI", [sop_class_uid], [])
    store_strings(meta, 0x00020003, "UI", [sop_instance[0] if sop_instance else ""], [])
    store_strings(meta, 0x00020010, "UI", [syntax], [])
    store_strings(meta, 0x00020012, "UI", [IMPLEMENTATION_CLASS_UID], [])
    store_strings(meta, 0x00020013, "SH", [IMPLEMENTATION_VERSION_NAME], ["iso8859"])
    ds.file_meta = meta


__all__ = [
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "method_codes",
    "rebuild_file_meta",
    "write_identity_evidence",
    "write_method",
]

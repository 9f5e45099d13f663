"""A fast reader for the common case: a DICOM file in an explicit VR little endian encoding.

Why not just ``pydicom.dcmread``: its reader is general (implicit VR, big endian, deflate,
deferred reads, callbacks) and costs about 5 µs per element plus a fixed cost per file, which
is most of a de-identifier's budget at thousands of files per second. This reader does the
same thing for explicit VR little endian data sets only (every native and compressed transfer
syntax but Implicit VR, Big Endian and Deflate): it walks the top-level elements with
``struct`` and yields the objects pydicom yields — ``RawDataElement`` values left
undecoded, undefined-length values read with its ``read_undefined_length_value`` — with one
difference: an undefined-length sequence is also left undecoded (its end found by scanning
the items), where pydicom decodes it at once. pydicom decodes it on first access just the
same, and a sequence the de-identifier removes is never decoded. Anything else (no ``DICM``
prefix, another encoding, a truncated or odd file) returns None and the caller uses pydicom,
so errors are reported the way pydicom reports them. Equivalence with ``dcmread`` is tested
element by element on every test file.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.fileutil import read_undefined_length_value
from pydicom.tag import BaseTag, SequenceDelimiterTag
from pydicom.values import convert_string

_LONG = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_SHORT = frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    }
)  # fmt: skip
#: Transfer syntaxes whose data set is not explicit VR little endian.
_OTHER_ENCODINGS = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def parse_file(data: bytes) -> FileDataset | None:
    """Parse a DICOM file held in ``data``; None when pydicom's general reader is needed."""
    if len(data) < 144 or data[128:132] != b"DICM":
        return None
    meta: dict[BaseTag, RawDataElement | DataElement] = {}
    pos = 132
    size = len(data)
    while pos + 8 <= size and _U16.unpack_from(data, pos)[0] == 0x0002:
        parsed = _header(data, pos, size)
        if parsed is None:
            return None
        tag, vr, length, start = parsed
        if length == 0xFFFFFFFF or start + length > size:
            return None
        key = BaseTag(tag)
        meta[key] = RawDataElement(
            key, vr, length, data[start : start + length], start, False, True
        )
        pos = start + length
    syntax_elem = meta.get(BaseTag(0x00020010))
    if syntax_elem is None or not syntax_elem.value:
        return None
    syntax = syntax_elem.value.decode("ascii", "replace").rstrip("\x00 ")
    if syntax in _OTHER_ENCODINGS:
        return None

    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    encoding: str | list[str] = default_encoding
    while pos < size:
        parsed = _header(data, pos, size)
        if parsed is None:
            return None
        tag, vr, length, start = parsed
        key = BaseTag(tag)
        if length == 0xFFFFFFFF:
            if vr in ("SQ", "UN"):
                # Kept undecoded, like a defined-length sequence: pydicom decodes it on first
                # access, and a sequence the profile removes is never decoded at all.
                end = _sequence_end(data, start, size)
                if end is None:
                    return None
                value_end = end - 8  # without the Sequence Delimitation Item
                elements[key] = RawDataElement(
                    key, "SQ", length, data[start:value_end], start, False, True
                )
                pos = end
                continue
            fp = DicomBytesIO(data)
            fp.is_little_endian = True
            fp.is_implicit_VR = False
            fp.seek(start)
            raw = read_undefined_length_value(
                fp,  # type: ignore[arg-type]  # DicomBytesIO is the file-like pydicom uses
                True,
                SequenceDelimiterTag,
                None,
            )
            elements[key] = RawDataElement(key, vr, length, raw, start, False, True)
            pos = fp.tell()
            continue
        end = start + length
        if end > size:
            return None  # truncated: let pydicom say so
        value: Any = data[start:end] if length else empty_value_for_VR(vr, raw=True)
        if tag == 0x00080005:
            encoding = convert_encodings(convert_string(value or b"", True))
        elements[key] = RawDataElement(key, vr, length, value, start, False, True)
        pos = end

    dataset = Dataset(elements)
    dataset.set_original_encoding(False, True, encoding)
    file_dataset = FileDataset(
        "", dataset, preamble=data[:128], file_meta=FileMetaDataset(meta),
        is_implicit_VR=False, is_little_endian=True,
    )  # fmt: skip
    file_dataset.set_original_encoding(False, True, dataset._character_set)
    return file_dataset


def _sequence_end(data: bytes, pos: int, size: int) -> int | None:
    """Return the offset after the delimiter of an undefined-length sequence, or None.

    ``pos`` is where its items start (explicit VR little endian); None when the bytes do
    not add up, and the caller falls back to pydicom's reader.
    """
    while pos + 8 <= size:
        group, element = _TAG.unpack_from(data, pos)
        length = _U32.unpack_from(data, pos + 4)[0]
        if (group, element) == (0xFFFE, 0xE0DD):
            return pos + 8
        if (group, element) != (0xFFFE, 0xE000):
            return None
        if length != 0xFFFFFFFF:
            pos += 8 + length
            continue
        end = _item_end(data, pos + 8, size)
        if end is None:
            return None
        pos = end
    return None


def _item_end(data: bytes, pos: int, size: int) -> int | None:
    """Return the offset just after the delimiter of an undefined-length item."""
    while pos + 8 <= size:
        group, element = _TAG.unpack_from(data, pos)
        if (group, element) == (0xFFFE, 0xE00D):
            return pos + 8
        parsed = _header(data, pos, size)
        if parsed is None:
            return None
        _, vr, length, start = parsed
        if length == 0xFFFFFFFF:
            end = _sequence_end(data, start, size) if vr in ("SQ", "UN") else None
            if end is None:
                return None
            pos = end
        else:
            pos = start + length
    return None


def _header(data: bytes, pos: int, size: int) -> tuple[int, str, int, int] | None:
    """Return (tag, VR, length, value offset) of the element at ``pos``, or None."""
    if pos + 8 > size:
        return None
    group, element = _TAG.unpack_from(data, pos)
    vr = data[pos + 4 : pos + 6]
    if vr in _SHORT:
        return group << 16 | element, vr.decode(), _U16.unpack_from(data, pos + 6)[0], pos + 8
    if vr in _LONG:
        if pos + 12 > size:
            return None
        return group << 16 | element, vr.decode(), _U32.unpack_from(data, pos + 8)[0], pos + 12
    return None


__all__ = ["parse_file"]

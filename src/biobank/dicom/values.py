"""Reading and writing string values straight from and to encoded bytes.

pydicom decodes an element on first access (``RawDataElement`` → ``DataElement``), which costs
tens of microseconds each, and writes decoded elements through its general writer, which
costs as much again. A de-identifier touches a few dozen string elements per instance at
thousands of instances per second, so these helpers work on the raw bytes instead: decode with
the data set's character set (pydicom's own ``decode_bytes``/``encode_string``), change, and
store the new value as a ``RawDataElement`` that every writer emits verbatim. Elements that
are already decoded (data sets built in memory) are read through their values as usual.
"""

from __future__ import annotations

import struct
from typing import Any

from pydicom import Dataset
from pydicom.charset import convert_encodings, decode_bytes, default_encoding, encode_string
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

#: VRs whose values are decoded with the Specific Character Set.
TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
#: VRs that hold a single value (a backslash is text, not a separator).
SINGLE_VALUE_VRS = frozenset({"LT", "ST", "UT", "UR"})
_PN_DELIMITERS = {0x5C, 0x3D, 0x5E}
_DELIMITERS = {0x5C}


def elements(ds: Dataset) -> dict[int, Any]:
    """The data set's element dict keyed by tag (``BaseTag`` is an ``int``; lookups agree)."""
    return ds._dict  # type: ignore[return-value]


def encodings_of(ds: Dataset, inherited: list[str] | None = None) -> list[str]:
    """Python codecs for the data set's Specific Character Set (or the inherited ones)."""
    elem = elements(ds).get(0x00080005)
    if elem is None:
        return inherited or [default_encoding]
    if type(elem) is RawDataElement:
        raw = elem.value or b""
        terms = [t.strip() for t in raw.decode("latin-1").rstrip("\x00 ").split("\\")]
    else:
        value = elem.value
        terms = [str(v) for v in value] if isinstance(value, MultiValue | list) else [str(value)]
    # An empty first value means the default repertoire (ISO-IR 6): keep it in place.
    return list(convert_encodings(terms if any(terms) else [""]))


def vr_of(ds: Dataset, tag: int) -> str:
    """The element's VR: as encoded (explicit VR), else from the dictionary; ``UN`` if unknown."""
    return element_vr(elements(ds)[tag], tag)


def element_vr(elem: Any, tag: int) -> str:
    """The VR of ``elem`` (raw or decoded) with tag ``tag``; see :func:`vr_of`."""
    vr = elem.VR
    if vr is None or vr == "UN":
        if tag >> 16 & 1:
            return "UN"
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    text = str(vr)
    return text.split(" or ")[0] if " or " in text else text


def read_strings(ds: Dataset, tag: int, vr: str, encodings: list[str]) -> list[str]:
    """Return the element's values as strings (empty list when absent or empty).

    Multi-valued elements give one string per value (empty values kept in place); padding is
    removed. Use only for string VRs.
    """
    elem = elements(ds).get(tag)
    if elem is None:
        return []
    if type(elem) is RawDataElement:
        raw = elem.value
        if not raw:
            return []
        if not isinstance(raw, bytes | bytearray):
            raw = bytes(raw)
        if vr in TEXT_VRS:
            text = decode_bytes(raw, encodings, _PN_DELIMITERS if vr == "PN" else _DELIMITERS)
        else:
            text = raw.decode("latin-1")
    else:
        value = elem.value
        if value is None or value == "":
            return []
        if isinstance(value, MultiValue | list | tuple):
            return [str(v) if v is not None else "" for v in value]
        text = str(value)
    if vr in SINGLE_VALUE_VRS:
        text = text.rstrip("\x00 ")
        return [text] if text else []
    text = text.rstrip("\x00")
    values = [v.strip() for v in text.split("\\")]
    return [] if values == [""] else values


_INT_FORMATS = {"US": ("H", 2), "SS": ("h", 2), "UL": ("I", 4), "SL": ("i", 4)}


def read_int(ds: Dataset, tag: int, default: int) -> int:
    """The first value of a US, SS, UL, SL or IS element, without decoding the element."""
    elem = elements(ds).get(tag)
    if elem is None:
        return default
    if type(elem) is RawDataElement:
        raw = elem.value or b""
        vr = vr_of(ds, tag)
        fmt = _INT_FORMATS.get(vr)
        if fmt is not None:
            code, size = fmt
            if len(raw) < size:
                return default
            order = "<" if elem.is_little_endian else ">"
            return int(struct.unpack_from(order + code, raw)[0])
        values = read_strings(ds, tag, vr, [])
        try:
            return int(float(values[0])) if values and values[0] else default
        except ValueError:
            return default
    value = elem.value
    if isinstance(value, MultiValue | list):
        value = value[0] if value else None
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def read_keyword(ds: Dataset, keyword: str) -> list[str]:
    """The values of a string element named by keyword, without decoding the element."""
    tag = tag_for_keyword(keyword)
    if tag is None or tag not in elements(ds):
        return []
    return read_strings(ds, tag, vr_of(ds, tag), encodings_of(ds))


def store_strings(ds: Dataset, tag: int, vr: str, values: list[str], encodings: list[str]) -> None:
    """Replace the element's value with ``values``, encoded now and kept as raw bytes."""
    text = "\\".join(values)
    data = encode_string(text, encodings) if vr in TEXT_VRS else text.encode("ascii", "replace")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    key = BaseTag(tag)
    elements(ds)[key] = RawDataElement(key, vr, len(data), data, 0, False, True)


def store_raw(ds: Dataset, tag: int, vr: str, data: bytes) -> None:
    """Store already encoded little-endian bytes (even length) as the element's value."""
    key = BaseTag(tag)
    elements(ds)[key] = RawDataElement(key, vr, len(data), data, 0, False, True)


__all__ = [
    "SINGLE_VALUE_VRS",
    "TEXT_VRS",
    "element_vr",
    "elements",
    "encodings_of",
    "read_int",
    "read_keyword",
    "read_strings",
    "store_raw",
    "store_strings",
    "vr_of",
]

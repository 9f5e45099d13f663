"""The DICOM JSON model (PS3.18 Annex F) of a data set's header, written from the encoded bytes.

Why not ``Dataset.to_json_dict``: pydicom first converts every element into a ``DataElement``
(value objects, validation, multi-value wrappers) and then into a dict that ``json.dumps``
walks again, about 13 µs per element — as much as the whole de-identification of an
instance. The catalogue stores the header of every instance as DICOM JSON, so
:func:`header_json` reads the undecoded ``RawDataElement`` bytes that
:mod:`biobank.dicom.parse` (and pydicom's own reader) leave in the data set and writes the
JSON text straight from them: strings decoded with the data set's Specific Character Set
(pydicom's ``decode_bytes``), numbers with ``struct``, ``int()`` and ``float()``, sequence
items read from the bytes. Anything less common — an element whose VR the data dictionary
cannot settle (private without an explicit VR, ambiguous, UN), implicit VR items, a value
that does not decode — goes through pydicom's own element conversion, so the result is what
pydicom would produce. Implicit VR and big endian data sets take the same paths (VRs from
the dictionary, numbers in the data set's byte order); elements already decoded (data sets
built in memory) are written from their values.

The result equals ``Dataset.to_json_dict`` with a bulk data handler, element by element
(tested on every test file of pydicom, pydicom-data and deid-data and on the de-identifier's
output for them), except where pydicom's output is not the DICOM JSON model of PS3.18 F.2 or
where pydicom raises. There this module follows the standard:

1. Group Length (gggg,0000) elements are left out (F.2.2), and so are File Meta (0002,xxxx)
   elements held in the data set itself (they describe the file, not the data set);
   pydicom writes both when the data set holds them.
2. An empty value in a multi-valued element is ``null`` (F.2.5: "represented as null array
   elements"); pydicom writes ``""`` for strings and raises for IS, DS and PN.
3. An empty sequence has no "Value" (F.2.5: an attribute without a value has no "Value");
   pydicom writes ``"Value": []``. An empty item is ``{}`` in both.
4. Only the non-empty component groups of a person name are written (F.2.2); pydicom writes
   ``"Alphabetic": ""`` for ``=山田^太郎`` and an empty ``"Ideographic"`` for ``A^B==a^b``.
5. An IS or DS value that is not a number (``"1,5"``, ``"abc"``, ``"1.5"`` as IS) or not a
   finite one (``"NaN"``, ``"1e999"``) is written as the JSON string of its text, which
   F.2.3 allows for IS and DS ("Number or String"); pydicom raises, truncates an IS of
   ``1.5`` to ``1``, or writes ``NaN``, which is not JSON (RFC 8259).
6. An FL or FD value that is NaN or infinite is ``null``: F.2.3 allows only a Number and JSON
   has no such numbers; pydicom writes ``NaN``/``Infinity``.
7. An AT value whose length is not a multiple of 4: its whole tags are written (pydicom
   raises).
8. Pixel Data, Float Pixel Data and Double Float Pixel Data (7FE0,0010/0008/0009), at any
   depth (icons too), are always bulk data; pydicom inlines them when they are small.
9. An element that cannot be converted at all (a US value of 3 bytes, a sequence whose items
   do not parse) is written as ``{"vr": VR}`` and the rest of the header is still written;
   pydicom raises.
10. A VR that pydicom leaves ambiguous (``"US or SS"`` when no Pixel Representation settles
    it) is written as its first alternative, or as OW/OB when the value is bytes: "vr" is
    one VR (F.2.3).

Bulk data (F.2.6): a value of VR OB, OD, OF, OL, OV, OW or UN whose base64 form would be
longer than ``bulk_data_threshold`` characters (more than ``threshold // 4 * 3`` bytes, the
rule of pydicom's ``to_json_dict``), and pixel data of any size, is replaced with
``{"vr": VR, "BulkDataURI": "bulk/GGGGEEEE"}``, a relative placeholder for the store to
resolve. Inside sequences the URI is the path to the element, tag and item index in turn:
``bulk/00880200/0/7FE00010`` is the Pixel Data of the first item of the Icon Image Sequence.
Smaller binary values are written inline as base64 (F.2.7), as stored: a big endian value is
not byte-swapped, as in pydicom.

Settings of ``pydicom.config`` that change the Python types of values
(``datetime_conversion``, ``use_DS_numpy``, ``use_DS_decimal``) do not change the output.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable, Iterable, MutableSequence, Sequence
from functools import lru_cache
from json.encoder import encode_basestring  # the C function json.dumps uses
from typing import Any

from pydicom import Dataset
from pydicom.charset import convert_encodings, decode_bytes, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.multival import MultiValue
from pydicom.tag import _LUT_DESCRIPTOR_TAGS, BaseTag
from pydicom.valuerep import AMBIGUOUS_VR, TEXT_VR_DELIMS, PersonName
from pydicom.values import convert_PN

from biobank.dicom.values import elements

#: Pixel Data, Float Pixel Data, Double Float Pixel Data: always bulk data.
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
#: VRs whose value is binary: written as InlineBinary or BulkDataURI (F.2.6, F.2.7).
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})


def header_json(ds: Dataset, *, bulk_data_threshold: int = 1024, bulk_prefix: str = "bulk/") -> str:
    """The DICOM JSON model (PS3.18 F.2) of ``ds`` as a compact JSON string, bulk data excluded.

    Keys are in ascending tag order, text is UTF-8 (not escaped), no whitespace.
    Binary values longer than ``bulk_data_threshold // 4 * 3`` bytes (base64 longer than the
    threshold) and pixel data become ``BulkDataURI`` placeholders (``bulk/GGGGEEEE``). Equal
    to pydicom's ``ds.to_json_dict`` but for the divergences listed in the module
    documentation, where this follows the standard. Never raises on odd data: an element
    that cannot be converted is written as ``{"vr": VR}``. ``ds`` is not changed, but
    pydicom may cache the decoded form of an element it is asked to convert.
    """
    return _Writer(bulk_data_threshold // 4 * 3).dataset(ds, bulk_prefix)


def header_dict(ds: Dataset, *, bulk_data_threshold: int = 1024) -> dict[str, Any]:
    """:func:`header_json` parsed: the DICOM JSON model of ``ds`` as a dict."""
    parsed: dict[str, Any] = json.loads(header_json(ds, bulk_data_threshold=bulk_data_threshold))
    return parsed


class _Writer:
    """Writes the JSON text of a data set and its items with one bulk data limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # the largest binary value written inline, in bytes

    def dataset(self, ds: Dataset, prefix: str) -> str:
        """The JSON object of ``ds``; ``prefix`` starts the BulkDataURI of its elements."""
        elems = elements(ds)
        parts: list[str] = []
        encodings = _encodings(ds)
        # Plain ints: a BaseTag compares in Python, a thousand times per instance.
        for tag, elem in sorted(zip(map(int, elems), elems.values(), strict=True)):
            if not tag & 0xFFFF or tag >> 16 == 0x0002:
                continue  # Group Length (F.2.2) and file meta
            text: str | None = None
            if type(elem) is RawDataElement:
                _, raw_vr, length, value, _, implicit, little = elem[:7]  # one step
                if value is None and length:
                    text = self.fallback(ds, tag, elem, prefix)  # a deferred read
                    parts.append(f'"{tag:08X}":{text}')
                    continue
                vr: str = raw_vr or _dictionary_vr(tag) or "UN"
                convert = _CONVERTERS.get(vr)
                if convert is not None and tag not in _LUT_DESCRIPTORS:  # the common case
                    if not value:
                        text = _EMPTY[vr]
                    else:
                        try:
                            text = convert(vr, value, little, encodings)
                        except Exception:  # noqa: BLE001 - odd bytes: pydicom decides
                            text = None
                    if text is not None:
                        parts.append(f'"{tag:08X}":{text}')
                        continue
                elif vr == "SQ" and not implicit and little:
                    text = self.sequence(value or b"", encodings, f"{prefix}{tag:08X}/")
                else:
                    text = self.convert(tag, vr, value or b"", little, encodings, prefix)
            if text is None:  # not undecoded, or odd: pydicom converts it
                text = self.fallback(ds, tag, elem, prefix)
            parts.append(f'"{tag:08X}":{text}')
        return "{" + ",".join(parts) + "}"

    def convert(
        self, tag: int, vr: str, value: bytes, little: bool, encodings: list[str], prefix: str
    ) -> str | None:
        """The JSON object of an encoded value (not SQ); None when pydicom must convert it."""
        if vr in _BINARY_FAST:
            return self.binary(tag, vr, value, prefix) if value else _EMPTY[vr]
        convert = _CONVERTERS.get(vr)
        if convert is None:
            return None  # UN (pydicom may know the VR), a sequence, an unknown VR
        if not value:
            return _EMPTY[vr]
        try:
            if tag in _LUT_DESCRIPTORS:
                return _lut_descriptor(vr, value, little)
            return convert(vr, value, little, encodings)
        except Exception:  # noqa: BLE001 - odd bytes or character set: pydicom decides
            return None

    def binary(self, tag: int, vr: str, value: bytes, prefix: str) -> str:
        """InlineBinary, or a BulkDataURI placeholder for pixel data and large values."""
        if tag in PIXEL_DATA_TAGS or len(value) > self.limit:
            return f'{{"vr":"{vr}","BulkDataURI":{encode_basestring(f"{prefix}{tag:08X}")}}}'
        return f'{{"vr":"{vr}","InlineBinary":"{base64.b64encode(value).decode("ascii")}"}}'

    def sequence(self, data: bytes, encodings: list[str], path: str) -> str | None:
        """The JSON object of an explicit VR little endian SQ value; None if odd.

        Reads the items straight from the bytes, as pydicom's ``read_sequence`` would (it
        builds a Dataset per item, most of the cost of a header). Anything this reader does
        not expect (a VR of UN, implicit VR items, lengths that do not add up) gives None,
        and pydicom decodes the whole sequence instead.
        """
        parsed = self.items(data, 0, len(data), encodings, path)
        if parsed is None or parsed[1] != len(data):
            return None
        return _sequence(parsed[0])

    def items(
        self, data: bytes, pos: int, end: int, encodings: list[str], path: str
    ) -> tuple[list[str], int] | None:
        """Items from ``pos`` to ``end`` or to a Sequence Delimitation Item, and where next."""
        out: list[str] = []
        while pos < end:
            if pos + 8 > end:
                return None
            group, element, length = _ITEM.unpack_from(data, pos)
            pos += 8
            if group != 0xFFFE:
                return None
            if element == 0xE0DD:
                return out, pos
            if element != 0xE000:
                return None
            undefined = length == 0xFFFFFFFF
            stop = end if undefined else pos + length
            if stop > end:
                return None
            parsed = self.item(data, pos, stop, undefined, encodings, f"{path}{len(out)}/")
            if parsed is None:
                return None
            item, pos = parsed
            out.append(item)
        return out, pos

    def item(
        self, data: bytes, pos: int, end: int, undefined: bool, encodings: list[str], path: str
    ) -> tuple[str, int] | None:
        """One item's JSON object (keys ascending) and the offset after it; None if odd."""
        parts: list[tuple[int, str]] = []
        text_seen = False
        while True:
            if pos + 8 > end:
                if pos != end or undefined:
                    return None
                break
            group, element = _TAG.unpack_from(data, pos)
            if group == 0xFFFE:
                if undefined and element == 0xE00D:
                    pos += 8
                    break
                return None
            vr = _VR_NAMES.get(data[pos + 4 : pos + 6])
            if vr is None:
                return None  # implicit VR in the item, or a VR pydicom must settle
            if vr in _SHORT_VRS:
                length = _U16.unpack_from(data, pos + 6)[0]
                start = pos + 8
            else:
                if pos + 12 > end:
                    return None
                length = _U32.unpack_from(data, pos + 8)[0]
                start = pos + 12
            tag = group << 16 | element
            key = f"{tag:08X}"
            text: str | None
            if length == 0xFFFFFFFF:
                if vr != "SQ":
                    return None
                parsed = self.items(data, start, end, encodings, f"{path}{key}/")
                if parsed is None:
                    return None
                text = _sequence(parsed[0])
                pos = parsed[1]
            else:
                pos = start + length
                if pos > end:
                    return None
                if vr == "SQ":
                    parsed = self.items(data, start, pos, encodings, f"{path}{key}/")
                    if parsed is None or parsed[1] != pos:
                        return None
                    text = _sequence(parsed[0])
                else:
                    if tag == 0x00080005:
                        item_encodings = _item_encodings(data[start:pos])
                        if text_seen or item_encodings is None:
                            return None  # text before its character set, odd terms: pydicom
                        encodings = item_encodings
                    elif vr in _CHARSET_VRS:
                        text_seen = True
                    text = self.convert(tag, vr, data[start:pos], True, encodings, path)
                    if text is None:
                        return None
            if element and group != 0x0002:  # no Group Length (F.2.2), no file meta
                parts.append((tag, f'"{key}":{text}'))
        if any(parts[i][0] >= parts[i + 1][0] for i in range(len(parts) - 1)):
            parts = sorted(dict(parts).items())  # out of order or repeated: as pydicom reads
        return "{" + ",".join(part for _, part in parts) + "}", pos

    def fallback(self, ds: Dataset, tag: int, elem: Any, prefix: str) -> str:
        """Convert an element through pydicom's ``DataElement``; ``{"vr": VR}`` if that fails."""
        try:
            return self.element(tag, _decoded(ds, tag, elem), prefix)
        except Exception:  # noqa: BLE001 - an unconvertible value must not lose the header
            vr = _json_vr(elem.VR or _dictionary_vr(tag) or "UN", None)
            return _EMPTY.get(vr) or f'{{"vr":{encode_basestring(vr)}}}'

    def element(self, tag: int, elem: DataElement, prefix: str) -> str:
        """The JSON object of a decoded element, by the rules of the encoded values."""
        value = elem.value
        vr = _json_vr(str(elem.VR), value)
        if vr == "SQ":
            return _sequence(
                [
                    self.dataset(item, f"{prefix}{tag:08X}/{i}/")
                    for i, item in enumerate(value or ())
                ]
            )
        if elem.is_empty:
            return f'{{"vr":{encode_basestring(vr)}}}'
        if vr in BINARY_VRS:
            return self.binary(tag, vr, bytes(value), prefix)
        values: Iterable[Any] = value if elem.VM > 1 else [value]
        if vr == "PN":
            names = [_person_name(v) for v in values]
            return _element(vr, [_name_json(name) for name in names])
        if vr == "AT":
            return _element(vr, [_null if v is None else f'"{int(v):08X}"' for v in values])
        convert = _DECODED.get(vr, _string)
        return _element(vr, [_number_json(convert(v)) for v in values])


# -- JSON text -----------------------------------------------------------------------------

_null = "null"


def _element(vr: str, values: list[str]) -> str:
    """``{"vr":VR,"Value":[…]}`` of JSON values; no "Value" without a value (F.2.5)."""
    if not values or len(values) == 1 and values[0] == _null:
        return _EMPTY.get(vr) or f'{{"vr":{encode_basestring(vr)}}}'
    return f'{{"vr":"{vr}","Value":[{",".join(values)}]}}'


def _sequence(items: list[str]) -> str:
    return f'{{"vr":"SQ","Value":[{",".join(items)}]}}' if items else '{"vr":"SQ"}'


def _strings(vr: str, items: list[str]) -> str:
    """A multi-valued string element; empty values are null (F.2.5)."""
    if len(items) == 1:
        text = items[0]
        return f'{{"vr":"{vr}","Value":[{encode_basestring(text)}]}}' if text else _EMPTY[vr]
    return _element(vr, [encode_basestring(v) if v else _null for v in items])


def _number_json(value: int | float | str | None) -> str:
    if value is None:
        return _null
    if isinstance(value, str):
        return str(encode_basestring(value))
    return repr(value)


# -- encoded values, by VR -----------------------------------------------------------------


def _ascii_strings(vr: str, value: bytes, little: bool, encodings: list[str]) -> str:
    """AS, CS, DA, DT, TM, UI: ISO-IR 6 (read as Latin-1, as pydicom does), multi-valued."""
    text = value.decode("latin-1").rstrip(" \x00")
    if "\\" in text:
        return _element(vr, [encode_basestring(v) if v else _null for v in text.split("\\")])
    return f'{{"vr":"{vr}","Value":[{encode_basestring(text)}]}}' if text else _EMPTY[vr]


def _text_strings(vr: str, value: bytes, little: bool, encodings: list[str]) -> str:
    """SH, LO, UC: the Specific Character Set, multi-valued, trailing spaces removed."""
    text = _decode(value, encodings)
    if "\\" in text:
        values = [v.rstrip("\x00 ") for v in text.split("\\")]
        return _element(vr, [encode_basestring(v) if v else _null for v in values])
    text = text.rstrip("\x00 ")
    return f'{{"vr":"{vr}","Value":[{encode_basestring(text)}]}}' if text else _EMPTY[vr]


def _text(vr: str, value: bytes, little: bool, encodings: list[str]) -> str:
    """ST, LT, UT: the Specific Character Set, one value (a backslash is text)."""
    text = _decode(value, encodings).rstrip("\x00 ")
    return f'{{"vr":"{vr}","Value":[{encode_basestring(text)}]}}' if text else _EMPTY[vr]


def _decode(value: bytes, encodings: list[str]) -> str:
    """Decode text as pydicom's ``decode_bytes`` does: its own shortcut, without the call.

    A value that does not decode raises, and pydicom's conversion (which warns and
    replaces the bad bytes) writes the element instead.
    """
    if b"\x1b" in value:
        return decode_bytes(value, encodings, TEXT_VR_DELIMS)
    return value.decode(encodings[0])


def _uri(vr: str, value: bytes, little: bool, encodings: list[str]) -> str:
    text = value.decode("latin-1").rstrip()
    return f'{{"vr":"UR","Value":[{encode_basestring(text)}]}}' if text else _EMPTY[vr]


def _application_entities(vr: str, value: bytes, little: bool, encodings: list[str]) -> str:
    return _strings(vr, [v.strip() for v in value.decode("latin-1").split("\\")])


def _decimal_strings(vr: str, value: bytes, little: bool, encodings: list[str]) -> str:
    values = []
    for text in value.decode("latin-1").strip().rstrip(" \x00").split("\\"):
        try:
            number = float(text)  # the common case, in one step
        except ValueError:
            number = math.nan
        values.append(
            repr(number) if math.isfinite(number) else _number_json(_decimal_string(text))
        )
    return _element(vr, values)


def _integer_strings(vr: str, value: bytes, little: bool, encodings: list[str]) -> str:
    values = []
    for text in value.decode("latin-1").rstrip(" \x00").split("\\"):
        try:
            values.append(str(int(text)))  # the common case, in one step
        except ValueError:
            values.append(_number_json(_integer_string(text)))
    return _element(vr, values)


def _binary_numbers(code: str, size: int) -> Callable[[str, bytes, bool, list[str]], str | None]:
    def convert(vr: str, value: bytes, little: bool, encodings: list[str]) -> str | None:
        count, odd = divmod(len(value), size)
        if odd:
            return None  # pydicom refuses it; so will the fallback
        numbers = struct.unpack(f"{'<' if little else '>'}{count}{code}", value)
        if code in "fd":
            return _element(vr, [repr(v) if math.isfinite(v) else _null for v in numbers])
        return f'{{"vr":"{vr}","Value":[{",".join(map(str, numbers))}]}}'

    return convert


def _lut_descriptor(vr: str, value: bytes, little: bool) -> str | None:
    """US or SS: pydicom reads the first of several values as unsigned (PS3.3 C.11.1.1)."""
    if vr not in ("US", "SS") or len(value) % 2:
        return None
    numbers = list(struct.unpack(f"{'<' if little else '>'}{len(value) // 2}{_CODES[vr]}", value))
    if len(numbers) > 1 and numbers[0] < 0:
        numbers[0] += 65536
    return f'{{"vr":"{vr}","Value":[{",".join(map(str, numbers))}]}}'


def _attribute_tags(vr: str, value: bytes, little: bool, encodings: list[str]) -> str:
    count = len(value) // 4  # whole tags only (pydicom raises on the rest)
    halves = struct.unpack(f"{'<' if little else '>'}{2 * count}H", value[: 4 * count])
    return _element(vr, [f'"{g:04X}{e:04X}"' for g, e in zip(*[iter(halves)] * 2, strict=True)])


def _person_names(vr: str, value: bytes, little: bool, encodings: list[str]) -> str:
    """PN values as objects of their non-empty component groups (F.2.2)."""
    stripped = value.rstrip(b"\x00 ")
    if stripped.isascii() and b"\x1b" not in stripped:
        # What pydicom's convert_PN gives for ASCII without code extensions, without its
        # round trip through PersonName.encode and decode.
        names = [_components(v.split("=")) for v in stripped.decode("ascii").split("\\")]
    else:
        decoded = convert_PN(stripped, encodings)  # escape sequences per component group
        names = [
            _person_name(v) for v in (decoded if isinstance(decoded, MultiValue) else [decoded])
        ]
    return _element(vr, [_name_json(name) for name in names])


_CODES = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "UV": "Q", "SV": "q", "FL": "f", "FD": "d"}
_Converter = Callable[[str, bytes, bool, list[str]], "str | None"]
#: Converters of encoded values by VR (binary VRs are written by ``_Writer.binary``).
_CONVERTERS: dict[str, _Converter] = {
    **dict.fromkeys(("AS", "CS", "DA", "DT", "TM", "UI"), _ascii_strings),
    **dict.fromkeys(("SH", "LO", "UC"), _text_strings),
    **dict.fromkeys(("ST", "LT", "UT"), _text),
    **{vr: _binary_numbers(code, struct.calcsize("=" + code)) for vr, code in _CODES.items()},
    "UR": _uri,
    "AE": _application_entities,
    "DS": _decimal_strings,
    "IS": _integer_strings,
    "AT": _attribute_tags,
    "PN": _person_names,
}
#: VRs written straight from their encoded value; UN goes to pydicom (it may know the VR).
_BINARY_FAST = BINARY_VRS - {"UN"}
_FAST_VRS = frozenset(_CONVERTERS) | _BINARY_FAST
_EMPTY = {vr: f'{{"vr":"{vr}"}}' for vr in [*_FAST_VRS, "SQ", "UN"]}
_CHARSET_VRS = frozenset({"SH", "LO", "UC", "ST", "LT", "UT", "PN"})
_LUT_DESCRIPTORS = frozenset(int(tag) for tag in _LUT_DESCRIPTOR_TAGS)
#: VRs an item may hold that this module reads (explicit VR); others go to pydicom.
_VR_NAMES = {vr.encode(): vr for vr in [*_FAST_VRS, "SQ"]}
#: VRs with a 2-byte length in explicit VR (PS3.5 7.1.2).
_SHORT_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL"}
    | {"SS", "ST", "TM", "UI", "UL", "US"}
)
_TAG = struct.Struct("<HH")
_ITEM = struct.Struct("<HHI")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def _integer_string(text: str) -> int | str | None:
    """An IS value as a number; its text when it is not an integer (F.2.3); None if empty."""
    text = text.strip()
    if not text:
        return None
    if text.lstrip("+-").isdigit():
        return int(text)
    try:
        number = float(text)  # "1.0" and "1e2" are integers, as pydicom reads them
    except ValueError:
        return text
    return int(number) if math.isfinite(number) and number.is_integer() else text


def _decimal_string(text: str) -> float | str | None:
    """A DS value as a number; its text when it is not a finite number (F.2.3); None if empty."""
    text = text.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _person_name(value: Any) -> dict[str, str] | None:
    if value is None or value == "":
        return None
    groups = value.components if isinstance(value, PersonName) else str(value).split("=")
    return _components(list(groups))


def _components(groups: Sequence[str]) -> dict[str, str] | None:
    """``{"Alphabetic": …, "Ideographic": …, "Phonetic": …}`` without empty groups (F.2.2).

    None for an empty name (``""``, ``"="``), which pydicom reads as no value.
    """
    if not any(groups[:3]):
        return None
    return {name: group for name, group in zip(_GROUPS, groups, strict=False) if group}


_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


def _name_json(name: dict[str, str] | None) -> str:
    if name is None:
        return _null
    return "{" + ",".join(f'"{k}":{encode_basestring(v)}' for k, v in name.items()) + "}"


# -- decoded values (DataElement), by VR ---------------------------------------------------


def _decoded_integer(value: Any) -> int | str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return _integer_string(value)
    if isinstance(value, float):  # pydicom's ISfloat: an IS that is not an integer
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return str(getattr(value, "original_string", "") or value)
    return int(value)


def _decoded_decimal(value: Any) -> float | str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return _decimal_string(value)
    number = float(value)
    if math.isfinite(number):
        return number
    return str(getattr(value, "original_string", "") or value)


def _decoded_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _decoded_int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _string(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(default_encoding, "replace")
    return str(value)


_DECODED: dict[str, Callable[[Any], int | float | str | None]] = {
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV"), _decoded_int),
    "IS": _decoded_integer,
    "DS": _decoded_decimal,
    "FL": _decoded_float,
    "FD": _decoded_float,
}


# -- pydicom's view of the data set --------------------------------------------------------


def _decoded(ds: Dataset, tag: int, elem: Any) -> DataElement:
    """The element as pydicom decodes it on access, without storing a decoded sequence."""
    if not isinstance(elem, RawDataElement):
        return elem  # type: ignore[no-any-return]
    if elem.value is None and elem.length:
        return ds[tag]  # a deferred read: pydicom fetches the value from the file
    if tag == 0x00080005:
        encoding: str | MutableSequence[str] = default_encoding
    else:
        encoding = ds.original_character_set or ds._character_set
    decoded = convert_raw_data_element(elem, encoding=encoding, ds=ds)
    if decoded.VR == "SQ":
        # As Dataset.__getitem__ does: items inherit Pixel Representation for US/SS.
        ds._set_pixel_representation(decoded)
    elif decoded.VR in AMBIGUOUS_VR:
        corrected = correct_ambiguous_vr_element(decoded, ds, elem.is_little_endian)
        if isinstance(corrected, DataElement):
            return corrected
    return decoded


def _encodings(ds: Dataset) -> list[str]:
    """The Python codecs pydicom decodes the data set's raw text with.

    The default repertoire when pydicom cannot say (its conversion of the text elements then
    decides, as it would without this module).
    """
    try:
        encoding = ds.original_character_set or ds._character_set
    except Exception:  # noqa: BLE001 - e.g. an unknown term with warnings as errors
        return [default_encoding]
    return [encoding] if isinstance(encoding, str) else list(encoding)


def _item_encodings(value: bytes) -> list[str] | None:
    """The codecs for an item's own Specific Character Set, as pydicom's reader finds them.

    An empty one means the default repertoire, not the parent's character set. None when
    pydicom raises (or warns, with warnings as errors): pydicom then reads the sequence.
    """
    try:
        char_set = convert_raw_data_element(
            RawDataElement(BaseTag(0x00080005), "CS", len(value), value, 0, False, True)
        ).value
        return list(convert_encodings(char_set))
    except Exception:  # noqa: BLE001 - see above
        return None


@lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    """The VR of a public tag without an explicit VR; None when pydicom must decide."""
    if tag >> 16 & 1:
        return None  # private: the VR depends on the private creator
    try:
        vr = dictionary_VR(BaseTag(tag))
    except KeyError:
        return None
    return None if " or " in vr else vr


def _json_vr(vr: str, value: Any) -> str:
    """One VR for "vr" (F.2.3): an ambiguous VR left unresolved becomes one alternative."""
    if " or " not in vr:
        return vr
    choices = vr.split(" or ")
    if isinstance(value, bytes | bytearray):
        return "OW" if "OW" in choices else "OB"
    return choices[0]


__all__ = ["BINARY_VRS", "PIXEL_DATA_TAGS", "header_dict", "header_json"]

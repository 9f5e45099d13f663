"""Reading DICOM file bytes into a Dataset, and encoding a Dataset back into file bytes.

:func:`read_dataset` uses the fast reader of :mod:`biobank.dicom.parse` for explicit VR
little endian files and pydicom's general reader for the rest, with errors that say what is
wrong and what to do. :func:`encode_dataset` writes undecoded (raw) elements verbatim and
everything else through pydicom's own element writer; its output is byte for byte what
``Dataset.save_as`` writes (tested on real files).
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from typing import Any

from pydicom import Dataset, dcmread, dcmwrite
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.tag import BaseTag

from biobank.dicom.parse import parse_file
from biobank.dicom.values import elements, encodings_of
from biobank.errors import InvalidDicom


def read_dataset(data: bytes, source: str = "input") -> Dataset:
    """Parse DICOM file bytes (header and undecoded pixel bytes) with clear errors."""
    try:
        fast = parse_file(data)
    except Exception:  # noqa: BLE001 - anything odd: pydicom's reader decides and explains
        fast = None
    if fast is not None:
        return fast
    try:
        ds = dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError:
        try:
            ds = dcmread(io.BytesIO(data), force=True)
        except Exception as exc:  # noqa: BLE001 - any parser failure is an invalid file
            raise InvalidDicom(
                f"{source}: not a DICOM file (no DICM prefix and not a raw data set: "
                f"{exc.__class__.__name__})"
            ) from None
        if not len(ds) or 0x00080016 not in elements(ds):
            raise InvalidDicom(
                f"{source}: not a DICOM file (no DICM prefix, no SOP Class UID); "
                "check that the file is a DICOM export"
            ) from None
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt files
        raise InvalidDicom(
            f"{source}: unreadable DICOM ({exc.__class__.__name__}); the file may be "
            "truncated or corrupt — re-export it"
        ) from None
    return ds


_SLOW_SYNTAXES = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
)
_HEADER = struct.Struct("<HH2sH")
_HEADER_LONG = struct.Struct("<HH2s2xI")
_ITEM = struct.Struct("<HHI")
_HEADER_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL"}
    | {"SS", "ST", "TM", "UI", "UL", "US", "OB", "OD", "OF", "OL", "OV", "OW", "UC", "UN"}
    | {"UR", "UT", "SV", "UV"}
)


def encode_dataset(ds: Dataset) -> bytes:
    """Encode ``ds`` as a DICOM file (zeroed preamble, file meta as rebuilt).

    Hand-written fast path (the reason: pydicom's writer costs ~25 µs per element, several
    times the whole de-identification): when the data set was read as explicit VR little
    endian and is written in the same encoding, elements the engine did not touch are still
    undecoded ``RawDataElement`` values and are re-emitted verbatim with their header; every
    other element goes through pydicom's own ``write_data_element``. The output is byte for
    byte what ``Dataset.save_as`` writes (tested).
    """
    ds.preamble = b"\x00" * 128
    try:
        if fast_path(ds):
            return _encode_explicit_le(ds)
        # The transfer syntax decides the encoding; it may differ from the one the data set
        # was read with (pixels re-encoded as native little endian), so pydicom converts.
        syntax = str(ds.file_meta.TransferSyntaxUID)
        buffer = io.BytesIO()
        dcmwrite(
            buffer,
            ds,
            implicit_vr=syntax == "1.2.840.10008.1.2",
            little_endian=syntax != "1.2.840.10008.1.2.2",
            enforce_file_format=True,
        )
        return buffer.getvalue()
    except Exception as exc:  # noqa: BLE001 - encoding failure must name the class only
        raise InvalidDicom(
            f"the instance could not be encoded ({exc.__class__.__name__}: an attribute has "
            "a value its VR does not allow)"
        ) from None


def fast_path(ds: Dataset) -> bool:
    """Whether ``ds`` is written by the hand-written explicit VR little endian encoder."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not syntax or syntax in _SLOW_SYNTAXES:
        return False
    return tuple(getattr(ds, "original_encoding", (None, None))) in ((False, True), (None, None))


def _encode_explicit_le(ds: Dataset) -> bytes:
    meta: list[bytes] = []
    _encode_elements(meta, ds.file_meta, [])
    body = b"".join(meta)
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    chunks: list[bytes] = [b"\x00" * 128 + b"DICM", group_length, body]
    _encode_elements(chunks, ds, encodings_of(ds))
    return b"".join(chunks)  # one copy of the pixel data, not one per buffer growth


def _encode_elements(chunks: list[bytes], ds: Dataset, encodings: list[str]) -> None:
    """Encode the elements of ``ds`` (explicit VR LE) as pydicom's writer would."""
    elems = elements(ds)
    append = chunks.append
    for tag in sorted(elems):
        if not tag & 0xFFFF and tag >> 16 > 6:
            continue  # retired group lengths are never written
        elem = elems[tag]
        if type(elem) is RawDataElement:
            if elem.VR is not None and not elem.is_implicit_VR and elem.is_little_endian:
                value = elem.value or b""
                vr = elem.VR
                if elem.length == 0xFFFFFFFF:  # sequence or encapsulated pixel data
                    append(_HEADER_LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), 0xFFFFFFFF))
                    append(value)
                    append(_SEQUENCE_DELIMITER)
                    continue
                header = _HEADER_LONG if vr in _LONG_VRS else _HEADER
                append(header.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
                append(value)
                continue
            elem = ds[tag]
        if elem.VR == "SQ":
            value, undefined = _sequence_value(elem, encodings_of(ds, encodings))
            length = 0xFFFFFFFF if undefined else len(value)
            append(_HEADER_LONG.pack(tag >> 16, tag & 0xFFFF, b"SQ", length) + value)
            if undefined:
                append(_SEQUENCE_DELIMITER)
        else:
            fp = DicomBytesIO()
            fp.is_little_endian = True
            fp.is_implicit_VR = False
            write_data_element(fp, elem, encodings)
            append(fp.getvalue())


_SEQUENCE_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


def _sequence_value(elem: DataElement, encodings: list[str]) -> tuple[bytes, bool]:
    """Encode a sequence's items; return (value, undefined length) as pydicom writes them."""
    body: list[bytes] = []
    for item in elem.value or ():
        content: list[bytes] = []
        _encode_elements(content, item, encodings_of(item, encodings))
        data = b"".join(content)
        if item.is_undefined_length_sequence_item:
            body.append(_ITEM.pack(0xFFFE, 0xE000, 0xFFFFFFFF) + data)
            body.append(_ITEM.pack(0xFFFE, 0xE00D, 0))
        else:
            body.append(_ITEM.pack(0xFFFE, 0xE000, len(data)) + data)
    return b"".join(body), bool(elem.is_undefined_length)


def as_raw(ds: Dataset, key: int, elem: Any, encodings: list[str]) -> RawDataElement | None:
    """The encoded form of a processed element, as the encoder would write it; None if odd."""
    if type(elem) is RawDataElement:
        return elem if not elem.is_implicit_VR and elem.is_little_endian else None
    if elem.VR == "SQ":
        value, undefined = _sequence_value(elem, encodings_of(ds, encodings))
        length = 0xFFFFFFFF if undefined else len(value)
        return RawDataElement(BaseTag(key), "SQ", length, value, 0, False, True)
    if elem.is_undefined_length or elem.VR not in _HEADER_VRS:
        return None
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_data_element(fp, elem, encodings)
    encoded = fp.getvalue()
    value = encoded[12:] if elem.VR in _LONG_VRS else encoded[8:]
    return RawDataElement(BaseTag(key), elem.VR, len(value), value, 0, False, True)


def quiet_pydicom() -> None:
    """Silence pydicom's warnings and log records, for entry points that handle PHI.

    pydicom quotes the offending value in many of them ("Invalid value for VR DA: '…'"), and
    a value read from a hospital's header is PHI until de-identified. The engine's own
    messages say what is wrong and where, without the value. Entry points (the CLI, the
    service) call this once; library code never configures logging by itself.
    """
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", module="pydicom")


__all__ = ["as_raw", "encode_dataset", "fast_path", "quiet_pydicom", "read_dataset"]

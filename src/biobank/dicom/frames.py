"""Frames of a stored instance, cut from its Pixel Data without decoding (PS3.18 8.3.1.3.3).

WADO-RS ``/frames/{list}`` returns the bytes of each frame as stored: the native pixel
values of one frame for an uncompressed transfer syntax, the complete encoded frame (all its
fragments joined) for an encapsulated one. This module finds the frames with as little work
as possible: the header is read by pydicom up to the pixel data, whose value is neither read
nor copied (pydicom's deferred reading gives its offset in the file), and only the requested
frames are copied out of the file's bytes.

* Native (Pixel Data, Float Pixel Data, Double Float Pixel Data): frame *k* is the *k*-th
  run of ``Rows × Columns × SamplesPerPixel × BitsAllocated / 8`` bytes (two samples per
  pixel for YBR_FULL_422 and YBR_PARTIAL_422, which are subsampled). With BitsAllocated 1
  the frames are bit packed (PS3.5 8.1.1) and a frame may start inside a byte: its bits are
  returned re-packed from bit 0 of the first byte (first pixel in the least significant
  bit), the unused high bits of the last byte set to zero.
* Explicit VR Big Endian (retired): 16-, 32- and 64-bit values are byte-swapped so that a
  frame is always little endian, as PS3.18 8.7.3.5.1 defines native frames; 8-bit values
  in an OB value need nothing; bit-packed or 8-bit OW big endian data raise
  :class:`~biobank.errors.InvalidInput` (transcode them).
* Encapsulated (PS3.5 A.4): the Extended Offset Table (7FE0,0001/0002) is used when present,
  else the Basic Offset Table, else one fragment per frame when there are as many fragments
  as frames, all fragments for a single frame, and otherwise JPEG end-of-image markers
  (``FF D9``, also the JPEG 2000 end of codestream) to find the last fragment of each frame,
  as :func:`pydicom.encaps.generate_fragmented_frames` does. The fragment items are walked
  by their lengths (no scanning of the compressed data).

Frame numbers are 1-based, as in the URL. Nothing here decodes pixels or converts transfer
syntaxes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from biobank.errors import InvalidDicom, InvalidInput, NotFound

_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel, Float, Double Float Pixel Data
_HEADER_TAGS = [
    0x00080016,  # SOP Class UID
    0x00280002,  # Samples per Pixel
    0x00280004,  # Photometric Interpretation
    0x00280008,  # Number of Frames
    0x00280010,  # Rows
    0x00280011,  # Columns
    0x00280100,  # Bits Allocated
    0x7FE00001,  # Extended Offset Table
    0x7FE00002,  # Extended Offset Table Lengths
    *_PIXEL_TAGS,
]
_DEFER_BYTES = 256  # larger values are left in the file and located by their offset
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_TAG_LENGTH = struct.Struct("<HHI")
_SUBSAMPLED = frozenset({"YBR_FULL_422", "YBR_PARTIAL_422"})


def transfer_syntax_of(data: bytes) -> str:
    """The Transfer Syntax UID of a DICOM file, read from its file meta information.

    A data set without file meta (no ``DICM`` prefix) gets the syntax pydicom infers from
    its first elements (implicit or explicit VR, little or big endian).

    Raises
    ------
    InvalidDicom
        ``data`` is not a DICOM file, or its file meta has no Transfer Syntax UID.
    """
    if len(data) >= 132 and data[128:132] == b"DICM":
        pos = 132
        while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
            element = data[pos + 2 : pos + 4]
            vr = data[pos + 4 : pos + 6]
            if vr in _LONG_VRS:
                if pos + 12 > len(data):
                    break
                (length,) = struct.unpack_from("<I", data, pos + 8)
                start = pos + 12
            else:
                (length,) = struct.unpack_from("<H", data, pos + 6)
                start = pos + 8
            if element == b"\x10\x00" and start + length <= len(data):
                return data[start : start + length].decode("ascii", "replace").strip("\0 ")
            pos = start + length
        raise InvalidDicom(
            "the stored instance's file meta information has no Transfer Syntax UID "
            "(0002,0010) or is truncated; store the instance again"
        )
    ds = _read_header(data, defer=True)
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax:
        return syntax
    implicit, little = ds.original_encoding
    if implicit:
        return _IMPLICIT_LE
    return _EXPLICIT_LE if little is not False else _EXPLICIT_BE


def frame_count(data: bytes) -> int:
    """The number of frames of an instance: Number of Frames, 1 if absent, 0 without pixels.

    Raises
    ------
    InvalidDicom
        ``data`` is not a DICOM file.
    """
    pixels = _locate(data)
    return 0 if pixels is None else pixels.frames


def extract_frames(data: bytes, frame_numbers: Sequence[int]) -> list[bytes]:
    """The stored bytes of the frames ``frame_numbers`` (1-based) of an instance, in order.

    Parameters
    ----------
    data : bytes
        The DICOM file.
    frame_numbers : sequence of int
        Frame numbers from 1 to :func:`frame_count`, in any order, repeats allowed.

    Returns
    -------
    list of bytes
        One item per requested number: native pixel values (little endian, bit-packed
        frames re-packed from bit 0) or one complete encoded frame (fragments joined).

    Raises
    ------
    NotFound
        The instance has no pixel data, or a frame number is out of range.
    InvalidDicom
        ``data`` is not DICOM, or its pixel data are shorter than its header says or
        cannot be split into frames.
    InvalidInput
        Bit-packed or 8-bit OW pixel data in Explicit VR Big Endian.
    """
    pixels = _locate(data)
    if pixels is None:
        raise NotFound(
            "the instance has no pixel data (no Pixel Data, Float Pixel Data or Double Float "
            "Pixel Data element); frames exist only for image instances"
        )
    for number in frame_numbers:
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidInput("frame numbers must be integers; use e.g. frames/1,3")
        if not 1 <= number <= pixels.frames:
            raise NotFound(
                f"frame {number} does not exist: the instance has {pixels.frames} "
                f"frame(s), numbered 1 to {pixels.frames}"
            )
    if pixels.encapsulated:
        spans = _encapsulated_frames(pixels)
        return [b"".join(pixels.buffer[a:b] for a, b in spans[n - 1]) for n in frame_numbers]
    return [_native_frame(pixels, n - 1) for n in frame_numbers]


@dataclass(frozen=True)
class _Pixels:
    """Where the pixel data value is and how it is laid out."""

    syntax: str
    frames: int
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    photometric: str
    vr: str
    buffer: bytes  # the file, or the value itself when pydicom has read it
    offset: int  # first byte of the value in ``buffer``
    length: int  # value length; 0xFFFFFFFF when encapsulated (undefined length)
    extended_offsets: bytes | None
    extended_lengths: bytes | None

    @property
    def encapsulated(self) -> bool:
        return self.length == 0xFFFFFFFF


def _read_header(data: bytes, *, defer: bool) -> Dataset:
    """Read the header elements this module needs, pixel data deferred (not read)."""
    options: dict[str, object] = {"specific_tags": _HEADER_TAGS}
    if defer:
        options["defer_size"] = _DEFER_BYTES
    try:
        try:
            return dcmread(BytesIO(data), **options)  # type: ignore[arg-type]
        except InvalidDicomError:
            ds = dcmread(BytesIO(data), force=True, **options)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - any parser failure is an invalid file
        raise InvalidDicom(
            f"the stored instance is not readable DICOM ({exc.__class__.__name__}); it may "
            "be truncated or corrupt — store it again"
        ) from None
    if 0x00080016 not in ds:  # a raw data set (no DICM prefix) must at least be an instance
        raise InvalidDicom(
            "the stored instance is not DICOM (no DICM prefix and no SOP Class UID); store it again"
        )
    return ds


def _element(data: bytes, ds: Dataset, tag: int) -> tuple[bytes, int, int, str] | None:
    """(buffer, value offset in it, value length, VR) of an element, its value not copied.

    A value pydicom left deferred is located in ``data``; one it read is its own buffer.
    The length is 0xFFFFFFFF for an undefined length (encapsulated pixel data).
    """
    if tag not in ds:
        return None
    elem: RawDataElement | DataElement = ds.get_item(tag, keep_deferred=True)
    if isinstance(elem, RawDataElement):
        if elem.value is None and elem.length:
            return data, int(elem.value_tell), int(elem.length), str(elem.VR or "")
        value = bytes(elem.value or b"")
        return value, 0, int(elem.length), str(elem.VR or "")
    value = bytes(elem.value or b"")
    length = 0xFFFFFFFF if elem.is_undefined_length else len(value)
    return value, 0, length, str(elem.VR)


def _raw_value(data: bytes, ds: Dataset, tag: int) -> bytes | None:
    found = _element(data, ds, tag)
    if found is None:
        return None
    buffer, offset, length, _ = found
    return buffer[offset : offset + length]


def _locate(data: bytes) -> _Pixels | None:
    syntax = transfer_syntax_of(data)
    # A deflated data set is inflated by pydicom into a new buffer: offsets into ``data``
    # would be meaningless, so its (native) pixel data are read.
    ds = _read_header(data, defer=syntax != _DEFLATED)
    found = next((f for t in _PIXEL_TAGS if (f := _element(data, ds, t)) is not None), None)
    if found is None:
        return None
    buffer, offset, length, vr = found
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
        rows, columns = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        raise InvalidDicom(
            "the stored instance has pixel data but no valid Rows, Columns or Bits "
            "Allocated (0028,0010/0011/0100); it cannot be split into frames"
        ) from None
    if frames < 1 or rows < 1 or columns < 1 or samples < 1 or bits < 1:
        raise InvalidDicom(
            "the stored instance has a Number of Frames, Rows, Columns, Samples per Pixel "
            "or Bits Allocated below 1; it cannot be split into frames"
        )
    return _Pixels(
        syntax=syntax,
        frames=frames,
        rows=rows,
        columns=columns,
        samples=samples,
        bits_allocated=bits,
        photometric=str(ds.get("PhotometricInterpretation", "")).strip().upper(),
        vr=vr,
        buffer=buffer,
        offset=offset,
        length=length,
        extended_offsets=_raw_value(data, ds, 0x7FE00001),
        extended_lengths=_raw_value(data, ds, 0x7FE00002),
    )


# -- native pixel data ---------------------------------------------------------------------


def _native_frame(pixels: _Pixels, index: int) -> bytes:
    samples = 2 if pixels.photometric in _SUBSAMPLED else pixels.samples
    frame_bits = pixels.rows * pixels.columns * samples * pixels.bits_allocated
    total_bits = frame_bits * pixels.frames
    available = min(pixels.length, len(pixels.buffer) - pixels.offset)
    if available * 8 < total_bits:
        raise InvalidDicom(
            f"the pixel data hold {available} bytes but Rows, Columns, Samples per Pixel, "
            f"Bits Allocated and Number of Frames ({pixels.frames}) need "
            f"{(total_bits + 7) // 8}; the instance is truncated — store it again"
        )
    big_endian = pixels.syntax == _EXPLICIT_BE
    if frame_bits % 8:
        if big_endian:
            raise _unsupported_big_endian()
        return _bit_frame(pixels, index * frame_bits, frame_bits)
    size = frame_bits // 8
    start = pixels.offset + index * size
    frame = pixels.buffer[start : start + size]
    if not big_endian or pixels.bits_allocated == 8 and pixels.vr != "OW":
        return frame
    if pixels.bits_allocated not in (16, 32, 64):
        raise _unsupported_big_endian()
    width = pixels.bits_allocated // 8
    return np.frombuffer(frame, dtype=f">u{width}").astype(f"<u{width}").tobytes()


def _bit_frame(pixels: _Pixels, first_bit: int, frame_bits: int) -> bytes:
    """Bits ``[first_bit, first_bit + frame_bits)`` of bit-packed data, packed from bit 0."""
    if first_bit % 8 == 0:
        start = pixels.offset + first_bit // 8
        frame = bytearray(pixels.buffer[start : start + (frame_bits + 7) // 8])
        if frame_bits % 8:
            frame[-1] &= (1 << (frame_bits % 8)) - 1
        return bytes(frame)
    start = pixels.offset + first_bit // 8
    end = pixels.offset + (first_bit + frame_bits + 7) // 8
    raw = np.frombuffer(pixels.buffer[start:end], dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")
    skip = first_bit % 8
    return np.packbits(bits[skip : skip + frame_bits], bitorder="little").tobytes()


def _unsupported_big_endian() -> InvalidInput:
    return InvalidInput(
        "frames of bit-packed or 8-bit OW pixel data in Explicit VR Big Endian (a retired "
        "transfer syntax) are not supported; transcode the instance to Explicit VR Little "
        "Endian"
    )


# -- encapsulated pixel data ---------------------------------------------------------------

_Span = tuple[int, int]


def _encapsulated_frames(pixels: _Pixels) -> list[list[_Span]]:
    """The fragment byte spans of every frame, as positions in ``pixels.buffer``."""
    buffer = pixels.buffer
    basic, first, fragments = _walk_items(buffer, pixels.offset)
    frames = pixels.frames
    if pixels.extended_offsets and pixels.extended_lengths:
        return _from_extended(pixels, first)
    if basic and len(basic) == frames:
        grouped = _from_basic(basic, first, fragments)
        if grouped is not None:
            return grouped
    if len(fragments) == frames:
        return [[span] for span in fragments]
    if frames == 1 and fragments:
        return [fragments]
    if len(fragments) > frames:
        grouped = _from_markers(buffer, fragments)
        if len(grouped) == frames:
            return grouped
    raise InvalidDicom(
        f"the encapsulated pixel data have {len(fragments)} fragment(s) for "
        f"{frames} frame(s) and no usable offset table; the frames cannot be told apart — "
        "re-encode the instance with a Basic or Extended Offset Table"
    )


def _walk_items(buffer: bytes, offset: int) -> tuple[list[int], int, list[_Span]]:
    """Parse the Basic Offset Table item and the fragment items that follow it.

    Returns the BOT offsets, the position of the first fragment's item tag, and the
    (start, end) of every fragment's value.
    """
    size = len(buffer)
    if offset + 8 > size:
        raise _bad_items()
    group, element, length = _TAG_LENGTH.unpack_from(buffer, offset)
    if (group << 16 | element) != _ITEM or length % 4 or offset + 8 + length > size:
        raise _bad_items()
    basic = list(struct.unpack_from(f"<{length // 4}I", buffer, offset + 8))
    first = pos = offset + 8 + length
    fragments: list[_Span] = []
    while pos + 8 <= size:
        group, element, length = _TAG_LENGTH.unpack_from(buffer, pos)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            break
        if tag != _ITEM or length == 0xFFFFFFFF or pos + 8 + length > size:
            raise _bad_items()
        fragments.append((pos + 8, pos + 8 + length))
        pos += 8 + length
    return basic, first, fragments


def _bad_items() -> InvalidDicom:
    return InvalidDicom(
        "the encapsulated pixel data are malformed (an item tag or length is wrong, or the "
        "value is truncated); the instance is corrupt — store it again"
    )


def _from_extended(pixels: _Pixels, first: int) -> list[list[_Span]]:
    """PS3.3 C.7.6.3.1.8: offsets of each frame's single fragment item, and its length."""
    offsets_raw = pixels.extended_offsets or b""
    lengths_raw = pixels.extended_lengths or b""
    count = len(offsets_raw) // 8
    if count != pixels.frames or len(lengths_raw) // 8 != count:
        raise InvalidDicom(
            f"the Extended Offset Table has {count} entries for {pixels.frames} frame(s); "
            "re-encode the instance"
        )
    offsets = struct.unpack(f"<{count}Q", offsets_raw[: count * 8])
    lengths = struct.unpack(f"<{count}Q", lengths_raw[: count * 8])
    spans: list[list[_Span]] = []
    for offset, length in zip(offsets, lengths, strict=True):
        item = first + offset
        if item + 8 + length > len(pixels.buffer) or (
            _TAG_LENGTH.unpack_from(pixels.buffer, item)[:2] != (0xFFFE, 0xE000)
        ):
            raise InvalidDicom(
                "an Extended Offset Table entry does not point at a fragment item; the "
                "instance is corrupt — re-encode it"
            )
        spans.append([(item + 8, item + 8 + length)])
    return spans


def _from_basic(basic: list[int], first: int, fragments: list[_Span]) -> list[list[_Span]] | None:
    """Group fragments by the Basic Offset Table; None if it does not match the items."""
    if basic[0] != 0 or any(b <= a for a, b in zip(basic, basic[1:], strict=False)):
        return None
    frames: list[list[_Span]] = [[] for _ in basic]
    index = 0
    for start, end in fragments:
        offset = start - 8 - first
        while index + 1 < len(basic) and offset >= basic[index + 1]:
            if offset > basic[index + 1] or not frames[index]:
                return None  # an offset falls inside an item, or a frame has no fragment
            index += 1
        frames[index].append((start, end))
    return frames if all(frames) else None


def _from_markers(buffer: bytes, fragments: list[_Span]) -> list[list[_Span]]:
    """Group fragments into frames ending with a JPEG EOI / JPEG 2000 EOC marker (FF D9)."""
    frames: list[list[_Span]] = []
    current: list[_Span] = []
    for start, end in fragments:
        current.append((start, end))
        if b"\xff\xd9" in buffer[max(start, end - 10) : end]:
            frames.append(current)
            current = []
    if current:
        frames.append(current)
    return frames


__all__ = ["extract_frames", "frame_count", "transfer_syntax_of"]

"""Server-side rendering of one frame for WADO-RS ``/rendered`` and ``/thumbnail``.

PS3.18 8.3.5 (rendered media types) and 8.3.5.1 (query parameters): a frame is decoded
(only that frame), its stored values go through the Modality LUT (PS3.3 C.11.1: Modality LUT
Sequence, or Rescale Slope and Intercept, per frame for enhanced multi-frame instances), then
the VOI transformation to 8 bits (PS3.3 C.11.2), and the result is written as PNG, JPEG or
GIF with Pillow.

VOI, in order of precedence:

1. the ``window`` of the request (center, width and function: LINEAR, LINEAR_EXACT or
   SIGMOID, PS3.3 C.11.2.1.2 and C.11.2.1.3);
2. the first Window Center / Window Width of the frame (Frame VOI LUT Sequence of the
   per-frame, then the shared functional groups) or of the header, with VOI LUT Function;
3. the first item of the VOI LUT Sequence (its output range is ``2**bits`` as its LUT
   Descriptor declares);
4. the minimum and maximum of the frame after the Modality LUT.

MONOCHROME1 is inverted (low values white). RGB and YBR are shown as RGB (pydicom converts
YBR_FULL and YBR_FULL_422; decoders return RGB for YBR_ICT and YBR_RCT), values above 8 bits
scaled from Bits Stored. PALETTE COLOR goes through its palette (pydicom's
``apply_color_lut``). ``viewport`` shrinks the image to fit, keeping its aspect ratio, and
never enlarges it.

Not done: Presentation LUT Shape, ICC profiles, overlays and burned-in annotation, the
source-region form of ``viewport`` (``vw,vh,sx,sy,sw,sh``), and correction of non-square
pixels (Pixel Aspect Ratio, unequal Pixel Spacing).
"""

from __future__ import annotations

import math
import re
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.pixels.utils import pixel_array

from biobank.dicom.frames import frame_count, transfer_syntax_of
from biobank.errors import InvalidDicom, InvalidInput, NotFound

#: Rendered media types and the Pillow format that writes them.
MEDIA_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}
_FUNCTIONS = {
    "linear": "LINEAR",
    "linear-exact": "LINEAR_EXACT",
    "linear_exact": "LINEAR_EXACT",
    "sigmoid": "SIGMOID",
}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DIMENSION = re.compile(r"\d{1,6}")
_DEFLATED = "1.2.840.10008.1.2.1.99"

Window = tuple[float, float] | tuple[float, float, str]


class NotAcceptable(InvalidInput):  # noqa: N818 - named after HTTP 406, like the tree
    """The requested rendered media type is not one this server produces."""


def render_frame(
    data: bytes,
    frame: int = 1,
    *,
    media_type: str = "image/png",
    window: Window | None = None,
    viewport: tuple[int, int] | None = None,
    quality: int = 90,
) -> bytes:
    """Render frame ``frame`` (1-based) of a DICOM instance as an 8-bit image.

    Parameters
    ----------
    data : bytes
        The DICOM file.
    frame : int
        The frame number, from 1 to Number of Frames.
    media_type : str
        ``image/png``, ``image/jpeg`` or ``image/gif``; parameters after ``;`` are ignored.
    window : tuple, optional
        ``(center, width)`` or ``(center, width, function)`` as :func:`parse_window`
        returns; it replaces the instance's own VOI. Function defaults to LINEAR.
    viewport : tuple of int, optional
        ``(width, height)`` of the largest image wanted; the image is shrunk to fit.
    quality : int
        JPEG quality, 1 to 100 (ignored by PNG and GIF).

    Returns
    -------
    bytes
        The encoded image.

    Raises
    ------
    NotAcceptable
        ``media_type`` is not one of the supported types.
    InvalidInput
        ``window``, ``viewport`` or ``quality`` is out of range.
    NotFound
        The instance has no pixel data, or no frame ``frame``.
    InvalidDicom
        The instance or its frame cannot be read or decoded.
    """
    fmt = _pillow_format(media_type)
    checked = _check_window(window) if window is not None else None
    _check_options(viewport, quality)
    ds, count = _header(data)
    if isinstance(frame, bool) or not isinstance(frame, int) or not 1 <= frame <= count:
        raise NotFound(
            f"frame {frame} does not exist: the instance has {count} frame(s), numbered 1 "
            f"to {count}"
        )
    return _render(data, ds, frame - 1, fmt, checked, viewport, quality)


def render_thumbnail(data: bytes, *, media_type: str = "image/jpeg", size: int = 128) -> bytes:
    """Render the middle frame of an instance to fit in ``size`` × ``size`` pixels.

    Raises
    ------
    NotAcceptable, InvalidInput, NotFound, InvalidDicom
        As :func:`render_frame`.
    """
    fmt = _pillow_format(media_type)
    _check_options((size, size), 90)
    ds, count = _header(data)
    middle = (count + 1) // 2
    return _render(data, ds, middle - 1, fmt, None, (size, size), 90)


def parse_window(value: str) -> tuple[float, float, str]:
    """Parse the ``window`` query parameter: ``center,width,function`` (PS3.18 8.3.5.1.4).

    The function is ``linear``, ``linear-exact`` or ``sigmoid`` (any case) and may be left
    out (``linear``).

    Returns
    -------
    tuple of (float, float, str)
        Center, width and the function as DICOM names it (``LINEAR``, ``LINEAR_EXACT``,
        ``SIGMOID``).

    Raises
    ------
    InvalidInput
        Not two or three values, a value that is not a number or function, or a width
        below 1 (LINEAR) or not above 0 (the others).
    """
    items = [item.strip() for item in value.split(",")]
    if len(items) not in (2, 3):
        raise InvalidInput(
            "the window parameter must be center,width,function (e.g. window=40,400,linear)"
        )
    numbers: list[float] = []
    for name, item in zip(("center", "width"), items, strict=False):
        if not _NUMBER.fullmatch(item) or not math.isfinite(float(item)):
            raise InvalidInput(
                f"the window {name} must be a decimal number (e.g. window=40,400,linear)"
            )
        numbers.append(float(item))
    function = _FUNCTIONS.get(items[2].lower()) if len(items) == 3 else "LINEAR"
    if function is None:
        raise InvalidInput(
            "the window function must be linear, linear-exact or sigmoid "
            "(e.g. window=40,400,linear)"
        )
    center, width, function = _check_window((numbers[0], numbers[1], function))
    return center, width, function


def parse_viewport(value: str) -> tuple[int, int]:
    """Parse the ``viewport`` query parameter ``vw,vh`` (PS3.18 8.3.5.1.3).

    Raises
    ------
    InvalidInput
        Not two positive integers; the source-region form ``vw,vh,sx,sy,sw,sh`` is refused
        with its own message.
    """
    items = [item.strip() for item in value.split(",")]
    if len(items) == 6:
        raise InvalidInput(
            "the source-region form of viewport (vw,vh,sx,sy,sw,sh) is not supported; "
            "send viewport=width,height"
        )
    if len(items) != 2 or not all(_DIMENSION.fullmatch(item) for item in items):
        raise InvalidInput(
            "the viewport parameter must be width,height in pixels (e.g. viewport=512,512)"
        )
    width, height = int(items[0]), int(items[1])
    _check_options((width, height), 90)
    return width, height


# -- checks --------------------------------------------------------------------------------


def _pillow_format(media_type: str) -> str:
    name = media_type.partition(";")[0].strip().lower()
    fmt = MEDIA_TYPES.get(name)
    if fmt is None:
        shown = name[:60] or "(empty)"
        raise NotAcceptable(
            f"rendered media type {shown!r} is not supported; ask for image/jpeg, image/png "
            "or image/gif"
        )
    return fmt


def _check_window(window: Window) -> tuple[float, float, str]:
    center, width = float(window[0]), float(window[1])
    function = str(window[2]).upper() if len(window) == 3 else "LINEAR"
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise InvalidInput("the window function must be LINEAR, LINEAR_EXACT or SIGMOID")
    if not (math.isfinite(center) and math.isfinite(width)):
        raise InvalidInput("the window center and width must be finite numbers")
    if function == "LINEAR" and width < 1:
        raise InvalidInput("a linear window must be at least 1 wide (PS3.3 C.11.2.1.2.1)")
    if width <= 0:
        raise InvalidInput("the window width must be greater than 0 (PS3.3 C.11.2.1.3)")
    return center, width, function


def _check_options(viewport: tuple[int, int] | None, quality: int) -> None:
    if viewport is not None and (
        len(viewport) != 2 or not all(isinstance(v, int) and v >= 1 for v in viewport)
    ):
        raise InvalidInput("the viewport width and height must be whole numbers of at least 1")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InvalidInput("the quality parameter must be a whole number from 1 to 100")


# -- reading and decoding ------------------------------------------------------------------


def _header(data: bytes) -> tuple[Dataset, int]:
    """The data set without its pixel data value (neither read nor copied), and its frames."""
    count = frame_count(data)  # InvalidDicom when not DICOM
    if count == 0:
        raise NotFound("the instance has no pixel data; only image instances can be rendered")
    try:
        try:
            ds = dcmread(BytesIO(data), stop_before_pixels=True)
        except InvalidDicomError:
            ds = dcmread(BytesIO(data), stop_before_pixels=True, force=True)
    except Exception as exc:  # noqa: BLE001 - any parser failure is an invalid file
        raise InvalidDicom(
            f"the stored instance is not readable DICOM ({exc.__class__.__name__}); it may "
            "be truncated or corrupt — store it again"
        ) from None
    return ds, count


def _decode(data: bytes, index: int) -> np.ndarray[Any, Any]:
    """Decode one frame: RGB for colour, stored values for greyscale and palette."""
    try:
        if transfer_syntax_of(data) == _DEFLATED:
            # pydicom reads a deflated data set only through dcmread, which inflates it.
            return pixel_array(dcmread(BytesIO(data)), index=index)
        return pixel_array(BytesIO(data), index=index)
    except Exception as exc:  # noqa: BLE001 - codec or data failures are invalid files
        raise InvalidDicom(
            f"frame {index + 1} of the instance could not be decoded "
            f"({exc.__class__.__name__}); the pixel data may be corrupt or need a codec "
            "that is not installed"
        ) from None


def _render(
    data: bytes,
    ds: Dataset,
    index: int,
    fmt: str,
    window: tuple[float, float, str] | None,
    viewport: tuple[int, int] | None,
    quality: int,
) -> bytes:
    arr = _decode(data, index)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric == "PALETTE COLOR":
        pixels = _palette(arr, ds)
    elif arr.ndim == 3:
        pixels = _colour(arr, ds)
    else:
        pixels = _grey(arr, ds, index, window)
        if photometric == "MONOCHROME1":
            pixels = 255 - pixels
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if viewport is not None:
        image.thumbnail(viewport, Image.Resampling.LANCZOS)  # fits, keeps aspect, never up
    out = BytesIO()
    if fmt == "JPEG":
        image.save(out, format="JPEG", quality=quality)
    else:
        image.save(out, format=fmt)
    return out.getvalue()


# -- grey levels ---------------------------------------------------------------------------


def _grey(
    arr: np.ndarray[Any, Any], ds: Dataset, index: int, window: tuple[float, float, str] | None
) -> np.ndarray[Any, Any]:
    values = _modality(arr, ds, index)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)  # float pixel data
    if window is None:
        window = _header_window(ds, index)
    if window is not None:
        out = _apply_window(values, *window)
    elif ds.get("VOILUTSequence"):
        out = _apply_voi_lut(values, ds)
    else:
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        out = (values - low) * scale
    grey: np.ndarray[Any, Any] = np.rint(np.clip(out, 0, 255)).astype(np.uint8)
    return grey


def _functional_item(ds: Dataset, index: int, keyword: str) -> Dataset | None:
    """The first item of ``keyword`` in frame ``index``'s functional groups, or shared."""
    for groups_keyword, position in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_keyword)
        if groups and position < len(groups):
            inner = groups[position].get(keyword)
            if inner:
                item: Dataset = inner[0]
                return item
    return None


def _modality(arr: np.ndarray[Any, Any], ds: Dataset, index: int) -> np.ndarray[Any, Any]:
    if ds.get("ModalityLUTSequence") and arr.dtype.kind in "iu":
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    source = _functional_item(ds, index, "PixelValueTransformationSequence") or ds
    values = arr.astype(np.float64)
    try:
        slope = float(source.get("RescaleSlope", 1) or 1)
        intercept = float(source.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return values  # lenient: an unreadable rescale is ignored
    if slope != 1:
        values *= slope
    if intercept:
        values += intercept
    return values


def _header_window(ds: Dataset, index: int) -> tuple[float, float, str] | None:
    for source in (_functional_item(ds, index, "FrameVOILUTSequence"), ds):
        if source is None or "WindowCenter" not in source or "WindowWidth" not in source:
            continue
        try:
            center = _first(source.WindowCenter)
            width = _first(source.WindowWidth)
            function = str(source.get("VOILUTFunction") or "LINEAR")
            return _check_window((center, width, function))
        except (InvalidInput, TypeError, ValueError, IndexError):
            continue  # lenient: an unusable header window falls back to the next rule
    return None


def _first(value: Any) -> float:
    return float(value[0] if isinstance(value, MultiValue | list | tuple) else value)


def _apply_window(
    values: np.ndarray[Any, Any], center: float, width: float, function: str
) -> np.ndarray[Any, Any]:
    """PS3.3 C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT), C.11.2.1.3.1 (SIGMOID)."""
    if function == "SIGMOID":
        exponent = np.clip(-4.0 * (values - center) / width, -700.0, 700.0)
        return 255.0 / (1.0 + np.exp(exponent))
    if function == "LINEAR_EXACT":
        return ((values - center) / width + 0.5) * 255.0
    if width == 1:
        return np.where(values <= center - 0.5, 0.0, 255.0)
    return ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0


def _apply_voi_lut(values: np.ndarray[Any, Any], ds: Dataset) -> np.ndarray[Any, Any]:
    item = ds.VOILUTSequence[0]
    descriptor = [int(v) for v in item.LUTDescriptor]
    entries = descriptor[0] or 65536
    first = descriptor[1]
    if first > 32767 and int(ds.get("PixelRepresentation", 0) or 0) == 1:
        first -= 65536  # the descriptor's second value is signed for signed pixels
    bits = descriptor[2] if 8 <= descriptor[2] <= 16 else 16
    raw = item.LUTData
    if isinstance(raw, bytes):
        lut = np.frombuffer(raw, dtype="<u2" if len(raw) >= 2 * entries else "u1")
    else:
        lut = np.atleast_1d(np.asarray(raw, dtype=np.float64))
    lut = np.asarray(lut[:entries], dtype=np.float64)
    positions = np.clip(np.rint(values) - first, 0, len(lut) - 1).astype(np.intp)
    mapped: np.ndarray[Any, Any] = lut[positions] * (255.0 / (2**bits - 1))
    return mapped


# -- colour --------------------------------------------------------------------------------


def _colour(arr: np.ndarray[Any, Any], ds: Dataset) -> np.ndarray[Any, Any]:
    if arr.ndim == 2:
        arr = arr[..., np.newaxis].repeat(3, axis=2)
    if arr.dtype == np.uint8:
        return arr
    bits = int(ds.get("BitsStored") or arr.dtype.itemsize * 8)
    scaled = arr.astype(np.float64) * (255.0 / (2**bits - 1))
    rgb: np.ndarray[Any, Any] = np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)
    return rgb


def _palette(arr: np.ndarray[Any, Any], ds: Dataset) -> np.ndarray[Any, Any]:
    try:
        rgb = apply_color_lut(arr, ds)
    except Exception as exc:  # noqa: BLE001 - a malformed palette is an invalid file
        raise InvalidDicom(
            f"the instance's palette colour lookup tables cannot be applied "
            f"({exc.__class__.__name__}); it cannot be rendered"
        ) from None
    if rgb.dtype == np.uint8:
        return rgb
    return (rgb.astype(np.uint32) >> 8).astype(np.uint8)


__all__ = [
    "MEDIA_TYPES",
    "NotAcceptable",
    "parse_viewport",
    "parse_window",
    "render_frame",
    "render_thumbnail",
]

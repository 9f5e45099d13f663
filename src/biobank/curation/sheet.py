"""A contact sheet: every image of a series, downsampled, in one PNG mosaic.

A curator sees at a glance burned-in text, a wrong series, a missing or repeated slice, a
scout mixed into a stack. Each slice (or frame) is windowed, shrunk to fit a ``tile`` ×
``tile`` cell keeping its aspect ratio (pixel spacing included), centred in its cell, and
labelled with its index in the sorted stack (0-based) in the cell's top-left corner.

Windowing: the first Window Center / Window Width of the header when present, else the
1st–99th percentile of the whole volume. MONOCHROME1 is inverted (low values white).

The sheet adds no header text: the only text drawn is the slice index, made of digits.
Names, IDs, dates and descriptions stay out, so the sheet shows no PHI beyond what the
pixels themselves hold (burned-in annotation, which is what the sheet is for spotting).
"""

from __future__ import annotations

import math
from io import BytesIO
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from biobank.curation.series import SeriesVolume
from biobank.errors import InvalidInput

#: Grey of the separator lines and of empty cells.
SEPARATOR = 48
_GAP = 1


def window_of(volume: SeriesVolume) -> tuple[float, float]:
    """``(low, high)`` of the display window: the header's, else percentiles 1 and 99."""
    headers = volume.headers
    try:
        center = _first(headers.get("WindowCenter"))
        width = _first(headers.get("WindowWidth"))
    except (TypeError, ValueError, IndexError):
        center = width = None
    if center is not None and width is not None and width > 0:
        return center - width / 2.0, center + width / 2.0
    finite = volume.voxels[np.isfinite(volume.voxels)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, [1.0, 99.0]))
    if high <= low:
        high = low + 1.0
    return low, high


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | bytes | int | float):  # a multi-valued element
        items = list(value)
        if not items:
            return None
        value = items[0]
    number = float(value)
    return number if math.isfinite(number) else None


def _to_grey(
    voxels: npt.NDArray[np.float32], low: float, high: float, invert: bool
) -> npt.NDArray[np.uint8]:
    values = np.nan_to_num(voxels.astype(np.float64), nan=low, posinf=high, neginf=low)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    if invert:
        scaled = 255.0 - scaled
    return np.asarray(np.round(scaled), dtype=np.uint8)


def _tile_size(volume: SeriesVolume, tile: int) -> tuple[int, int]:
    _, rows, cols = volume.shape
    _, dy, dx = volume.spacing
    height, width = rows * dy, cols * dx
    scale = tile / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def contact_sheet(volume: SeriesVolume, *, tile: int = 128, columns: int | None = None) -> bytes:
    """Render every slice of ``volume`` into one PNG mosaic.

    Parameters
    ----------
    volume : SeriesVolume
        The series.
    tile : int
        Cell size in pixels; each slice is shrunk (never enlarged past it) to fit.
    columns : int, optional
        Cells per row; ``ceil(sqrt(slices))`` when omitted.

    Returns
    -------
    bytes
        An 8-bit greyscale PNG of ``columns × tile + (columns + 1)`` pixels wide and
        ``rows × tile + (rows + 1)`` high, with 1-pixel separator lines.

    Raises
    ------
    InvalidInput
        If ``tile`` is below 16 or above 1024, or ``columns`` is below 1.
    """
    if not 16 <= tile <= 1024:
        raise InvalidInput("contact sheet: the tile size must be between 16 and 1024 pixels")
    n = volume.shape[0]
    if columns is None:
        columns = max(1, math.ceil(math.sqrt(n)))
    if columns < 1:
        raise InvalidInput("contact sheet: columns must be at least 1")
    columns = min(columns, n) if n else 1
    rows = max(1, math.ceil(n / columns))
    low, high = window_of(volume)
    grey = _to_grey(volume.voxels, low, high, volume.photometric.upper() == "MONOCHROME1")
    width, height = _tile_size(volume, tile)
    sheet = Image.new("L", (columns * (tile + _GAP) + _GAP, rows * (tile + _GAP) + _GAP), SEPARATOR)
    draw = ImageDraw.Draw(sheet)
    shrinking = width < grey.shape[2] or height < grey.shape[1]
    resample = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BILINEAR
    for index in range(n):
        row, col = divmod(index, columns)
        x0 = _GAP + col * (tile + _GAP)
        y0 = _GAP + row * (tile + _GAP)
        draw.rectangle((x0, y0, x0 + tile - 1, y0 + tile - 1), fill=0)
        image = Image.fromarray(grey[index]).resize((width, height), resample)
        sheet.paste(image, (x0 + (tile - width) // 2, y0 + (tile - height) // 2))
        _label(draw, x0, y0, index)
    buffer = BytesIO()
    sheet.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _label(draw: ImageDraw.ImageDraw, x0: int, y0: int, index: int) -> None:
    text = str(index)
    if not text.isdigit():  # the only text ever drawn: a slice index
        raise AssertionError("contact sheet labels are digits only")
    left, top, right, bottom = draw.textbbox((x0 + 2, y0 + 1), text)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=0)
    draw.text((x0 + 2, y0 + 1), text, fill=255)


__all__ = ["SEPARATOR", "contact_sheet", "window_of"]

"""A series read into memory: a float32 volume in modality units with its geometry.

Files (or the node's stored instances) are grouped by Series Instance UID. Every image's
pixels are decoded with pydicom (compressed transfer syntaxes through the installed
decoder plugins), go through the Modality LUT (Rescale Slope and Intercept, per frame for
enhanced multi-frame instances, or a Modality LUT Sequence) and are stacked into a
``(z, y, x)`` float32 array.

Slices are sorted along the slice normal: the projection of Image Position (Patient) on
the cross product of the Image Orientation (Patient) row and column directions. When a
position or the orientation is missing, the order falls back to Instance Number (then to
the order of frames within an instance), and the fallback is recorded in
:attr:`SeriesVolume.problems`.

What went wrong while loading (images of another size left out, missing positions,
uneven slice spacing, images that could not be decoded) is kept as plain strings. They
name images by their rank in the input (``image 3 of 20``), never by a header value or a
file name, since both may carry PHI. Nothing here logs a header value.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.pixels.utils import pixel_array

from biobank.catalog import Catalog
from biobank.dicom.io import read_dataset
from biobank.errors import BiobankError, InvalidDicom, InvalidInput, NotFound

logger = logging.getLogger(__name__)

#: Largest number of instances read for one series from the node.
MAX_INSTANCES = 10_000
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: Relative spread of slice gaps above which spacing counts as uneven.
_SPACING_TOLERANCE = 0.05


class _BlobSource(Protocol):
    def get(self, digest: str) -> bytes: ...


@dataclass(frozen=True)
class SeriesVolume:
    """One series as a volume.

    Attributes
    ----------
    series_instance_uid, study_instance_uid : str
        The series' and study's UIDs (empty if the header has none).
    modality : str
        Modality (0008,0060), upper case (``""`` if absent).
    headers : Dataset
        The first instance's data set without its pixel data. Holds PHI for data that are
        not yet de-identified: never log or print its values.
    voxels : ndarray of float32, shape (z, y, x)
        Pixel values in modality units (HU for CT) after the Modality LUT.
    spacing : tuple of float
        ``(z, y, x)`` voxel spacing in mm: the median gap between sorted slice positions
        (else Spacing Between Slices, else Slice Thickness, else 1), then Pixel Spacing's
        row and column spacing (else 1).
    photometric : str
        Photometric Interpretation of the first image (``MONOCHROME1`` shows inverted).
    problems : tuple of str
        What went wrong while loading; empty when nothing did.
    """

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    headers: Dataset = field(repr=False, compare=False)
    voxels: npt.NDArray[np.float32] = field(repr=False, compare=False)
    spacing: tuple[float, float, float]
    photometric: str = "MONOCHROME2"
    problems: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, columns)``."""
        z, y, x = self.voxels.shape
        return int(z), int(y), int(x)


@dataclass
class _Frame:
    pixels: npt.NDArray[np.float32]
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    instance_number: int | None
    rank: int
    frame: int


@dataclass
class _Group:
    first: Dataset
    frames: list[_Frame] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def load_series_files(paths: Iterable[Path]) -> list[SeriesVolume]:
    """Read DICOM files and return one volume per series, in order of first appearance.

    Files that are not DICOM or hold no pixel data (reports, structured documents) are
    skipped. Images that cannot be decoded are left out and recorded as a problem.

    Parameters
    ----------
    paths : iterable of Path
        The files; folders are not expanded here.

    Returns
    -------
    list of SeriesVolume

    Raises
    ------
    InvalidInput
        If no file holds a decodable image.
    """
    files = list(paths)
    return _load(_read_files(files), len(files), skip_invalid=True)


def _read_files(files: list[Path]) -> Iterator[bytes]:
    for path in files:  # one file in memory at a time: only the decoded pixels are kept
        try:
            yield path.read_bytes()
        except OSError as exc:
            raise InvalidInput(
                f"a file could not be read ({exc.__class__.__name__}); check the path "
                "and its permissions"
            ) from None


def load_series_from_node(
    catalog: Catalog, store: _BlobSource, series_instance_uid: str
) -> SeriesVolume:
    """Read one catalogued series from the node's blob store.

    Parameters
    ----------
    catalog : Catalog
        The node's catalogue (``find_instances`` gives each instance's blob digest).
    store : BlobStore
        Anything with ``get(digest) -> bytes``.
    series_instance_uid : str
        The series to read.

    Returns
    -------
    SeriesVolume

    Raises
    ------
    NotFound
        If the catalogue has no instance of the series.
    InvalidInput
        If none of its instances holds a decodable image.
    """
    instances = catalog.find_instances(series_instance_uid=series_instance_uid, limit=MAX_INSTANCES)
    if not instances:
        raise NotFound(
            "no instance of that series is catalogued; list the node's series with "
            "`biobank ls series`"
        )
    blobs = (catalog_blob(store, summary.blob_digest) for summary in instances)
    volumes = _load(blobs, len(instances), skip_invalid=False)
    for volume in volumes:
        if volume.series_instance_uid == series_instance_uid:
            return volume
    return volumes[0]


def catalog_blob(store: _BlobSource, digest: str) -> bytes:
    """The bytes of a stored instance, with a clear error when the blob is missing."""
    try:
        return store.get(digest)
    except BiobankError:
        raise
    except (OSError, KeyError) as exc:
        raise NotFound(
            f"the stored blob {digest[:12]}… is missing ({exc.__class__.__name__}); "
            "run `biobank verify` on the node"
        ) from None


def _load(blobs: Iterable[bytes], total: int, *, skip_invalid: bool) -> list[SeriesVolume]:
    groups: dict[str, _Group] = {}
    for rank, data in enumerate(blobs, start=1):
        try:
            ds = read_dataset(data, source=f"image {rank} of {total}")
        except InvalidDicom:
            if skip_invalid:
                continue
            raise
        if not any(k in ds for k in _PIXEL_KEYWORDS):
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        group = groups.get(uid)
        if group is None:
            group = groups[uid] = _Group(first=ds)
        try:
            group.frames.extend(_frames(ds, rank))
        except Exception as exc:  # noqa: BLE001 - any decoder failure: leave the image out
            group.problems.append(
                f"image {rank} of {total}: pixel data could not be decoded "
                f"({exc.__class__.__name__}); it is left out"
            )
    volumes = [_volume(group) for group in groups.values() if group.frames]
    if not volumes:
        raise InvalidInput(
            "no decodable DICOM image was found; give the folder or files of an image "
            "series (CT, MR, ...)"
        )
    return volumes


def _frames(ds: Dataset, rank: int) -> list[_Frame]:
    arr = np.asarray(pixel_array(ds))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        arr = arr[np.newaxis]
    if samples > 1:
        arr = arr.mean(axis=-1)  # colour shown as grey: QC and sheets work on luminance
    number = ds.get("InstanceNumber")
    instance_number = int(number) if number not in (None, "") else None
    out: list[_Frame] = []
    for index in range(arr.shape[0]):
        values = _modality(arr[index], ds, index, samples)
        out.append(
            _Frame(
                pixels=values,
                position=_position(ds, index),
                orientation=_orientation(ds, index),
                instance_number=instance_number,
                rank=rank,
                frame=index,
            )
        )
    return out


def _functional_item(ds: Dataset, index: int, keyword: str) -> Dataset | None:
    for group_keyword, pick in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(group_keyword)
        if not groups or pick >= len(groups):
            continue
        items = groups[pick].get(keyword)
        if items:
            item: Dataset = items[0]
            return item
    return None


def _modality(
    arr: npt.NDArray[Any], ds: Dataset, index: int, samples: int
) -> npt.NDArray[np.float32]:
    if samples == 1 and ds.get("ModalityLUTSequence") and arr.dtype.kind in "iu":
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    values = arr.astype(np.float32)
    if samples > 1:
        return values
    source = _functional_item(ds, index, "PixelValueTransformationSequence") or ds
    try:
        slope = float(source.get("RescaleSlope", 1) or 1)
        intercept = float(source.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return values  # lenient: an unreadable rescale is ignored (QC then judges values)
    if slope != 1:
        values *= np.float32(slope)
    if intercept:
        values += np.float32(intercept)
    return values


def finite_floats(value: Any, count: int) -> tuple[float, ...] | None:
    """``count`` finite numbers read from a multi-valued attribute, or None."""
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(np.isfinite(numbers)):
        return None
    return numbers


def _position(ds: Dataset, index: int) -> tuple[float, float, float] | None:
    item = _functional_item(ds, index, "PlanePositionSequence")
    value = (item or ds).get("ImagePositionPatient")
    numbers = finite_floats(value, 3) if value is not None else None
    return (numbers[0], numbers[1], numbers[2]) if numbers else None


def _orientation(ds: Dataset, index: int) -> tuple[float, ...] | None:
    item = _functional_item(ds, index, "PlaneOrientationSequence")
    value = (item or ds).get("ImageOrientationPatient")
    return finite_floats(value, 6) if value is not None else None


def _normal(orientation: tuple[float, ...]) -> npt.NDArray[np.float64] | None:
    row = np.asarray(orientation[:3])
    col = np.asarray(orientation[3:])
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    return normal / norm if norm > 1e-6 else None


def _volume(group: _Group) -> SeriesVolume:
    problems = list(group.problems)
    frames = group.frames
    sizes = Counter(f.pixels.shape for f in frames)
    if len(sizes) > 1:
        size, _ = sizes.most_common(1)[0]
        left_out = len(frames) - sizes[size]
        frames = [f for f in frames if f.pixels.shape == size]
        problems.append(
            f"mixed image sizes: {left_out} image(s) of another size than the most common "
            f"{size[0]}x{size[1]} are left out"
        )
    frames, z_spacing, order_problems = _sort(frames, group.first)
    problems.extend(order_problems)
    ds = group.first
    voxels = np.stack([f.pixels for f in frames]).astype(np.float32, copy=False)
    return SeriesVolume(
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        modality=str(ds.get("Modality", "") or "").upper(),
        headers=_without_pixels(ds),
        voxels=voxels,
        spacing=(z_spacing, *_pixel_spacing(ds)),
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2"),
        problems=tuple(problems),
    )


def _sort(frames: list[_Frame], ds: Dataset) -> tuple[list[_Frame], float, list[str]]:
    problems: list[str] = []
    fallback = _header_spacing(ds)
    orientation = next((f.orientation for f in frames if f.orientation), None)
    normal = _normal(orientation) if orientation else None
    if normal is None or any(f.position is None for f in frames):
        if len(frames) > 1:
            problems.append(
                "slice positions or orientation missing: slices are ordered by Instance "
                "Number, and the slice spacing comes from the header"
            )
        ordered = sorted(
            frames,
            key=lambda f: (
                f.instance_number is None,
                f.instance_number or 0,
                f.rank,
                f.frame,
            ),
        )
        return ordered, fallback, problems
    keyed = sorted(
        ((float(np.dot(normal, f.position or (0.0, 0.0, 0.0))), f) for f in frames),
        key=lambda pair: (pair[0], pair[1].rank, pair[1].frame),
    )
    ordered = [f for _, f in keyed]
    distances = np.asarray([d for d, _ in keyed])
    if len(distances) < 2:
        return ordered, fallback, problems
    gaps = np.diff(distances)
    duplicates = int(np.sum(gaps < 1e-3))
    if duplicates:
        problems.append(
            f"{duplicates} slice(s) share a position with another slice (repeated "
            "acquisitions or several stacks in one series)"
        )
    positive = gaps[gaps >= 1e-3]
    if positive.size == 0:
        return ordered, fallback, problems
    spacing = float(np.median(positive))
    if float(np.max(np.abs(positive - spacing))) > _SPACING_TOLERANCE * spacing:
        problems.append(
            f"uneven slice spacing: gaps from {float(positive.min()):.3g} to "
            f"{float(positive.max()):.3g} mm (median {spacing:.3g} mm)"
        )
    return ordered, spacing, problems


def _header_spacing(ds: Dataset) -> float:
    item = _functional_item(ds, 0, "PixelMeasuresSequence")
    for source in (item, ds):
        if source is None:
            continue
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            try:
                value = float(source.get(keyword) or 0)
            except (TypeError, ValueError):
                continue
            if value > 0 and np.isfinite(value):
                return value
    return 1.0


def _pixel_spacing(ds: Dataset) -> tuple[float, float]:
    item = _functional_item(ds, 0, "PixelMeasuresSequence")
    for source in (item, ds):
        if source is None or source.get("PixelSpacing") is None:
            continue
        numbers = finite_floats(source.get("PixelSpacing"), 2)
        if numbers and numbers[0] > 0 and numbers[1] > 0:
            return numbers[0], numbers[1]
    return 1.0, 1.0


def _without_pixels(ds: Dataset) -> Dataset:
    header = Dataset()
    for elem in ds:
        if elem.keyword not in _PIXEL_KEYWORDS:
            header.add(elem)
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None:
        header.file_meta = file_meta
    return header


__all__ = [
    "MAX_INSTANCES",
    "SeriesVolume",
    "catalog_blob",
    "load_series_from_node",
    "load_series_files",
]

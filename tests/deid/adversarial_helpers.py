"""Builders and checks shared by the adversarial, property and reference tests of de-id.

Everything here is synthetic: names, IDs and UIDs are made up and carry a marker (``QZ``)
so that finding one in an output can only mean it leaked.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

#: Patient identity planted in built datasets.
NAME = "QZBRANDT^ELSPETH^MARGARETE"
FAMILY = "QZBRANDT"
GIVEN = "ELSPETH"
MRN = "QZ7734521"
ISSUER = "QZ-HOSPITAL-NORTH"


#: Root of the UIDs the tests make (pydicom's root for generated UIDs).
UID_ROOT = "1.2.826.0.1.3680043.8.498."


def uid(*parts: object) -> str:
    """A deterministic UID under :data:`UID_ROOT` derived from ``parts``."""
    return str(generate_uid(prefix=UID_ROOT, entropy_srcs=[repr(parts)]))


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """A code sequence item."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def make_image(
    *,
    name: str = NAME,
    patient_id: str = MRN,
    modality: str = "CT",
    sop_class: str = CTImageStorage,
    rows: int = 8,
    columns: int = 8,
    key: object = 0,
    **attributes: object,
) -> Dataset:
    """A small, valid-enough native 16-bit image with identity planted; ``key`` varies UIDs."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid("sop", key)
    ds.StudyInstanceUID = uid("study", key)
    ds.SeriesInstanceUID = uid("series", key)
    ds.FrameOfReferenceUID = uid("for", key)
    ds.Modality = modality
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientSex = "F"
    ds.StudyDate = "20240315"
    ds.StudyTime = "101530"
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = (np.arange(rows * columns, dtype="<u2") % 4000).tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def with_file_meta(ds: Dataset, syntax: str = ExplicitVRLittleEndian, **meta: object) -> Dataset:
    """Give ``ds`` a file meta group (plus any extra file meta attributes)."""
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    file_meta.TransferSyntaxUID = syntax
    for keyword, value in meta.items():
        setattr(file_meta, keyword, value)
    ds.file_meta = file_meta
    return ds


def encode(ds: Dataset, *, implicit: bool = False, preamble: bytes | None = None) -> bytes:
    """Encode ``ds`` as a Part 10 file (explicit VR LE unless ``implicit``)."""
    from pydicom.uid import ImplicitVRLittleEndian

    if "TransferSyntaxUID" not in getattr(ds, "file_meta", FileMetaDataset()):
        with_file_meta(ds, ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian)
    if preamble is not None:
        ds.preamble = preamble
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def read(data: bytes) -> Dataset:
    """Parse file bytes."""
    return dcmread(io.BytesIO(data))


def walk(ds: Dataset, path: str = "") -> Iterator[tuple[str, DataElement]]:
    """Every element of ``ds`` at every depth, with a readable path."""
    for elem in ds:
        where = f"{path}{elem.tag}"
        yield where, elem
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from walk(item, f"{where}[{i}]>")


def tags_anywhere(ds: Dataset) -> set[int]:
    """Tags of every element at any depth."""
    return {int(elem.tag) for _, elem in walk(ds)}


def values_of(ds: Dataset, tag: int) -> list[str]:
    """String values of every element ``tag`` at any depth."""
    found: list[str] = []
    for _, elem in walk(ds):
        if int(elem.tag) == tag and elem.value not in (None, ""):
            value = elem.value
            if isinstance(value, str | bytes):
                found.append(value.decode("latin-1") if isinstance(value, bytes) else value)
            else:
                try:
                    found.extend(str(v) for v in value)
                except TypeError:
                    found.append(str(value))
    return found


def empty_items(ds: Dataset) -> list[str]:
    """Paths of sequence items left with no element in them (karnak #51)."""
    return [
        f"{where}[{i}]"
        for where, elem in walk(ds)
        if elem.VR == "SQ"
        for i, item in enumerate(elem.value)
        if len(item) == 0
    ]


def leaks(data: bytes, values: Iterable[str | bytes]) -> list[str]:
    """Which ``values`` occur in ``data`` (UTF-8 and Latin-1, case-insensitive)."""
    haystack = data.upper()
    found: list[str] = []
    for value in values:
        needles: set[bytes] = set()
        if isinstance(value, bytes):
            needles.add(value)
        else:
            for encoding in ("utf-8", "latin-1"):
                try:
                    needles.add(value.encode(encoding))
                except UnicodeEncodeError:
                    continue
        if any(n.upper() in haystack or n in data for n in needles if n):
            found.append(repr(value))
    return found


def assert_absent(data: bytes, *values: str | bytes) -> None:
    """Assert none of ``values`` occurs anywhere in the output bytes."""
    found = leaks(data, values)
    assert not found, f"PHI found in the output bytes: {', '.join(found)}"


@dataclass
class BrightTextDetector:
    """A stand-in for OCR: 'text' is any pixel rendered at full brightness (>= 250).

    Test images draw their burned-in text as saturated blocks; everything else stays darker.
    The detector returns one box per frame around the saturated pixels and records the frames
    it saw, so a test can check that every frame was looked at and that nothing is left.
    """

    threshold: int = 250
    calls: int = 0
    boxes_found: int = 0
    shapes: list[tuple[int, ...]] = field(default_factory=list)

    def detect(self, image: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int]]:
        self.calls += 1
        self.shapes.append(tuple(image.shape))
        gray = image if image.ndim == 2 else image[..., :3].min(axis=-1)
        ys, xs = np.nonzero(gray >= self.threshold)
        if not len(xs):
            return []
        self.boxes_found += 1
        return [(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)]


def rgb_frames(
    n_frames: int,
    rows: int,
    columns: int,
    text_boxes: dict[int, tuple[int, int, int, int]],
) -> npt.NDArray[np.uint8]:
    """RGB frames of a dim gradient 'anatomy' with white text blocks on the given frames."""
    frames = np.zeros((n_frames, rows, columns, 3), dtype=np.uint8)
    gradient = (np.arange(columns, dtype=np.uint16) * 150 // max(columns - 1, 1)).astype(np.uint8)
    frames[..., 0] = gradient
    frames[..., 1] = gradient // 2
    frames[..., 2] = 40
    for frame, (x0, y0, x1, y1) in text_boxes.items():
        frames[frame, y0:y1, x0:x1, :] = 255
    return frames


def make_ultrasound(
    frames: npt.NDArray[np.uint8],
    *,
    regions: list[tuple[int, int, int, int]] | None = None,
    key: object = "us",
) -> Dataset:
    """An RGB (multi-frame) Ultrasound image without BurnedInAnnotation."""
    n_frames, rows, columns = frames.shape[:3]
    sop_class = (
        "1.2.840.10008.5.1.4.1.1.3.1" if n_frames > 1 else "1.2.840.10008.5.1.4.1.1.6.1"
    )
    ds = make_image(modality="US", sop_class=sop_class, rows=rows, columns=columns, key=key)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    if n_frames > 1:
        ds.NumberOfFrames = n_frames
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = "33.3"
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    if regions:
        items = []
        for x0, y0, x1, y1 in regions:
            item = Dataset()
            item.RegionSpatialFormat = 1
            item.RegionDataType = 1
            item.RegionFlags = 0
            item.RegionLocationMinX0 = x0
            item.RegionLocationMinY0 = y0
            item.RegionLocationMaxX1 = x1
            item.RegionLocationMaxY1 = y1
            items.append(item)
        ds.SequenceOfUltrasoundRegions = Sequence(items)
    return ds


def decoded_frames(ds: Dataset) -> npt.NDArray[np.generic]:
    """The output's pixels as ``(frames, rows, columns[, samples])``."""
    arr = ds.pixel_array
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames == 1:
        arr = arr[np.newaxis, ...]
    return arr


__all__ = [
    "FAMILY",
    "GIVEN",
    "ISSUER",
    "MRN",
    "NAME",
    "UID_ROOT",
    "BrightTextDetector",
    "assert_absent",
    "code_item",
    "decoded_frames",
    "empty_items",
    "encode",
    "leaks",
    "make_image",
    "make_ultrasound",
    "read",
    "rgb_frames",
    "tags_anywhere",
    "uid",
    "values_of",
    "walk",
    "with_file_meta",
]

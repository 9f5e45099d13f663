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


def private_not_on_safe_list(ds: Dataset) -> list[str]:
    """Private data elements at any depth that the packaged safe list does not name."""
    from biobank.deid.private import load_safe_private

    safe = load_safe_private()
    found: list[str] = []
    for elem in ds:
        tag = int(elem.tag)
        if tag >> 16 & 1 and tag & 0xFFFF > 0xFF:
            creator_tag = (tag & 0xFFFF0000) | (tag >> 8 & 0xFF)
            creator = str(ds[creator_tag].value) if creator_tag in ds else ""
            if not creator or safe.lookup(tag >> 16, creator, tag & 0xFF) is None:
                found.append(f"{elem.tag} {creator!r}")
        if elem.VR == "SQ":
            for item in elem.value:
                found.extend(private_not_on_safe_list(item))
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
    sop_class = "1.2.840.10008.5.1.4.1.1.3.1" if n_frames > 1 else "1.2.840.10008.5.1.4.1.1.6.1"
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


RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def make_rtstruct(ct: list[Dataset], *, key: object = "rtstruct") -> Dataset:
    """An RT Structure Set on ``ct`` whose contours reference every slice (pymedphys #372)."""
    first = ct[0]
    ds = Dataset()
    ds.SpecificCharacterSet = first.get("SpecificCharacterSet", "ISO_IR 100")
    ds.InstanceCreationDate = first.StudyDate
    ds.InstanceCreationTime = first.StudyTime
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = uid(key, "sop", first.SOPInstanceUID)
    for keyword in (
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ReferringPhysicianName",
        "StudyDescription",
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
    ):
        if keyword in first:
            setattr(ds, keyword, first[keyword].value)
    ds.Modality = "RTSTRUCT"
    ds.Manufacturer = "QZ Contouring"
    ds.OperatorsName = "QZCONTOUR^DOSIMETRIST"
    ds.SeriesInstanceUID = uid(key, "series", first.SeriesInstanceUID)
    ds.SeriesNumber = "90"
    ds.SeriesDescription = "RTSTRUCT"
    ds.StructureSetLabel = "QZ PLAN"
    ds.StructureSetDate = first.StudyDate
    ds.StructureSetTime = first.StudyTime
    contour_images = []
    for image in ct:
        item = Dataset()
        item.ReferencedSOPClassUID = image.SOPClassUID
        item.ReferencedSOPInstanceUID = image.SOPInstanceUID
        contour_images.append(item)
    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    series.ContourImageSequence = Sequence(contour_images)
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study (retired), as TPS do
    study.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    roi = Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
    roi.ROIName = "GTV"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = Sequence([roi])
    contours = []
    for image in ct:
        x, y, z = (float(v) for v in image.ImagePositionPatient)
        contour = Dataset()
        reference = Dataset()
        reference.ReferencedSOPClassUID = image.SOPClassUID
        reference.ReferencedSOPInstanceUID = image.SOPInstanceUID
        contour.ContourImageSequence = Sequence([reference])
        contour.ContourGeometricType = "CLOSED_PLANAR"
        contour.NumberOfContourPoints = 4
        points = [(x + 100, y + 100), (x + 140, y + 100), (x + 140, y + 140), (x + 100, y + 140)]
        contour.ContourData = [f"{v:.2f}" for px, py in points for v in (px, py, z)]
        contours.append(contour)
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ROIDisplayColor = [255, 0, 0]
    roi_contour.ContourSequence = Sequence(contours)
    ds.ROIContourSequence = Sequence([roi_contour])
    observation = Dataset()
    observation.ObservationNumber = 1
    observation.ReferencedROINumber = 1
    observation.RTROIInterpretedType = "GTV"
    observation.ROIInterpreter = "QZCONTOUR^DOSIMETRIST"
    ds.RTROIObservationsSequence = Sequence([observation])
    ds.ApprovalStatus = "UNAPPROVED"
    return with_file_meta(ds)


def make_seg(ct: list[Dataset], *, key: object = "seg") -> Dataset:
    """A binary Segmentation of ``ct`` made with highdicom (a box on the middle slices)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    mask = np.zeros((len(ct), int(ct[0].Rows), int(ct[0].Columns)), dtype=bool)
    mask[1:-1, 20:40, 20:40] = True
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="nodule",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=ct,
        pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=uid(key, "series"),
        series_number=100,
        sop_instance_uid=uid(key, "sop"),
        instance_number=1,
        manufacturer="QZ Segmenter",
        manufacturer_model_name="QZ Model",
        software_versions="1.0",
        device_serial_number="QZSEG001",
    )
    return seg


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
    "make_rtstruct",
    "make_seg",
    "make_ultrasound",
    "private_not_on_safe_list",
    "read",
    "rgb_frames",
    "tags_anywhere",
    "uid",
    "values_of",
    "walk",
    "with_file_meta",
]

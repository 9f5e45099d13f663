"""One MR series' headers normalised once: the values the classifier's rules read.

Classic MR Image Storage keeps the acquisition parameters in the dataset; Enhanced MR Image
Storage keeps them in the shared and per-frame functional groups; the vendors keep b-values
and pulse-sequence names in private elements. :func:`summarise` reads all of them into one
:class:`SeriesSummary`.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from biobank.curation.keywords import normalise_text
from biobank.curation.models import Orientation

#: A slice normal whose largest direction cosine is below this is oblique (≈ 37° off-axis).
#: Chosen below the 0.87 (30°) of the research notes so that the usual angulated prostate
#: and spine "axial" series stay axial.
OBLIQUE_COSINE = 0.8
#: Private b-value tags: (group, element offset, private creator, VR reading).
SIEMENS_B = (0x0019, 0x0C, "SIEMENS MR HEADER")
GE_B = (0x0043, 0x39, "GEMS_PARM_01")
PHILIPS_B = (0x2001, 0x03, "Philips Imaging DD 001")
GE_PULSE_NAMES = ((0x0019, 0x9C, "GEMS_ACQU_01"), (0x0019, 0x9E, "GEMS_ACQU_01"))


@dataclass
class SeriesSummary:
    """One series' headers normalised once (research notes §2.2).

    Times are in ms, b-values in s/mm². ``text`` is the normalised SeriesDescription and
    ProtocolName; it is never put in evidence or logs.
    """

    series_instance_uid: str = ""
    study_instance_uid: str = ""
    modality: str = ""
    sop_class_uid: str = ""
    manufacturer: str = ""
    image_type: list[str] = field(default_factory=list)
    image_type_tokens: set[str] = field(default_factory=set)
    scanning_sequence: set[str] = field(default_factory=set)
    sequence_variant: set[str] = field(default_factory=set)
    scan_options: set[str] = field(default_factory=set)
    acquisition_type: str = ""
    sequence_names: list[str] = field(default_factory=list)
    acquisition_contrast: str = ""
    tr: list[float] = field(default_factory=list)
    te: list[float] = field(default_factory=list)
    ti: list[float] = field(default_factory=list)
    flip: list[float] = field(default_factory=list)
    b_values: list[float] = field(default_factory=list)
    b_sources: list[str] = field(default_factory=list)
    ge_b_values: list[float] = field(default_factory=list)
    contrast_agent: bool = False
    angio: bool = False
    temporal_positions: int = 1
    orientations: list[Orientation] = field(default_factory=list)
    n_instances: int = 0
    n_slices: int = 0
    slice_thickness: float | None = None
    pixel_area: float | None = None
    series_number: int | None = None
    acquisition_time: str | None = None
    text: str = " "
    enhanced: bool = False


# --------------------------------------------------------------------------- reading values


def read_floats(value: Any) -> list[float]:
    """Numbers of a value: a number, a multi-value, backslash-separated text or bytes."""
    if value is None:
        return []
    if isinstance(value, bytes):  # a private value read as UN
        value = value.decode("latin-1", "replace").strip("\x00 ")
    if isinstance(value, str):
        items: list[Any] = value.split("\\")
    elif isinstance(value, (int, float)):
        items = [value]
    else:
        try:
            items = list(value)
        except TypeError:
            items = [value]
    out: list[float] = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out.append(number)
    return out


def read_strings(value: Any) -> list[str]:
    """The non-empty strings of a value (multi-value, backslash-separated text or bytes)."""
    if value is None:
        return []
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if isinstance(value, str):
        return [v.strip() for v in value.split("\\") if v.strip()]
    try:
        return [str(v).strip() for v in value if str(v).strip()]
    except TypeError:
        return [str(value).strip()]


def get_value(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)``, with a malformed value read as missing."""
    try:
        return ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed value reads as missing
        return None


def _private(ds: Dataset, group: int, offset: int, creator: str) -> Any:
    """A private value by creator, else by the usual tag when that creator is absent."""
    with contextlib.suppress(KeyError, ValueError):  # no such creator: try the usual tag
        return ds.get_private_item(group, offset, creator).value
    tag = BaseTag((group << 16) | 0x1000 | offset)
    if tag in ds and BaseTag((group << 16) | 0x0010) not in ds:
        try:
            return ds[tag].value
        except Exception:  # noqa: BLE001
            return None
    return None


def _frame_items(ds: Dataset) -> Iterator[Dataset]:
    """The shared functional group item, then every per-frame item (enhanced MR)."""
    for keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = get_value(ds, keyword)
        if seq:
            yield from seq


def _fg_values(ds: Dataset, macro: str, keyword: str) -> list[Any]:
    """Every value of ``keyword`` in functional-group macro ``macro``."""
    values: list[Any] = []
    for item in _frame_items(ds):
        for macro_item in get_value(item, macro) or []:
            value = get_value(macro_item, keyword)
            if value is not None and value != "":
                values.append(value)
    return values


def time_seconds(value: str | None) -> float | None:
    """Seconds since midnight of a TM (or the time part of a DT); None if unreadable."""
    if not value:
        return None
    text = value.strip()
    if len(text) >= 14 and text[:8].isdigit():  # a DateTime: keep the time part
        text = text[8:]
    digits = text.split(".")[0]
    if not digits.isdigit() or len(digits) < 2:
        return None
    digits = digits.ljust(6, "0")
    frac = float("0." + text.split(".")[1]) if "." in text and text.split(".")[1].isdigit() else 0
    return int(digits[:2]) * 3600 + int(digits[2:4]) * 60 + int(digits[4:6]) + frac


def orientation_of(iop: Sequence[float]) -> Orientation:
    """The plane of Image Orientation (Patient) ``iop`` (six direction cosines).

    The slice normal is row × column; its dominant patient axis gives the plane (x:
    sagittal, y: coronal, z: axial). When no component reaches :data:`OBLIQUE_COSINE` the
    plane is oblique.
    """
    if len(iop) != 6:
        return Orientation.UNKNOWN
    r, c = iop[:3], iop[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    if norm < 1e-6:
        return Orientation.UNKNOWN
    cos = [abs(v) / norm for v in n]
    axis = max(range(3), key=lambda i: cos[i])
    if cos[axis] < OBLIQUE_COSINE:
        return Orientation.OBLIQUE
    return (Orientation.SAGITTAL, Orientation.CORONAL, Orientation.AXIAL)[axis]


# --------------------------------------------------------------------------- summary


def group_series(headers: Iterable[Dataset]) -> dict[str, list[Dataset]]:
    """Headers grouped by Series Instance UID, in first-seen order (no UID: skipped)."""
    groups: dict[str, list[Dataset]] = {}
    for ds in headers:
        uid = str(get_value(ds, "SeriesInstanceUID") or "")
        if uid:
            groups.setdefault(uid, []).append(ds)
    return groups


def summarise(headers: Sequence[Dataset]) -> SeriesSummary:
    """Normalise the headers of one series into a :class:`SeriesSummary`."""
    s = SeriesSummary(n_instances=len(headers))
    if not headers:
        return s
    first = headers[0]
    s.series_instance_uid = str(get_value(first, "SeriesInstanceUID") or "")
    s.study_instance_uid = str(get_value(first, "StudyInstanceUID") or "")
    s.modality = str(get_value(first, "Modality") or "").upper()
    s.sop_class_uid = str(get_value(first, "SOPClassUID") or "")
    s.manufacturer = str(get_value(first, "Manufacturer") or "").upper()
    s.acquisition_type = str(get_value(first, "MRAcquisitionType") or "").upper()
    number = read_floats(get_value(first, "SeriesNumber"))
    s.series_number = int(number[0]) if number else None
    s.text = normalise_text(
        str(get_value(first, "SeriesDescription") or ""),
        str(get_value(first, "ProtocolName") or ""),
    )
    s.image_type = [t.upper() for t in read_strings(get_value(first, "ImageType"))]
    s.acquisition_contrast = str(get_value(first, "AcquisitionContrast") or "").upper()
    thickness: list[float] = []
    spacing: list[float] = []
    positions: Counter[tuple[float, ...]] = Counter()
    times: list[float] = []
    temporal: set[str] = set()
    iops: set[tuple[float, ...]] = set()
    names: list[str] = []

    def add_iop(value: Any) -> None:
        cos = read_floats(value)
        if len(cos) == 6:
            iops.add(tuple(round(v, 3) for v in cos))

    for ds in headers:
        s.image_type_tokens.update(t.upper() for t in read_strings(get_value(ds, "ImageType")))
        s.scanning_sequence.update(
            t.upper() for t in read_strings(get_value(ds, "ScanningSequence"))
        )
        s.sequence_variant.update(t.upper() for t in read_strings(get_value(ds, "SequenceVariant")))
        s.scan_options.update(
            t.upper().removesuffix("_GEMS") for t in read_strings(get_value(ds, "ScanOptions"))
        )
        names += read_strings(get_value(ds, "SequenceName")) + read_strings(
            get_value(ds, "PulseSequenceName")
        )
        for group, offset, creator in GE_PULSE_NAMES:
            names += read_strings(_private(ds, group, offset, creator))
        s.tr += read_floats(get_value(ds, "RepetitionTime"))
        s.te += read_floats(get_value(ds, "EchoTime"))
        s.ti += read_floats(get_value(ds, "InversionTime"))
        s.flip += read_floats(get_value(ds, "FlipAngle"))
        _read_b_values(ds, s)
        agent = str(get_value(ds, "ContrastBolusAgent") or "").strip().lower()
        if agent and agent not in {"none", "no", "nein", "non", "n", "-"}:
            s.contrast_agent = True
        if str(get_value(ds, "AngioFlag") or "").upper() == "Y":
            s.angio = True
        thickness += read_floats(get_value(ds, "SliceThickness"))
        spacing += read_floats(get_value(ds, "PixelSpacing"))[:2]
        add_iop(get_value(ds, "ImageOrientationPatient"))
        position = read_floats(get_value(ds, "ImagePositionPatient"))
        if len(position) == 3:
            positions[tuple(round(v, 1) for v in position)] += 1
        t = time_seconds(str(get_value(ds, "AcquisitionTime") or "")) or time_seconds(
            str(get_value(ds, "TriggerTime") or "")
        )
        if t is not None:
            times.append(t)
        tpi = get_value(ds, "TemporalPositionIdentifier")
        if tpi not in (None, ""):
            temporal.add(str(tpi))
        ntp = read_floats(get_value(ds, "NumberOfTemporalPositions"))
        if ntp:
            s.temporal_positions = max(s.temporal_positions, int(ntp[0]))
        if get_value(ds, "PerFrameFunctionalGroupsSequence") or get_value(
            ds, "SharedFunctionalGroupsSequence"
        ):
            s.enhanced = True
            _read_enhanced(ds, s, positions, temporal, add_iop, thickness, spacing)
    s.sequence_names = list(dict.fromkeys(n.lower().lstrip("*") for n in names if n))
    s.temporal_positions = max(s.temporal_positions, len(temporal))
    repeats = max(positions.values(), default=1)
    if repeats > 1 and len(set(times)) > 1 and s.temporal_positions < repeats:
        s.temporal_positions = repeats
    s.n_slices = len(positions) or len(headers)
    s.slice_thickness = thickness[0] if thickness else None
    if len(spacing) >= 2:
        s.pixel_area = spacing[0] * spacing[1]
    planes = {orientation_of(iop) for iop in iops}
    s.orientations = sorted(planes)
    acq = [
        str(get_value(ds, "AcquisitionTime") or get_value(ds, "SeriesTime") or "").strip()
        for ds in headers
    ]
    acq = [a for a in acq if time_seconds(a) is not None]
    s.acquisition_time = min(acq, key=lambda a: time_seconds(a) or 0.0) if acq else None
    return s


def _read_b_values(ds: Dataset, s: SeriesSummary) -> None:
    standard = read_floats(get_value(ds, "DiffusionBValue"))
    if standard:
        s.b_values += standard
        s.b_sources.append("DiffusionBValue (0018,9087)")
    siemens = read_floats(_private(ds, *SIEMENS_B))
    if siemens:
        s.b_values += siemens
        s.b_sources.append("Siemens (0019,100C)")
    philips = read_floats(_private(ds, *PHILIPS_B))
    if philips:
        s.b_values += philips
        s.b_sources.append("Philips (2001,1003)")
    ge = read_floats(_private(ds, *GE_B))
    if ge:
        b = ge[0]
        while b >= 1e9:  # some GE software adds 1e9 to the b-value
            b -= 1e9
        s.ge_b_values.append(b)


def _read_enhanced(
    ds: Dataset,
    s: SeriesSummary,
    positions: Counter[tuple[float, ...]],
    temporal: set[str],
    add_iop: Any,
    thickness: list[float],
    spacing: list[float],
) -> None:
    """Enhanced MR: parameters live in the shared and per-frame functional groups."""
    echo = str(get_value(ds, "EchoPulseSequence") or "").upper()
    if echo in {"SPIN", "BOTH"}:
        s.scanning_sequence.add("SE")
    if echo in {"GRADIENT", "BOTH"}:
        s.scanning_sequence.add("GR")
    if str(get_value(ds, "EchoPlanarPulseSequence") or "").upper() == "YES":
        s.scanning_sequence.add("EP")
    if str(get_value(ds, "InversionRecovery") or "").upper() == "YES":
        s.scanning_sequence.add("IR")
    s.tr += [
        v
        for x in _fg_values(ds, "MRTimingAndRelatedParametersSequence", "RepetitionTime")
        for v in read_floats(x)
    ]
    s.flip += [
        v
        for x in _fg_values(ds, "MRTimingAndRelatedParametersSequence", "FlipAngle")
        for v in read_floats(x)
    ]
    s.te += [
        v for x in _fg_values(ds, "MREchoSequence", "EffectiveEchoTime") for v in read_floats(x)
    ]
    s.ti += [
        v for x in _fg_values(ds, "MRModifierSequence", "InversionTimes") for v in read_floats(x)
    ]
    if any(
        str(x).upper() == "YES" for x in _fg_values(ds, "MRModifierSequence", "InversionRecovery")
    ):
        s.scanning_sequence.add("IR")
    b = [
        v for x in _fg_values(ds, "MRDiffusionSequence", "DiffusionBValue") for v in read_floats(x)
    ]
    if b:
        s.b_values += b
        s.b_sources.append("MRDiffusionSequence DiffusionBValue")
    for x in _fg_values(ds, "MRImageFrameTypeSequence", "FrameType"):
        s.image_type_tokens.update(t.upper() for t in read_strings(x))
    for x in _fg_values(ds, "MRImageFrameTypeSequence", "AcquisitionContrast"):
        s.acquisition_contrast = s.acquisition_contrast or str(x).upper()
    if any(
        str(x).upper() == "YES"
        for x in _fg_values(ds, "ContrastBolusUsageSequence", "ContrastBolusAgentAdministered")
    ):
        s.contrast_agent = True
    for x in _fg_values(ds, "PlaneOrientationSequence", "ImageOrientationPatient"):
        add_iop(x)
    for x in _fg_values(ds, "PixelMeasuresSequence", "SliceThickness"):
        thickness += read_floats(x)
    for x in _fg_values(ds, "PixelMeasuresSequence", "PixelSpacing")[:1]:
        spacing += read_floats(x)[:2]
    for x in _fg_values(ds, "PlanePositionSequence", "ImagePositionPatient"):
        position = read_floats(x)
        if len(position) == 3:
            positions[tuple(round(v, 1) for v in position)] += 1
    for x in _fg_values(ds, "FrameContentSequence", "TemporalPositionIndex"):
        temporal.add(str(x))


__all__ = [
    "GE_B",
    "GE_PULSE_NAMES",
    "OBLIQUE_COSINE",
    "PHILIPS_B",
    "SIEMENS_B",
    "SeriesSummary",
    "get_value",
    "group_series",
    "orientation_of",
    "read_floats",
    "read_strings",
    "summarise",
    "time_seconds",
]

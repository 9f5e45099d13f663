"""Synthetic MR header builders for the classifier tests (no pixels, no PHI)."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

AXIAL = [1, 0, 0, 0, 1, 0]
CORONAL = [1, 0, 0, 0, 0, -1]
SAGITTAL = [0, 1, 0, 0, 0, -1]
STUDY = "1.2.826.0.1.3680043.10.1.1"


def mr_series(
    n: int = 3,
    *,
    study: str = STUDY,
    series: str | None = None,
    iop: list[float] | None = None,
    per_slice: list[dict[str, Any]] | None = None,
    private: list[tuple[int, int, str, str, Any]] | None = None,
    **attrs: Any,
) -> list[Dataset]:
    """``n`` headers of one MR series with ``attrs`` set on each (keyword → value).

    ``private`` is a list of (group, offset, creator, VR, value) private elements;
    ``per_slice`` overrides attributes instance by instance.
    """
    uid = series or generate_uid()
    out: list[Dataset] = []
    for i in range(n):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = uid
        ds.Modality = "MR"
        ds.SeriesNumber = attrs.pop("SeriesNumber", 1) if i == 0 else out[0].SeriesNumber
        ds.InstanceNumber = i + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.MRAcquisitionType = "2D"
        ds.Rows, ds.Columns = 256, 256
        ds.PixelSpacing = [0.9, 0.9]
        ds.SliceThickness = 3.0
        orientation = iop if iop is not None else AXIAL
        ds.ImageOrientationPatient = orientation
        r, c = orientation[:3], orientation[3:]
        normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
        ds.ImagePositionPatient = [round(-100 + 3.0 * i * v, 2) for v in normal]
        ds.AcquisitionTime = "101500.000"
        for key, value in attrs.items():
            setattr(ds, key, value)
        for group, offset, creator, vr, value in private or []:
            ds.private_block(group, creator, create=True).add_new(offset, vr, value)
        if per_slice:
            for key, value in per_slice[i].items():
                setattr(ds, key, value)
        out.append(ds)
    return out


def enhanced_mr(
    frames: int,
    *,
    tr: float,
    te: float,
    ti: float | None = None,
    b_values: list[float] | None = None,
    echo: str = "GRADIENT",
    acq_type: str = "3D",
    description: str = "",
    image_type: list[str] | None = None,
) -> list[Dataset]:
    """One Enhanced MR Image Storage instance with functional groups (per-frame b-values)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.SeriesNumber = 7
    ds.ImageType = image_type or ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.MRAcquisitionType = acq_type
    ds.EchoPulseSequence = echo
    ds.InversionRecovery = "YES" if ti is not None else "NO"
    ds.NumberOfFrames = frames
    ds.SeriesDescription = description
    timing = Dataset()
    timing.RepetitionTime = tr
    timing.FlipAngle = 8
    echo_item = Dataset()
    echo_item.EffectiveEchoTime = te
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # coronal
    measures = Dataset()
    measures.SliceThickness = 1.0
    measures.PixelSpacing = [1.0, 1.0]
    shared = Dataset()
    shared.MRTimingAndRelatedParametersSequence = Sequence([timing])
    shared.MREchoSequence = Sequence([echo_item])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    if ti is not None:
        modifier = Dataset()
        modifier.InversionRecovery = "YES"
        modifier.InversionTimes = [ti]
        shared.MRModifierSequence = Sequence([modifier])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for i in range(frames):
        item = Dataset()
        position = Dataset()
        b_index = i % len(b_values) if b_values else 0
        position.ImagePositionPatient = [0, float(i // (len(b_values) if b_values else 1)), 0]
        item.PlanePositionSequence = Sequence([position])
        if b_values:
            diffusion = Dataset()
            diffusion.DiffusionBValue = b_values[b_index]
            item.MRDiffusionSequence = Sequence([diffusion])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    return [ds]


__all__ = ["AXIAL", "CORONAL", "SAGITTAL", "STUDY", "enhanced_mr", "mr_series"]

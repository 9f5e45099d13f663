"""What the series classifier and the default-series choice return.

A :class:`Classification` is one series' label with the evidence that decided it; a
:class:`DefaultChoice` is the default static series of one MR study. Neither carries a
header value that could identify a patient: evidence strings quote tag values of the
acquisition (times, b-values, sequence names) and keywords of our own tables, never free
text from a description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class SeriesLabel(StrEnum):
    """The contrast or role of an MR series."""

    T1W = "T1W"
    T2W = "T2W"
    FLAIR = "FLAIR"
    PD = "PD"
    DWI = "DWI"
    ADC = "ADC"
    DCE = "DCE"
    LOCALIZER = "localizer"
    OTHER = "other"


class Orientation(StrEnum):
    """The acquisition plane, from the slice normal of Image Orientation (Patient)."""

    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"
    OBLIQUE = "oblique"
    MIXED = "mixed"
    UNKNOWN = "unknown"


@dataclass
class Classification:
    """The label of one series and why.

    Attributes
    ----------
    series_instance_uid, study_instance_uid : str
        The series and its study.
    modality : str
        Modality (0008,0060); only ``MR`` series get a contrast label.
    label : SeriesLabel
        The label.
    orientation : Orientation
        The plane; ``mixed`` when a series holds several planes (a 3-plane localizer).
    is3d : bool
        MR Acquisition Type is 3D.
    derived : bool
        Image Type value 1 is DERIVED.
    contrast : bool
        Acquired after a contrast agent (Contrast/Bolus Agent, or a post-contrast keyword).
    confidence : float
        0 to 1: about 0.95 when physics decides and the text agrees, 0.85 physics alone,
        0.6 text alone, 0.4 or less when physics and text disagree.
    evidence : list of str
        Short statements, in the order they were used, e.g. ``"ScanningSequence=SE,
        EchoTime=98 ms, RepetitionTime=4000 ms → T2W (physics)"``.
    needs_review : bool
        A person should look: physics and text disagree, or nothing decided.
    dce_group : str or None
        Shared by the phases of one dynamic series stored as separate series.
    series_number : int or None
        Series Number (0020,0011), used for tie-breaks.
    n_instances : int
        Instances read.
    n_slices : int
        Distinct slice positions (frames for enhanced multi-frame images).
    slice_thickness : float or None
        Slice Thickness in mm.
    pixel_area : float or None
        Row spacing × column spacing in mm².
    acquisition_time : str or None
        The earliest Acquisition Time (or the series time), ``HHMMSS.frac``; used only to
        order DCE phases, never printed.
    """

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    label: SeriesLabel
    orientation: Orientation
    is3d: bool
    derived: bool
    contrast: bool
    confidence: float
    evidence: list[str] = field(default_factory=list)
    needs_review: bool = False
    dce_group: str | None = None
    series_number: int | None = None
    n_instances: int = 0
    n_slices: int = 0
    slice_thickness: float | None = None
    pixel_area: float | None = None
    acquisition_time: str | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values (no acquisition time: it is a date-like value of the source)."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "modality": self.modality,
            "series_number": self.series_number,
            "label": str(self.label),
            "orientation": str(self.orientation),
            "is3d": self.is3d,
            "derived": self.derived,
            "contrast": self.contrast,
            "confidence": round(self.confidence, 2),
            "evidence": list(self.evidence),
            "needs_review": self.needs_review,
            "dce_group": self.dce_group,
            "n_instances": self.n_instances,
            "n_slices": self.n_slices,
            "slice_thickness": self.slice_thickness,
        }


@dataclass(frozen=True)
class DefaultChoice:
    """The default static series of one MR study.

    Attributes
    ----------
    study_instance_uid : str
        The study.
    series_instance_uid : str or None
        The chosen series; None when the study has no usable MR series.
    fallback : bool
        True when no series met every requirement (3D, T2W, axial, original).
    reason : str
        Why this series: the requirements met and the tie-break used, or what was missing.
    candidates : int
        Series that met every requirement.
    """

    study_instance_uid: str
    series_instance_uid: str | None
    fallback: bool
    reason: str
    candidates: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready values."""
        return {
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "fallback": self.fallback,
            "reason": self.reason,
            "candidates": self.candidates,
        }


__all__ = ["Classification", "DefaultChoice", "Orientation", "SeriesLabel"]

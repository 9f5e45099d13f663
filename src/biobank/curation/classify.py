"""MR series classification: physics tags first, vendor sequence names next, descriptions last.

The input is the headers of one series (pydicom Datasets read with
``stop_before_pixels=True``). :func:`~biobank.curation.summary.summarise` normalises them
once into a :class:`SeriesSummary`; :func:`classify_series` applies the ordered rules and
records each piece of evidence; :func:`group_dce` then marks the phases of a dynamic series
stored as separate series. The rules, thresholds and languages are documented in
``docs/curation.md`` ("Series classification").

Evidence strings quote acquisition parameters and the keywords of
:mod:`biobank.curation.keywords`, never the description itself (it may hold PHI).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from biobank.curation.keywords import (
    CONTRAST_TEXT,
    NAME_RULES,
    NO_CONTRAST_TEXT,
    ORIENTATION_TEXT,
    TEXT_RULES,
)
from biobank.curation.models import Classification, Orientation, SeriesLabel
from biobank.curation.summary import (
    OBLIQUE_COSINE,
    SeriesSummary,
    get_value,
    group_series,
    orientation_of,
    read_floats,
    read_strings,
    summarise,
    time_seconds,
)

logger = logging.getLogger(__name__)

L = SeriesLabel

#: TE (ms) at and above which a long-TR spin echo is T2W; below 40 ms it is PD; between,
#: the description decides (dcm2niix: Philips PD < 40 ms, Siemens < 50 ms).
T2_MIN_TE = 60.0
PD_MAX_TE = 40.0
#: TR (ms) at and above which a spin echo is "long TR" (T2W or PD).
LONG_TR = 1500.0
#: Inversion time (ms) at and above which an inversion-recovery spin echo is FLAIR; STIR uses
#: 100–250 ms (fat suppression, T2W) and T1-FLAIR 700–1200 ms (T1W).
FLAIR_MIN_TI = 1500.0
STIR_MAX_TI = 300.0
#: DCE phases stored as separate series: at most this many seconds between two phases.
DCE_MAX_GAP_S = 600.0

CONFIDENCE_AGREE = 0.95
CONFIDENCE_PHYSICS = 0.85
CONFIDENCE_NAME = 0.75
CONFIDENCE_TEXT = 0.6
CONFIDENCE_CONFLICT = 0.35
CONFIDENCE_NONE = 0.2

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MR_SPECTROSCOPY = "1.2.840.10008.5.1.4.1.1.4.2"
_PROJECTION_TOKENS = {"PROJECTION IMAGE", "MIP", "MNIP", "MINIP", "SUB", "SUBTRACTION"}
_DERIVED_DIFFUSION_TOKENS = {"FA", "EXP", "EADC", "TENSOR"}


# --------------------------------------------------------------------------- rules


def _search(pattern: str, text: str) -> bool:
    return re.search(pattern, text) is not None


def _ms(values: list[float]) -> str:
    distinct = sorted({round(v, 1) for v in values})
    shown = "/".join(f"{v:g}" for v in distinct[:4]) + ("/…" if len(distinct) > 4 else "")
    return f"{shown} ms"


@dataclass
class _Verdict:
    label: SeriesLabel | None
    evidence: str
    ambiguous: tuple[SeriesLabel, ...] = ()


def _physics(s: SeriesSummary) -> _Verdict:
    """Rules on the acquisition tags, first match wins (research notes §2.2, rows 0–9)."""
    tokens = s.image_type_tokens
    seq, variant, options = s.scanning_sequence, s.sequence_variant, s.scan_options
    tr = max(s.tr) if s.tr else None
    te_values = sorted({round(v, 1) for v in s.te})
    te = te_values[0] if te_values else None
    ti = max(s.ti) if s.ti else None
    names = " ".join(s.sequence_names)
    if s.sop_class_uid in {SECONDARY_CAPTURE, MR_SPECTROSCOPY}:
        return _Verdict(L.OTHER, "SOPClassUID is Secondary Capture or Spectroscopy → other")
    projection = tokens & _PROJECTION_TOKENS
    if projection:
        return _Verdict(L.OTHER, f"ImageType {sorted(projection)[0]} → other (projection)")
    if "LOCALIZER" in tokens:
        return _Verdict(L.LOCALIZER, "ImageType LOCALIZER → localizer (physics)")
    planes = {o for o in s.orientations if o not in {Orientation.OBLIQUE, Orientation.UNKNOWN}}
    if len(planes) >= 2 and s.n_slices <= 5 * len(planes):
        return _Verdict(
            L.LOCALIZER, f"{len(planes)} orthogonal planes, {s.n_slices} slices → localizer"
        )
    derived_diffusion = tokens & _DERIVED_DIFFUSION_TOKENS
    if derived_diffusion and "ADC" not in tokens:
        return _Verdict(
            L.OTHER, f"ImageType {sorted(derived_diffusion)[0]} → other (diffusion map)"
        )
    if "ADC" in tokens:
        return _Verdict(L.ADC, "ImageType ADC → ADC (physics)")
    if tokens & {"DIFFUSION", "TRACEW", "TRACE"}:
        token = sorted(tokens & {"DIFFUSION", "TRACEW", "TRACE"})[0]
        b = _b_text(s)
        return _Verdict(L.DWI, f"ImageType {token}{b} → DWI (physics)")
    if s.acquisition_contrast == "DIFFUSION" or any(v > 0 for v in s.b_values):
        return _Verdict(L.DWI, f"{_b_text(s).strip(', ')} → DWI (physics)")
    epi_context = "EP" in seq or "epi" in names or "diff" in names or "dwi" in names
    if epi_context and any(v > 0 for v in s.ge_b_values):
        b = "/".join(f"{v:g}" for v in sorted(set(s.ge_b_values)))
        return _Verdict(L.DWI, f"GE (0043,1039) b={b} with EPI → DWI (physics)")
    if s.angio or _search(r"(^| )(fl3d\d*r|tof)", names):
        return _Verdict(L.OTHER, "AngioFlag=Y or TOF sequence → other (angiography)")
    ac = s.acquisition_contrast
    if ac in {"FLUID_ATTENUATED", "PROTON_DENSITY", "T2", "T1"}:
        label = {"FLUID_ATTENUATED": L.FLAIR, "PROTON_DENSITY": L.PD, "T2": L.T2W, "T1": L.T1W}
        return _Verdict(label[ac], f"AcquisitionContrast={ac} → {label[ac]} (physics)")
    if tr is None and te is None:
        return _Verdict(None, "no RepetitionTime/EchoTime: physics undecided")
    gr, se, ep = "GR" in seq, "SE" in seq, "EP" in seq
    ir = "IR" in seq or "IR" in options or "MP" in variant
    seq_text = "\\".join(sorted(seq)) or "?"
    params = f"ScanningSequence={seq_text}, EchoTime={_ms(s.te)}, RepetitionTime={_ms(s.tr)}"
    if ti is not None:
        params += f", InversionTime={_ms(s.ti)}"
    dynamic = s.temporal_positions >= 2
    if ep and not any(v > 0 for v in s.b_values):
        if gr:
            return _Verdict(L.OTHER, f"{params}: EPI gradient echo → other (fMRI/DSC)")
        return _Verdict(None, f"{params}: EPI spin echo without b-values, undecided")
    if gr:
        if _search(r"trufi|tfi\d|fiesta|bffe", names):
            return _Verdict(L.OTHER, f"{params}, balanced SSFP → other")
        if (
            te is not None
            and max(te_values) > 15
            and (tr is None or tr > 200 or len(te_values) > 2)
        ):
            return _Verdict(L.OTHER, f"{params}: gradient echo with long TE → other (T2*/SWI)")
        if dynamic and (tr is None or tr < 15) and (te is None or te < 5):
            return _Verdict(
                L.DCE, f"{params}, {s.temporal_positions} temporal positions → DCE (physics)"
            )
        if ir:
            return _Verdict(L.T1W, f"{params}, inversion prepared gradient echo → T1W (physics)")
        if te is not None and te < 10 and (tr is None or tr < 800):
            return _Verdict(L.T1W, f"{params}: spoiled gradient echo → T1W (physics)")
        return _Verdict(None, f"{params}: gradient echo, undecided")
    if se or ir:
        if ir and ti is not None:
            if ti >= FLAIR_MIN_TI:
                return _Verdict(L.FLAIR, f"{params}: TI ≥ {FLAIR_MIN_TI:g} ms → FLAIR (physics)")
            if ti <= STIR_MAX_TI:
                return _Verdict(L.T2W, f"{params}: short TI (STIR) → T2W (physics)")
            if te is not None and te < 30:
                return _Verdict(L.T1W, f"{params}: T1 inversion recovery → T1W (physics)")
        if len(te_values) > 2:
            return _Verdict(L.OTHER, f"{params}: {len(te_values)} echoes → other (T2 mapping)")
        te_long = max(te_values) if te_values else None
        if tr is not None and te_long is not None:
            if te_long >= T2_MIN_TE and tr >= 1000:
                return _Verdict(L.T2W, f"{params} → T2W (physics)")
            if tr >= LONG_TR and te_long < PD_MAX_TE:
                return _Verdict(L.PD, f"{params} → PD (physics)")
            if tr >= LONG_TR:
                guess = L.PD if te_long < 50 else L.T2W
                return _Verdict(guess, f"{params}: TE between PD and T2W → {guess}?", (L.PD, L.T2W))
            if tr < 1200 and te_long < 30:
                return _Verdict(L.T1W, f"{params} → T1W (physics)")
        return _Verdict(None, f"{params}: spin echo, undecided")
    return _Verdict(None, f"{params}: no rule decided")


def _b_text(s: SeriesSummary) -> str:
    if not s.b_values:
        return ""
    b = "/".join(f"{v:g}" for v in sorted(set(s.b_values))[:6])
    source = s.b_sources[0] if s.b_sources else "b-value"
    return f", {source} b={b}"


def _by_name(s: SeriesSummary) -> _Verdict:
    for name in s.sequence_names:
        for label, what, pattern in NAME_RULES:
            if pattern.search(name):
                if label is None:
                    return _Verdict(None, f"sequence name family: {what}")
                return _Verdict(label, f"sequence name {name!r}: {what} → {label} (name)")
    return _Verdict(None, "")


def _by_text(s: SeriesSummary) -> _Verdict:
    for label, what, pattern in TEXT_RULES:
        match = pattern.search(s.text)
        if match:
            word = match.group(0).strip()
            return _Verdict(label, f"description keyword {word!r} ({what}) → {label} (text)")
    return _Verdict(None, "")


def _contrast(s: SeriesSummary) -> tuple[bool, str]:
    if s.contrast_agent:
        return True, "ContrastBolusAgent set → post-contrast"
    negative = NO_CONTRAST_TEXT.search(s.text)
    positive = CONTRAST_TEXT.search(s.text)
    if positive and not negative:
        return True, f"description keyword {positive.group(0).strip()!r} → post-contrast"
    return False, ""


def _orientation(s: SeriesSummary) -> tuple[Orientation, str]:
    planes = set(s.orientations)
    if len(planes) > 1:
        return Orientation.MIXED, ""
    if planes:
        return next(iter(planes)), ""
    for name, pattern in ORIENTATION_TEXT:
        if pattern.search(s.text):
            return Orientation(name), f"no ImageOrientationPatient; description says {name}"
    return Orientation.UNKNOWN, ""


#: (physics or name label, text label) pairs that agree although they differ, and the label
#: then kept.
_COMPATIBLE: dict[tuple[SeriesLabel, SeriesLabel], SeriesLabel] = {
    (L.T1W, L.DCE): L.DCE,
    (L.DCE, L.T1W): L.DCE,
    (L.ADC, L.DWI): L.ADC,
}


def classify_series(headers: Sequence[Dataset]) -> Classification:
    """Classify one series from its headers.

    Parameters
    ----------
    headers : sequence of Dataset
        Every instance header of one series (pixel data not needed).

    Returns
    -------
    Classification
        Label, orientation, flags, confidence and the evidence in the order used.
    """
    return classify_summary(summarise(headers))


def classify_summary(s: SeriesSummary) -> Classification:
    """Classify a series already normalised by :func:`summarise`."""
    orientation, orientation_note = _orientation(s)
    derived = bool(s.image_type) and s.image_type[0] == "DERIVED"
    result = Classification(
        series_instance_uid=s.series_instance_uid,
        study_instance_uid=s.study_instance_uid,
        modality=s.modality or "?",
        label=L.OTHER,
        orientation=orientation,
        is3d=s.acquisition_type == "3D",
        derived=derived,
        contrast=False,
        confidence=CONFIDENCE_NONE,
        series_number=s.series_number,
        n_instances=s.n_instances,
        n_slices=s.n_slices,
        slice_thickness=s.slice_thickness,
        pixel_area=s.pixel_area,
        acquisition_time=s.acquisition_time,
    )
    if orientation_note:
        result.evidence.append(orientation_note)
    if s.modality != "MR":
        result.evidence.append(f"modality {s.modality or '?'}: not classified (MR only)")
        result.confidence = 1.0
        return result
    contrast, contrast_note = _contrast(s)
    result.contrast = contrast
    physics, name, text = _physics(s), _by_name(s), _by_text(s)
    for verdict in (physics, name, text):
        if verdict.evidence:
            result.evidence.append(verdict.evidence)
    if contrast_note:
        result.evidence.append(contrast_note)
    _decide(result, physics, name, text)
    if derived and result.label is not L.OTHER:
        result.evidence.append("ImageType DERIVED → derived")
    return result


def _decide(result: Classification, physics: _Verdict, name: _Verdict, text: _Verdict) -> None:
    primary = physics if physics.label is not None else name
    if primary.label is None:
        if text.label is None:
            result.label, result.confidence, result.needs_review = L.OTHER, CONFIDENCE_NONE, True
            result.evidence.append("no rule decided → other, review")
            return
        result.label, result.confidence = text.label, CONFIDENCE_TEXT
        result.evidence.append(f"text only → {text.label}")
        return
    base = CONFIDENCE_PHYSICS if primary is physics else CONFIDENCE_NAME
    label = primary.label
    # A name that contradicts physics is a weaker dissent than text, but still a dissent.
    if (
        primary is physics
        and name.label not in (None, label, L.OTHER)
        and (label, name.label) not in _COMPATIBLE
    ):
        base -= 0.1
        result.evidence.append(f"sequence name suggests {name.label}, physics kept")
    if text.label is None:
        result.label, result.confidence = label, base
        if physics.ambiguous:
            result.confidence = CONFIDENCE_TEXT
        return
    if text.label == label:
        result.label, result.confidence = label, min(CONFIDENCE_AGREE, base + 0.1)
        return
    if text.label in physics.ambiguous:
        result.label, result.confidence = text.label, CONFIDENCE_NAME
        result.evidence.append(f"TE in the PD/T2W overlap: description decides → {text.label}")
        return
    if text.label is L.LOCALIZER or label is L.LOCALIZER:
        result.label, result.confidence = L.LOCALIZER, 0.8
        return
    if (label, text.label) in _COMPATIBLE:
        result.label, result.confidence = _COMPATIBLE[(label, text.label)], base
        if result.label != label:
            result.evidence.append(f"{label} acquisition named {text.label} → {result.label}")
        return
    if label is L.OTHER and text.label is L.DCE and "EPI" in primary.evidence:
        result.label, result.confidence = L.OTHER, base
        result.evidence.append("perfusion EPI (DSC), not DCE → other")
        return
    result.label, result.confidence, result.needs_review = label, CONFIDENCE_CONFLICT, True
    result.evidence.append(
        f"physics says {label}, description says {text.label}: physics kept, low confidence, review"
    )


# --------------------------------------------------------------------------- DCE phases


def _dce_key(headers: Sequence[Dataset]) -> tuple[Any, ...] | None:
    first = headers[0]
    iop = tuple(round(v, 2) for v in read_floats(get_value(first, "ImageOrientationPatient")))
    spacing = tuple(round(v, 2) for v in read_floats(get_value(first, "PixelSpacing")))
    if not iop:
        return None
    image_type = tuple(t.upper() for t in read_strings(get_value(first, "ImageType"))[2:])
    return (
        str(get_value(first, "StudyInstanceUID") or ""),
        iop,
        spacing,
        get_value(first, "Rows"),
        get_value(first, "Columns"),
        len(headers),
        tuple(round(v, 1) for v in read_floats(get_value(first, "SliceThickness"))),
        str(get_value(first, "SequenceName") or ""),
        tuple(round(v, 1) for v in read_floats(get_value(first, "RepetitionTime"))),
        tuple(round(v, 1) for v in read_floats(get_value(first, "EchoTime"))),
        tuple(round(v) for v in read_floats(get_value(first, "FlipAngle"))),
        image_type,
    )


def _phase_order(headers: Sequence[Dataset]) -> tuple[float | None, float | None]:
    tpi = read_floats(get_value(headers[0], "TemporalPositionIdentifier"))
    times = [
        time_seconds(str(get_value(ds, "AcquisitionTime") or get_value(ds, "SeriesTime") or ""))
        for ds in headers
    ]
    known = [t for t in times if t is not None]
    return (tpi[0] if tpi else None), (min(known) if known else None)


def group_dce(
    classifications: Sequence[Classification], headers: Mapping[str, Sequence[Dataset]]
) -> list[Classification]:
    """Mark the phases of a dynamic series stored as separate series with one ``dce_group``.

    Candidates are original MR series labelled T1W or DCE that are single time points.
    Series of one study with the same geometry (orientation, matrix, spacing, slices,
    thickness), the same sequence (name, TR, TE, flip angle) and the same Image Type form a
    group when there are at least 3 of them (or 2 with distinct Temporal Position
    Identifiers), at strictly increasing acquisition times (or Temporal Position
    Identifiers) no more than :data:`DCE_MAX_GAP_S` apart. Dixon outputs share one
    acquisition time and so never group. Every member becomes DCE.

    Parameters
    ----------
    classifications : sequence of Classification
        The series' classifications (changed in place and returned).
    headers : mapping of str to sequence of Dataset
        The headers by Series Instance UID, as :func:`group_series` returns them.

    Returns
    -------
    list of Classification
        The same objects, in the same order.
    """
    buckets: dict[tuple[Any, ...], list[tuple[Classification, float | None, float | None]]]
    buckets = defaultdict(list)
    for c in classifications:
        series = headers.get(c.series_instance_uid)
        if c.modality != "MR" or c.derived or not series or c.label not in {L.T1W, L.DCE}:
            continue
        if summarise_temporal(series) > 1:
            continue
        key = _dce_key(series)
        if key is not None:
            tpi, time = _phase_order(series)
            buckets[key].append((c, tpi, time))
    for members in buckets.values():
        for run in _runs(members):
            _mark(run)
    return list(classifications)


def summarise_temporal(headers: Sequence[Dataset]) -> int:
    """Temporal positions inside one series (1 for a single time point)."""
    return summarise(headers).temporal_positions


def _runs(
    members: list[tuple[Classification, float | None, float | None]],
) -> list[list[Classification]]:
    by_tpi = all(m[1] is not None for m in members) and len({m[1] for m in members}) == len(members)
    if len(members) < 2:
        return []
    if by_tpi:
        ordered = sorted(members, key=lambda m: m[1] or 0.0)
        return [[m[0] for m in ordered]] if len(ordered) >= 2 else []
    timed = [m for m in members if m[2] is not None]
    timed.sort(key=lambda m: m[2] or 0.0)
    runs: list[list[Classification]] = []
    current: list[tuple[Classification, float | None, float | None]] = []
    for m in timed:
        if current:
            gap = (m[2] or 0.0) - (current[-1][2] or 0.0)
            if gap <= 0 or gap > DCE_MAX_GAP_S:
                if len(current) >= 3:
                    runs.append([c[0] for c in current])
                current = [] if gap <= 0 else [m]
                continue
        current.append(m)
    if len(current) >= 3:
        runs.append([c[0] for c in current])
    return runs


def _mark(run: list[Classification]) -> None:
    digest = hashlib.sha256("\n".join(c.series_instance_uid for c in run).encode()).hexdigest()
    group = f"dce-{digest[:12]}"
    for index, c in enumerate(run, start=1):
        c.evidence.append(
            f"{len(run)} series with the same geometry and sequence at increasing times "
            f"→ DCE phase {index} of {len(run)}"
        )
        c.label = L.DCE
        c.dce_group = group
        c.confidence = max(c.confidence, CONFIDENCE_PHYSICS) if not c.needs_review else c.confidence
    logger.debug("grouped %d series as one DCE acquisition (%s)", len(run), group)


def classify_headers(headers: Iterable[Dataset]) -> list[Classification]:
    """Group ``headers`` by series, classify each and group the DCE phases."""
    groups = group_series(headers)
    results = [classify_series(series) for series in groups.values()]
    return group_dce(results, groups)


__all__ = [
    "DCE_MAX_GAP_S",
    "FLAIR_MIN_TI",
    "OBLIQUE_COSINE",
    "PD_MAX_TE",
    "STIR_MAX_TI",
    "T2_MIN_TE",
    "SeriesSummary",
    "classify_headers",
    "classify_series",
    "classify_summary",
    "group_dce",
    "group_series",
    "orientation_of",
    "summarise",
]

"""Image quality metrics of a series (MRIQC's definitions, body variant) and CT checks.

The metrics follow MRIQC (``mriqc/qc/anatomical.py``) with the body/prostate variant of the
curation research note (§1.2): no brain template and no tissue probability maps, so the masks
are built from the intensities alone.

Masks
-----
**Foreground** F: a 3-D Otsu threshold of the volume; binary closing (6-connected, 2
iterations); holes filled slice by slice, then in 3-D; the largest 26-connected component
kept; a binary opening (6-connected, 1 iteration). Closing and opening replicate the edges
past the array (SciPy would otherwise erode the first and last slices of an object that
fills the stack).

For thick-slice series (slice spacing above :data:`THICK_SLICE_RATIO` times the pixel
size) the closing, opening and background dilation work within slices only (the note's
2-D fallback), so that 5 mm slices are not bridged or grown like 1 mm voxels.

**Background** B: the voxels outside F dilated by :attr:`QcRules.background_gap` voxels (so
partial-volume edges and near-body ghosts are not counted as air), without the zero-filled
frame Z (regions of exact zeros that survive an opening of 2 iterations and have at least
500 voxels — MRIQC's "rotation mask", which removes zero-padded corners).

**Air** A (noise estimate): B without artefact voxels, those whose value exceeds
``median(B) + 10·σ_bg`` (MRIQC's z > 10 rule).

**Noise** ``σ_bg = 1.4826·MAD(A)``, the median absolute deviation scaled to a Gaussian's
standard deviation (statsmodels' ``mad``). If it is zero (quantised or zero-filled air),
the standard deviation of A is used; if that is below 1e-3 the background is
*unusable* and the background-based metrics are ``None``.

**Tissue classes**: ``skimage.filters.threshold_multiotsu(F, classes=3)`` splits the
foreground into low, middle and high classes. As in the note, the middle class is the "dark
tissue" (lo) and the high class the "bright tissue" (hi) for CNR and CJV (MRIQC uses GM and
WM). The definition is written into the report (``tissue_classes``).

Metrics
-------
``μ`` is a median, ``σ`` a standard deviation, ``MAD`` a scaled MAD (1.4826·median|x−med|).

* ``snr``: MRIQC's ``snr_total`` — the mean over the three tissue classes c of
  ``μ_c / (σ_c·sqrt(n_c/(n_c−1)))``.
* ``snr_dietrich``: ``sqrt((4−π)/2) · μ_F / σ_bg`` = ``0.6551364·μ_F/σ_bg`` (Dietrich et al.
  2007; the factor corrects for the Rayleigh distribution of magnitude noise in air).
* ``cnr``: ``|μ_hi − μ_lo| / sqrt(σ_bg² + σ_hi² + σ_lo²)``.
* ``cjv``: ``(MAD_hi + MAD_lo) / |μ_hi − μ_lo|`` (Ganzetti et al. 2016; lower is better).
* ``var``: ``mean((F − mean(F))²)``, the population variance of the foreground (MRQy's VAR;
  MRIQC has no such metric). It mostly measures tissue heterogeneity, not noise.
* ``fber``: ``median(F²) / median(B²)`` (MRIQC's current definition; higher is better).
  ``None`` when ``median(B²) < 1e-3`` (MRIQC writes −1; ``None`` keeps a sentinel out of
  cohort statistics).
* ``efc``: Farzinfar et al.'s entropy focus criterion as in MRIQC, over every voxel not in
  the zero-filled frame Z (N voxels, negative values set to 0):
  ``x_max = sqrt(Σx²)``, ``E_max = N·(1/√N)·ln(1/√N)``,
  ``EFC = (1/E_max)·Σ (x/x_max)·ln((x + 1e-16)/x_max)``; 0 to 1, lower is better.

Responses to degradation (tested on phantoms, :mod:`tests.curation.test_qc`): added noise
lowers ``snr``, ``snr_dietrich``, ``cnr`` and ``fber`` and raises ``cjv`` and ``efc``;
ghosting (an attenuated copy shifted by half the field of view in the phase direction)
lowers ``fber`` and ``snr_dietrich``; blur of the object (a wider point-spread function)
raises ``cjv`` (partial-volume voxels at class borders widen both classes) and ``efc``
(energy spread over more voxels) and lowers ``var``. Blur also averages noise within each
class, which lowers ``cjv``: the direction depends on whether noise or partial volume
dominates, and the note measured a fall on a real head. None of the metrics is a monotone
quality score: judge them against per-protocol reference ranges (:func:`robust_z`;
:mod:`biobank.curation.cohort` does, per label and manufacturer).

CT
--
For modality CT the metrics are computed on ``HU + 1024`` clipped at 0 (attenuation above
the scanner's lowest value, so that air is near zero as in MR), except ``snr_dietrich``,
whose Rayleigh correction does not apply to CT's Gaussian noise (``None``). The CT checks are
in :class:`CtChecks`: stored values within ``[−1024 − margin, 3071 + margin]`` HU (voxels
that all equal the volume's minimum below that range are taken as padding outside the
reconstruction circle and counted apart), air (the background) near −1000 HU, soft tissue
(foreground voxels within [−200, 300] HU) with a median within [−100, 100] HU, and the noise
in air (standard deviation of HU over the air).

Decision
--------
:func:`decide` applies :class:`QcRules`: a hard failure excludes the series, a soft one
quarantines it for a human look, otherwise it is approved. Each reason is a short
``code: explanation`` string. The thresholds may come from ``node.yaml``
(:meth:`QcRules.from_config`); the cohort judgement (:attr:`QcRules.cohort`) runs later,
over the stored metrics of many series (:mod:`biobank.curation.cohort`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.filters import threshold_multiotsu, threshold_otsu

from biobank.catalog.curation import Decision
from biobank.curation.rules import CohortRules, integer, number, parse_cohort_rules
from biobank.curation.series import SeriesVolume
from biobank.errors import InvalidInput

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: sqrt((4 − π)/2): Dietrich's correction for Rayleigh-distributed noise in air.
RAYLEIGH_FACTOR = 0.6551364
#: Scales a median absolute deviation to a Gaussian's standard deviation.
MAD_SCALE = 1.4826
#: The tissue class definition written into every report.
TISSUE_CLASSES = "multi-otsu-3 within foreground; lo = middle class, hi = high class"
_SIX = ndimage.generate_binary_structure(3, 1)
_TWENTY_SIX = ndimage.generate_binary_structure(3, 3)
_PLANAR = np.zeros((3, 3, 3), dtype=bool)
_PLANAR[1] = ndimage.generate_binary_structure(2, 1)
#: Slices thicker than this many times the pixel size get in-plane morphology only.
THICK_SLICE_RATIO = 3.0
_FRAME_MIN_VOXELS = 500
_CT_OFFSET = 1024.0


@dataclass(frozen=True)
class QcRules:
    """Thresholds of the decision: fixed ones, and the cohort rules (:attr:`cohort`).

    Hard failures (``exclude``): fewer than ``min_slices`` slices; non-finite values; an
    empty foreground; a foreground fraction outside ``[min_foreground_fraction,
    max_foreground_fraction]``; ``fber < min_fber``; for CT, more than
    ``max_hu_out_of_range_fraction`` of voxels outside ``[−1024 − hu_margin, 3071 +
    hu_margin]`` or an air median farther than ``air_hu_tolerance`` from −1000 HU.

    Soft failures (``quarantine``): ``snr_dietrich < min_snr_dietrich``; ``efc > max_efc``;
    ``cjv > max_cjv``; an unusable background; a problem found while loading; for CT, noise
    in air above ``max_air_noise_hu`` or a soft-tissue median outside
    ``soft_tissue_hu``.

    The defaults are deliberately loose: they catch broken series, not subtle ones.
    Fixed thresholds do not transfer between sites (research note §1.3): :attr:`cohort`
    judges the metrics against the series' peers instead (:mod:`biobank.curation.cohort`).
    :meth:`from_config` reads the rules from the ``curation:`` section of ``node.yaml``.
    """

    min_slices: int = 3
    min_foreground_fraction: float = 0.05
    max_foreground_fraction: float = 0.98
    min_fber: float = 1.0
    min_snr_dietrich: float = 5.0
    max_efc: float = 0.9
    max_cjv: float = 2.0
    background_gap: int = 3
    hu_margin: float = 50.0
    max_hu_out_of_range_fraction: float = 0.001
    air_hu_tolerance: float = 150.0
    max_air_noise_hu: float = 60.0
    soft_tissue_hu: tuple[float, float] = (-100.0, 100.0)
    quarantine_on_load_problems: bool = True
    cohort: CohortRules = field(default_factory=CohortRules)

    @classmethod
    def from_config(cls, section: Mapping[str, Any], source: str) -> QcRules:
        """The rules of a ``curation:`` section (``node.yaml``); defaults where absent.

        Keys are the field names of this class (``min_snr_dietrich: 5.0``, ``soft_tissue_hu:
        [-100, 100]``, …) and ``cohort:`` (:func:`biobank.curation.rules.parse_cohort_rules`).

        Raises
        ------
        InvalidInput
            Naming ``source`` and the key, for an unknown key or a value of the wrong type.
        """
        defaults = cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(key) for key in section if key not in known)
        if unknown:
            raise InvalidInput(
                f"{source}: curation: unknown key {unknown[0]!r}; the keys are "
                f"{', '.join(sorted(known))} (docs/curation.md)"
            )
        values: dict[str, Any] = {}
        for name, value in section.items():
            where = f"{source}: curation.{name}"
            default = getattr(defaults, name)
            if name == "cohort":
                values[name] = parse_cohort_rules(value, source)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise InvalidInput(f"{where}: give true or false, not {str(value)[:20]!r}")
                values[name] = value
            elif isinstance(default, int):
                values[name] = integer(value, where)
            elif isinstance(default, tuple):
                if not isinstance(value, list | tuple) or len(value) != 2:
                    raise InvalidInput(f"{where}: give two numbers [low, high]")
                low, high = (number(v, where) for v in value)
                if low > high:
                    raise InvalidInput(f"{where}: the low bound {low:g} is above {high:g}")
                values[name] = (low, high)
            else:
                values[name] = number(value, where)
        return cls(**values)


@dataclass(frozen=True)
class QcMetrics:
    """The image quality metrics of a series; ``None`` where undefined (see module doc)."""

    snr: float | None
    snr_dietrich: float | None
    cnr: float | None
    cjv: float | None
    var: float | None
    fber: float | None
    efc: float | None

    def to_json(self) -> dict[str, float | None]:
        """The metrics by name."""
        return {k: _round(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class MaskCounts:
    """Voxel counts of the masks the metrics were computed on."""

    foreground: int
    background: int
    air: int
    artefact: int
    zero_filled: int
    tissue: tuple[int, int, int]

    def to_json(self) -> dict[str, int]:
        """Counts by mask name (``tissue_low``, ``tissue_mid``, ``tissue_high``)."""
        low, mid, high = self.tissue
        return {
            "foreground": self.foreground,
            "background": self.background,
            "air": self.air,
            "artefact": self.artefact,
            "zero_filled": self.zero_filled,
            "tissue_low": low,
            "tissue_mid": mid,
            "tissue_high": high,
        }


@dataclass(frozen=True)
class CtChecks:
    """HU sanity and noise in air of a CT series.

    Attributes
    ----------
    air_hu : float or None
        Median HU of the air (background); ``None`` if there is no background.
    air_noise_hu : float or None
        Standard deviation of HU over the air (artefacts excluded).
    soft_tissue_hu : float or None
        Median HU of foreground voxels within [−200, 300] HU; ``None`` if there are none.
    out_of_range : int
        Voxels outside ``[−1024 − margin, 3071 + margin]`` HU, padding excluded.
    padding : int
        Voxels at the volume's minimum below the range, taken as padding outside the
        reconstruction circle.
    """

    air_hu: float | None
    air_noise_hu: float | None
    soft_tissue_hu: float | None
    out_of_range: int
    padding: int

    def to_json(self) -> dict[str, float | int | None]:
        """JSON-ready values."""
        return {k: _round(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class QcReport:
    """What :func:`measure` found for one series."""

    series_instance_uid: str
    modality: str
    shape: tuple[int, int, int]
    metrics: QcMetrics
    masks: MaskCounts
    noise_sigma: float | None
    background_usable: bool
    ct: CtChecks | None
    decision: Decision
    reasons: tuple[str, ...]
    problems: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """One JSON object: the UID, metrics by name, mask counts, decision and reasons."""
        data: dict[str, Any] = {
            "series_instance_uid": self.series_instance_uid,
            "modality": self.modality,
            "slices": self.shape[0],
            "rows": self.shape[1],
            "columns": self.shape[2],
            **self.metrics.to_json(),
            "noise_sigma": _round(self.noise_sigma),
            "background_usable": self.background_usable,
            "masks": self.masks.to_json(),
            "tissue_classes": TISSUE_CLASSES,
            "decision": self.decision.value,
            "reasons": list(self.reasons),
            "problems": list(self.problems),
        }
        if self.ct is not None:
            data["ct"] = self.ct.to_json()
        return data


@dataclass(frozen=True)
class Masks:
    """The boolean masks behind the metrics (see the module doc)."""

    foreground: BoolArray
    background: BoolArray
    air: BoolArray
    zero_filled: BoolArray
    tissue: tuple[BoolArray, BoolArray, BoolArray]


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def foreground_mask(values: FloatArray, *, planar: bool = False) -> BoolArray:
    """3-D Otsu threshold plus morphology (module doc); all False for a constant volume.

    ``planar`` restricts closing and opening to each slice (thick-slice series).
    """
    structure = _PLANAR if planar else _SIX
    finite = values[np.isfinite(values)]
    if finite.size == 0 or float(finite.max()) <= float(finite.min()):
        return np.zeros(values.shape, dtype=bool)
    threshold = float(threshold_otsu(finite))  # type: ignore[no-untyped-call]
    mask = np.asarray(values > threshold)
    mask = _morphology(ndimage.binary_closing, mask, structure, 2)
    for z in range(mask.shape[0]):
        mask[z] = ndimage.binary_fill_holes(mask[z])
    mask = ndimage.binary_fill_holes(mask)
    mask = _largest_component(mask)
    opened = _morphology(ndimage.binary_opening, mask, structure, 1)
    if opened.any():
        mask = _largest_component(opened)
    return np.asarray(mask, dtype=bool)


def _morphology(
    operation: Any, mask: BoolArray, structure: BoolArray, iterations: int
) -> BoolArray:
    """``operation`` (closing, opening) on ``mask`` padded by edge replication, then cropped.

    SciPy erodes from the array's border (``border_value=0``), so a closing would delete
    the first and last slices of an object that fills the stack; replicating the edges
    treats the object as continuing past the field of view instead.
    """
    pad = iterations * (structure.shape[0] // 2)
    padded = np.pad(mask, pad, mode="edge")
    result = operation(padded, structure=structure, iterations=iterations)
    inner = tuple(slice(pad, pad + n) for n in mask.shape)
    return np.asarray(result[inner], dtype=bool)


def _largest_component(mask: BoolArray) -> BoolArray:
    labels, count = ndimage.label(mask, structure=_TWENTY_SIX)
    if count <= 1:
        return np.asarray(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)), dtype=bool)


def _zero_filled(values: FloatArray) -> BoolArray:
    zeros = _morphology(ndimage.binary_opening, np.asarray(values == 0), _SIX, 2)
    if not zeros.any():
        return np.zeros(values.shape, dtype=bool)
    labels, count = ndimage.label(zeros, structure=_TWENTY_SIX)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = np.flatnonzero(sizes >= _FRAME_MIN_VOXELS)
    return np.asarray(np.isin(labels, keep), dtype=bool)


def build_masks(values: FloatArray, *, background_gap: int = 3, planar: bool = False) -> Masks:
    """Foreground, background, air, zero-filled frame and tissue classes of ``values``.

    ``planar`` (thick slices) keeps the morphology and the background gap within slices.
    """
    structure = _PLANAR if planar else _SIX
    foreground = foreground_mask(values, planar=planar)
    zero_filled = _zero_filled(values)
    if foreground.any() and background_gap > 0:
        grown = ndimage.binary_dilation(foreground, structure=structure, iterations=background_gap)
    else:
        grown = foreground
    background = np.asarray(~grown & ~zero_filled, dtype=bool)
    air = background.copy()
    if background.any():
        bg = values[background]
        median = float(np.median(bg))
        sigma = _mad(bg)
        if sigma > 0:
            air &= values <= median + 10.0 * sigma
    empty = np.zeros(values.shape, dtype=bool)
    tissue: tuple[BoolArray, BoolArray, BoolArray] = (empty, empty, empty)
    fg = values[foreground]
    if fg.size >= 3 and np.unique(fg[: min(fg.size, 100_000)]).size >= 3:
        try:
            thresholds = threshold_multiotsu(fg, classes=3)  # type: ignore[no-untyped-call]
            lo, hi = (float(t) for t in thresholds)
        except ValueError:
            lo = hi = float("nan")
        if math.isfinite(lo) and math.isfinite(hi):
            tissue = (
                np.asarray(foreground & (values <= lo), dtype=bool),
                np.asarray(foreground & (values > lo) & (values <= hi), dtype=bool),
                np.asarray(foreground & (values > hi), dtype=bool),
            )
    return Masks(foreground, background, np.asarray(air, dtype=bool), zero_filled, tissue)


def _mad(values: FloatArray) -> float:
    """Scaled median absolute deviation (1.4826·median|x − median|)."""
    if values.size == 0:
        return 0.0
    return MAD_SCALE * float(np.median(np.abs(values - np.median(values))))


def _class_snr(values: FloatArray) -> float | None:
    n = values.size
    if n < 2:
        return None
    sigma = float(np.std(values)) * math.sqrt(n / (n - 1))
    if sigma <= 0:
        return None
    return float(np.median(values)) / sigma


def noise_sigma(air: FloatArray) -> float | None:
    """``1.4826·MAD`` of the air, else its standard deviation; ``None`` if below 1e-3."""
    if air.size < 2:
        return None
    sigma = _mad(air)
    if sigma <= 0:
        sigma = float(np.std(air))
    return sigma if sigma >= 1e-3 else None


def compute_metrics(
    values: FloatArray, masks: Masks, *, rician: bool = True, sigma_bg: float | None = None
) -> QcMetrics:
    """The seven metrics of the module doc, from ``values`` and their masks.

    ``rician=False`` leaves ``snr_dietrich`` out (CT). ``sigma_bg`` is the noise σ when
    already known, else it is estimated from the air (:func:`noise_sigma`).
    """
    fg = values[masks.foreground]
    bg = values[masks.background]
    if sigma_bg is None:
        sigma_bg = noise_sigma(values[masks.air])
    classes = [values[m] for m in masks.tissue]
    snrs = [s for s in (_class_snr(c) for c in classes) if s is not None]
    snr = float(np.mean(snrs)) if len(snrs) == 3 else None
    median_fg = float(np.median(fg)) if fg.size else None
    snr_dietrich = None
    if rician and sigma_bg is not None and median_fg is not None:
        snr_dietrich = RAYLEIGH_FACTOR * median_fg / sigma_bg
    cnr = cjv = None
    lo, hi = classes[1], classes[2]
    if lo.size >= 2 and hi.size >= 2:
        contrast = abs(float(np.median(hi)) - float(np.median(lo)))
        if sigma_bg is not None:
            denominator = math.sqrt(sigma_bg**2 + float(np.var(hi)) + float(np.var(lo)))
            cnr = contrast / denominator if denominator > 0 else None
        if contrast > 0:
            cjv = (_mad(hi) + _mad(lo)) / contrast
    var = float(np.var(fg)) if fg.size else None
    fber = None
    if fg.size and bg.size:
        bg_energy = float(np.median(bg**2))
        if bg_energy >= 1e-3:
            fber = float(np.median(fg**2)) / bg_energy
    return QcMetrics(
        snr=snr,
        snr_dietrich=snr_dietrich,
        cnr=cnr,
        cjv=cjv,
        var=var,
        fber=fber,
        efc=efc(values, masks.zero_filled),
    )


def efc(values: FloatArray, frame: BoolArray | None = None) -> float | None:
    """Entropy focus criterion (Farzinfar et al. 2013) as MRIQC computes it.

    ``x`` are the voxels outside ``frame`` with negatives set to 0 (N of them):
    ``E_max = N·(1/√N)·ln(1/√N)``, ``x_max = sqrt(Σx²)`` and
    ``EFC = (1/E_max)·Σ (x/x_max)·ln((x + 1e-16)/x_max)``.
    """
    x = values[~frame] if frame is not None else values.ravel()
    x = np.clip(x, 0.0, None)
    n = x.size
    if n < 2:
        return None
    x_max = math.sqrt(float(np.sum(x * x)))
    if x_max <= 0:
        return None
    e_max = n * (1.0 / math.sqrt(n)) * math.log(1.0 / math.sqrt(n))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (x / x_max) * np.log((x + 1e-16) / x_max)
    return float(np.sum(terms)) / e_max


def ct_checks(hu: FloatArray, masks: Masks, rules: QcRules) -> CtChecks:
    """HU sanity and noise in air of a CT volume (values in HU); see the module doc."""
    low, high = -1024.0 - rules.hu_margin, 3071.0 + rules.hu_margin
    below = hu < low
    padding = 0
    if below.any():
        minimum = float(hu.min())
        at_min = hu == minimum
        if not np.any(below & ~at_min):
            padding = int(np.count_nonzero(at_min))
            below = below & ~at_min
    out_of_range = int(np.count_nonzero(below) + np.count_nonzero(hu > high))
    air = hu[masks.air & (hu >= low)]
    air_hu = float(np.median(air)) if air.size else None
    air_noise = float(np.std(air)) if air.size >= 2 else None
    fg = hu[masks.foreground]
    soft = fg[(fg >= -200.0) & (fg <= 300.0)]
    soft_hu = float(np.median(soft)) if soft.size else None
    return CtChecks(air_hu, air_noise, soft_hu, out_of_range, padding)


def measure(volume: SeriesVolume, rules: QcRules | None = None) -> QcReport:
    """Measure a series' quality and decide what to do with it.

    Parameters
    ----------
    volume : SeriesVolume
        The series (see :func:`biobank.curation.series.load_series_files`).
    rules : QcRules, optional
        Decision thresholds; the defaults when omitted.

    Returns
    -------
    QcReport
        Metrics, mask voxel counts, CT checks (CT only) and the decision with its reasons.
    """
    rules = rules or QcRules()
    raw = volume.voxels.astype(np.float64)
    finite = np.isfinite(raw)
    nonfinite = int(raw.size - np.count_nonzero(finite))
    is_ct = volume.modality == "CT"
    values = np.where(finite, raw, 0.0)
    # MRIQC sets negatives (and NaN) to 0; CT is first shifted so that air is near 0.
    values = np.clip(values + (_CT_OFFSET if is_ct else 0.0), 0.0, None)
    dz, dy, dx = volume.spacing
    planar = dz > THICK_SLICE_RATIO * max(dy, dx)
    masks = build_masks(values, background_gap=rules.background_gap, planar=planar)
    sigma = noise_sigma(values[masks.air])
    metrics = compute_metrics(values, masks, rician=not is_ct, sigma_bg=sigma)
    ct = ct_checks(np.where(finite, raw, 0.0), masks, rules) if is_ct else None
    counts = MaskCounts(
        foreground=int(np.count_nonzero(masks.foreground)),
        background=int(np.count_nonzero(masks.background)),
        air=int(np.count_nonzero(masks.air)),
        artefact=int(np.count_nonzero(masks.background & ~masks.air)),
        zero_filled=int(np.count_nonzero(masks.zero_filled)),
        tissue=(
            int(np.count_nonzero(masks.tissue[0])),
            int(np.count_nonzero(masks.tissue[1])),
            int(np.count_nonzero(masks.tissue[2])),
        ),
    )
    usable = sigma is not None and metrics.fber is not None
    decision, reasons = decide(
        metrics,
        counts,
        rules,
        total=int(raw.size),
        slices=volume.shape[0],
        nonfinite=nonfinite,
        background_usable=usable,
        ct=ct,
        problems=volume.problems,
    )
    logger.debug(
        "qc measured a %s series of %d slices: %s", volume.modality, volume.shape[0], decision
    )
    return QcReport(
        series_instance_uid=volume.series_instance_uid,
        modality=volume.modality,
        shape=volume.shape,
        metrics=metrics,
        masks=counts,
        noise_sigma=sigma,
        background_usable=usable,
        ct=ct,
        decision=decision,
        reasons=tuple(reasons),
        problems=volume.problems,
    )


def decide(
    metrics: QcMetrics,
    counts: MaskCounts,
    rules: QcRules,
    *,
    total: int,
    slices: int,
    nonfinite: int = 0,
    background_usable: bool = True,
    ct: CtChecks | None = None,
    problems: Sequence[str] = (),
) -> tuple[Decision, list[str]]:
    """Apply ``rules``: hard failures exclude, soft ones quarantine (see :class:`QcRules`)."""
    hard: list[str] = []
    soft: list[str] = []
    if slices < rules.min_slices:
        hard.append(f"too_few_slices: {slices} < {rules.min_slices}")
    if nonfinite:
        hard.append(f"non_finite: {nonfinite} voxel(s) are NaN or infinite")
    fraction = counts.foreground / total if total else 0.0
    if counts.foreground == 0:
        hard.append("empty_foreground: no foreground was found (blank or constant images)")
    elif not rules.min_foreground_fraction <= fraction <= rules.max_foreground_fraction:
        hard.append(
            f"foreground_fraction: {fraction:.3f} outside "
            f"[{rules.min_foreground_fraction}, {rules.max_foreground_fraction}]"
        )
    if metrics.fber is not None and metrics.fber < rules.min_fber:
        hard.append(f"low_fber: {metrics.fber:.3g} < {rules.min_fber}")
    if ct is not None:
        hard.extend(_ct_hard(ct, rules, total))
        soft.extend(_ct_soft(ct, rules))
    if not background_usable:
        soft.append("background_unusable: no usable air to estimate noise (FBER/SNR undefined)")
    if metrics.snr_dietrich is not None and metrics.snr_dietrich < rules.min_snr_dietrich:
        soft.append(f"low_snr_dietrich: {metrics.snr_dietrich:.3g} < {rules.min_snr_dietrich}")
    if metrics.efc is not None and metrics.efc > rules.max_efc:
        soft.append(f"high_efc: {metrics.efc:.3g} > {rules.max_efc}")
    if metrics.cjv is not None and metrics.cjv > rules.max_cjv:
        soft.append(f"high_cjv: {metrics.cjv:.3g} > {rules.max_cjv}")
    if problems and rules.quarantine_on_load_problems:
        soft.append(f"load_problems: {len(problems)} problem(s) while reading the series")
    if hard:
        return Decision.EXCLUDE, hard + soft
    if soft:
        return Decision.QUARANTINE, soft
    return Decision.APPROVE, []


def _ct_hard(ct: CtChecks, rules: QcRules, total: int) -> list[str]:
    reasons: list[str] = []
    if total and ct.out_of_range / total > rules.max_hu_out_of_range_fraction:
        reasons.append(
            f"hu_out_of_range: {ct.out_of_range} voxel(s) outside "
            f"[{-1024 - rules.hu_margin:g}, {3071 + rules.hu_margin:g}] HU; check the "
            "Rescale Slope/Intercept"
        )
    if ct.air_hu is not None and abs(ct.air_hu + 1000.0) > rules.air_hu_tolerance:
        reasons.append(
            f"air_hu: air at {ct.air_hu:.0f} HU, expected -1000 ± {rules.air_hu_tolerance:g}; "
            "check the Rescale Slope/Intercept"
        )
    return reasons


def _ct_soft(ct: CtChecks, rules: QcRules) -> list[str]:
    reasons: list[str] = []
    if ct.air_noise_hu is not None and ct.air_noise_hu > rules.max_air_noise_hu:
        reasons.append(f"air_noise: {ct.air_noise_hu:.1f} HU > {rules.max_air_noise_hu:g}")
    low, high = rules.soft_tissue_hu
    if ct.soft_tissue_hu is not None and not low <= ct.soft_tissue_hu <= high:
        reasons.append(
            f"soft_tissue_hu: median {ct.soft_tissue_hu:.0f} HU outside [{low:g}, {high:g}]"
        )
    return reasons


def robust_center(values: Sequence[float]) -> tuple[float, float] | None:
    """The median and robust scale of the finite ``values`` (``None`` if there are none).

    The scale is ``1.4826·MAD``; when the MAD is zero (more than half the values equal),
    the mean absolute deviation scaled by sqrt(π/2) = 1.2533; it may still be zero.
    """
    data = np.asarray(values, dtype=np.float64)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return None
    median = float(np.median(finite))
    scale = _mad(finite)
    if scale <= 0:
        scale = 1.2533 * float(np.mean(np.abs(finite - median)))
    return median, scale


def robust_z(values: Sequence[float]) -> list[float]:
    """Robust z-scores ``(x − median) / (1.4826·MAD)`` of ``values`` against themselves.

    This is Iglewicz and Hoaglin's modified z-score ``0.6745·(x − median)/MAD`` (0.6745 =
    1/1.4826); ``|z| > 3.5`` is their outlier rule. When the MAD is zero (more than half
    the values equal), the mean absolute deviation scaled by sqrt(π/2) = 1.2533 is used
    instead; when that is zero too, every score is 0. Non-finite values score NaN and are
    left out of the median and MAD.
    """
    center = robust_center(values)
    if center is None:
        return [float("nan")] * len(values)
    median, scale = center
    if scale <= 0:
        return [0.0 if math.isfinite(v) else float("nan") for v in values]
    return [(float(v) - median) / scale if math.isfinite(v) else float("nan") for v in values]


__all__ = [
    "MAD_SCALE",
    "RAYLEIGH_FACTOR",
    "THICK_SLICE_RATIO",
    "TISSUE_CLASSES",
    "CtChecks",
    "Decision",
    "MaskCounts",
    "Masks",
    "QcMetrics",
    "QcReport",
    "QcRules",
    "build_masks",
    "compute_metrics",
    "ct_checks",
    "decide",
    "efc",
    "foreground_mask",
    "measure",
    "noise_sigma",
    "robust_center",
    "robust_z",
]

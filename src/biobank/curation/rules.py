"""Cohort rules: which quality metrics are judged against a series' peers, and how.

A fixed threshold does not transfer between sites, scanners or protocols (curation research
note §1.3): an SNR that is normal for a 1.5 T body coil is poor for a 3 T head coil. The
cohort rules judge each metric of a series against the *cohort* of its peers — the
series of the same label (T1W, T2W, … from the classifier or a curator; the modality for
non-MR series) from the same manufacturer — with the modified z-score of Iglewicz and Hoaglin,
``z = (x − median) / (1.4826·MAD)`` (:func:`biobank.curation.qc.robust_z`). A series whose
score is beyond ``z_threshold`` *in the bad direction* of a metric is quarantined for a
curator; a cohort smaller than ``min_size`` is not judged (the reason says so).

The rules come with defaults and may be set in the node's ``node.yaml``::

    curation:
      min_snr_dietrich: 5.0          # any field of QcRules (fixed thresholds)
      cohort:
        z_threshold: 3.5
        min_size: 10
        metrics: {snr_dietrich: low, cnr: low, fber: low, cjv: high, efc: high}

Unknown keys and values of the wrong type are refused with the key's name
(:meth:`biobank.curation.qc.QcRules.from_config`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from biobank.errors import InvalidInput

METRIC_NAMES = ("snr", "snr_dietrich", "cnr", "cjv", "var", "fber", "efc")
"""The metrics of :class:`biobank.curation.qc.QcMetrics`, by name."""


class Direction(enum.StrEnum):
    """Which side of the cohort's median is bad for a metric."""

    LOW = "low"
    """Low values are bad (SNR, CNR, FBER)."""
    HIGH = "high"
    """High values are bad (CJV, EFC)."""


DEFAULT_COHORT_METRICS: tuple[tuple[str, Direction], ...] = (
    ("snr_dietrich", Direction.LOW),
    ("cnr", Direction.LOW),
    ("cjv", Direction.HIGH),
    ("efc", Direction.HIGH),
    ("fber", Direction.LOW),
)
"""The metrics judged against the cohort by default, with their bad direction."""


@dataclass(frozen=True)
class CohortRules:
    """How series are judged against their cohort (see the module docstring).

    Attributes
    ----------
    metrics : tuple of (str, Direction)
        The metrics judged, each with the direction that is bad.
    z_threshold : float
        A series is quarantined when a metric's robust z-score is beyond this in the bad
        direction (Iglewicz and Hoaglin's 3.5 by default).
    min_size : int
        The fewest series with a value of the metric for the cohort to judge it
        (and the fewest series of a group for any judgement).
    """

    metrics: tuple[tuple[str, Direction], ...] = DEFAULT_COHORT_METRICS
    z_threshold: float = 3.5
    min_size: int = 10

    def __post_init__(self) -> None:
        """Refuse thresholds that cannot work."""
        if not (math.isfinite(self.z_threshold) and self.z_threshold > 0):
            raise InvalidInput(f"cohort z_threshold {self.z_threshold}: give a number above 0")
        if self.min_size < 3:
            raise InvalidInput(f"cohort min_size {self.min_size}: give at least 3 series")
        for name, _ in self.metrics:
            if name not in METRIC_NAMES:
                raise InvalidInput(
                    f"cohort metric {name!r} is unknown; use one of {', '.join(METRIC_NAMES)}"
                )

    def to_json(self) -> dict[str, Any]:
        """The rules as written in ``node.yaml``."""
        return {
            "z_threshold": self.z_threshold,
            "min_size": self.min_size,
            "metrics": {name: direction.value for name, direction in self.metrics},
        }


_COHORT_KEYS = ("metrics", "z_threshold", "min_size")


def parse_cohort_rules(section: Any, source: str) -> CohortRules:
    """The cohort rules of ``section`` (the ``curation.cohort`` mapping of ``node.yaml``).

    Raises
    ------
    InvalidInput
        Naming ``source`` and the key, for an unknown key, a value of the wrong type or a
        threshold that cannot work.
    """
    where = f"{source}: curation.cohort"
    if not isinstance(section, Mapping):
        raise InvalidInput(f"{where} must be a mapping of {', '.join(_COHORT_KEYS)}")
    unknown = sorted(str(key) for key in section if key not in _COHORT_KEYS)
    if unknown:
        raise InvalidInput(
            f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(_COHORT_KEYS)}"
        )
    values: dict[str, Any] = {}
    if "z_threshold" in section:
        values["z_threshold"] = number(section["z_threshold"], f"{where}.z_threshold")
    if "min_size" in section:
        values["min_size"] = integer(section["min_size"], f"{where}.min_size")
    if "metrics" in section:
        values["metrics"] = _metrics(section["metrics"], f"{where}.metrics")
    try:
        return CohortRules(**values)
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: {exc}") from None


def _metrics(value: Any, where: str) -> tuple[tuple[str, Direction], ...]:
    if not isinstance(value, Mapping) or not value:
        raise InvalidInput(
            f"{where} must map metric names to 'low' or 'high' (the bad direction), "
            "e.g. {snr_dietrich: low, efc: high}"
        )
    out: list[tuple[str, Direction]] = []
    for name, direction in value.items():
        if name not in METRIC_NAMES:
            raise InvalidInput(
                f"{where}: unknown metric {str(name)!r}; use one of {', '.join(METRIC_NAMES)}"
            )
        try:
            out.append((str(name), Direction(str(direction))))
        except ValueError:
            raise InvalidInput(
                f"{where}.{name}: give 'low' or 'high' (the direction that is bad), "
                f"not {str(direction)[:20]!r}"
            ) from None
    return tuple(out)


def number(value: Any, where: str) -> float:
    """``value`` as a finite float, else InvalidInput naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{where}: give a number, not {str(value)[:20]!r}")
    return float(value)


def integer(value: Any, where: str) -> int:
    """``value`` as an int, else InvalidInput naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{where}: give a whole number, not {str(value)[:20]!r}")
    return value


__all__ = [
    "DEFAULT_COHORT_METRICS",
    "METRIC_NAMES",
    "CohortRules",
    "Direction",
    "integer",
    "number",
    "parse_cohort_rules",
]

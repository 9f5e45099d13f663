"""Cohort judgement: each measured series' metrics against its peers (label, manufacturer).

Fixed thresholds (:class:`biobank.curation.qc.QcRules`) catch broken series; they cannot
say whether an SNR is poor *for this kind of series from this kind of scanner*. The cohort
can: series are grouped by their label (the MR label — T1W, T2W, … from the classifier or a
curator's relabel; the modality for CT and other series) and their manufacturer (trimmed,
upper case; ``UNKNOWN`` when the header names none). Within a group, each metric of
:attr:`CohortRules.metrics <biobank.curation.rules.CohortRules.metrics>` gets the modified
z-score ``z = (x − median) / (1.4826·MAD)`` (:func:`~biobank.curation.qc.robust_center`)
against the group's reference: its series that are not excluded (a broken series does not
define what is normal) and have a finite value of the metric. A series whose ``z`` is
beyond ``z_threshold`` in the metric's bad direction (below for SNR, CNR and FBER, above
for CJV and EFC) is quarantined, with a reason such as::

    cohort_low_snr_dietrich: snr_dietrich 12.3 is 4.1 MADs below the median 35.2 of 37 T2W
    series from SIEMENS (threshold 3.5)

("MADs" are scaled MADs, 1.4826·MAD, a robust standard deviation.) A group with fewer than
``min_size`` series, or a metric with fewer than ``min_size`` reference values, is not
judged and the reason says so (``cohort_too_small``, or a note in the judgement). A series
within range gets ``cohort_ok``. The reasons name the label, the manufacturer and numbers,
never a patient, a date or a description.

:func:`judge_cohort` is pure (rows in, judgements out); :func:`judge_node` reads the measured
series of a catalogue, judges them and records each judgement with
:meth:`~biobank.catalog.curation.CurationRecords.record_cohort` (a curator's decision
stands).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from biobank.catalog.curation import (
    COHORT_REASON,
    CohortRow,
    CurationRecords,
    Decision,
)
from biobank.curation.qc import robust_center
from biobank.curation.rules import CohortRules, Direction

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricScore:
    """One metric of a series against its cohort.

    ``z`` is ``None`` (and ``note`` says why) when the metric was not judged: no value for
    the series, too few reference values, or no spread in the cohort.
    """

    metric: str
    direction: Direction
    value: float | None
    median: float | None
    scale: float | None
    reference: int
    z: float | None
    flagged: bool
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (numbers rounded to 4 significant digits)."""
        return {
            "metric": self.metric,
            "direction": self.direction.value,
            "value": _round(self.value),
            "median": _round(self.median),
            "scale": _round(self.scale),
            "reference": self.reference,
            "z": _round(self.z),
            "flagged": self.flagged,
            "note": self.note,
        }


@dataclass(frozen=True)
class CohortJudgement:
    """What the cohort says of one series: its group, scores, decision and reasons."""

    series_instance_uid: str
    label: str
    manufacturer: str
    size: int
    scores: tuple[MetricScore, ...]
    decision: Decision
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (stored in the series' QC under ``cohort``)."""
        return {
            "series_instance_uid": self.series_instance_uid,
            "label": self.label,
            "manufacturer": self.manufacturer,
            "size": self.size,
            "scores": [score.to_json() for score in self.scores],
            "decision": self.decision.value,
            "reasons": list(self.reasons),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def _group_name(label: str, manufacturer: str) -> str:
    return f"{label} series from {manufacturer}"


def judge_cohort(rows: Sequence[CohortRow], rules: CohortRules) -> list[CohortJudgement]:
    """Judge every row against the other rows of its (label, manufacturer) group.

    Returns one judgement per row, in the order of ``rows``.
    """
    groups: dict[tuple[str, str], list[CohortRow]] = defaultdict(list)
    for row in rows:
        groups[(row.group_label, row.manufacturer)].append(row)
    judged: dict[str, CohortJudgement] = {}
    for (label, manufacturer), members in groups.items():
        for judgement in _judge_group(label, manufacturer, members, rules):
            judged[judgement.series_instance_uid] = judgement
    return [judged[row.series_instance_uid] for row in rows]


def _judge_group(
    label: str, manufacturer: str, members: list[CohortRow], rules: CohortRules
) -> list[CohortJudgement]:
    group = _group_name(label, manufacturer)
    size = len(members)
    if size < rules.min_size:
        reason = (
            f"{COHORT_REASON}too_small: {size} {group}, fewer than {rules.min_size}; "
            "not judged against the cohort"
        )
        return [
            CohortJudgement(m.series_instance_uid, label, manufacturer, size, (), Decision.APPROVE,
                            (reason,))
            for m in members
        ]  # fmt: skip
    reference = [m for m in members if m.decision is not Decision.EXCLUDE]
    centers: dict[str, tuple[float, float] | None] = {}
    counts: dict[str, int] = {}
    for metric, _ in rules.metrics:
        values = [m.metrics[metric] for m in reference if metric in m.metrics]
        counts[metric] = len(values)
        centers[metric] = robust_center(values) if len(values) >= rules.min_size else None
    out: list[CohortJudgement] = []
    for member in members:
        scores = tuple(
            _score(member, metric, direction, centers[metric], counts[metric], rules)
            for metric, direction in rules.metrics
        )
        flagged = [s for s in scores if s.flagged]
        reasons = [_flag_reason(s, size, group, rules) for s in flagged]
        if not flagged:
            judged = [s.metric for s in scores if s.z is not None]
            reasons.append(
                f"{COHORT_REASON}ok: {', '.join(judged)} within {rules.z_threshold:g} MADs of "
                f"the median of {size} {group}"
                if judged
                else f"{COHORT_REASON}ok: no metric could be judged against {size} {group}"
            )
        decision = Decision.QUARANTINE if flagged else Decision.APPROVE
        out.append(
            CohortJudgement(
                member.series_instance_uid, label, manufacturer, size, scores, decision,
                tuple(reasons),
            )
        )  # fmt: skip
    return out


def _score(
    member: CohortRow,
    metric: str,
    direction: Direction,
    center: tuple[float, float] | None,
    reference: int,
    rules: CohortRules,
) -> MetricScore:
    value = member.metrics.get(metric)
    if value is None:
        return MetricScore(metric, direction, None, None, None, reference, None, False,
                           "no value for this series")  # fmt: skip
    if center is None:
        note = f"{reference} reference values, fewer than {rules.min_size}"
        return MetricScore(metric, direction, value, None, None, reference, None, False, note)
    median, scale = center
    if scale <= 0:
        return MetricScore(metric, direction, value, median, scale, reference, None, False,
                           "no spread in the cohort")  # fmt: skip
    z = (value - median) / scale
    bad = -z if direction is Direction.LOW else z
    return MetricScore(
        metric, direction, value, median, scale, reference, z, bad > rules.z_threshold
    )


def _flag_reason(score: MetricScore, size: int, group: str, rules: CohortRules) -> str:
    # Only scored metrics are flagged: value, median and z are set.
    value, median, z = score.value or 0.0, score.median or 0.0, score.z or 0.0
    side = "below" if score.direction is Direction.LOW else "above"
    return (
        f"{COHORT_REASON}{score.direction.value}_{score.metric}: {score.metric} "
        f"{value:.4g} is {abs(z):.1f} MADs {side} the median {median:.4g} "
        f"of {size} {group} (threshold {rules.z_threshold:g})"
    )


@dataclass(frozen=True)
class CohortRun:
    """What :func:`judge_node` did: every judgement and how many decisions changed."""

    judgements: list[CohortJudgement]
    changed: int

    def counts(self) -> dict[str, int]:
        """Judgements by decision."""
        out = {Decision.APPROVE.value: 0, Decision.QUARANTINE.value: 0}
        for judgement in self.judgements:
            out[judgement.decision.value] += 1
        return out


def judge_node(records: CurationRecords, rules: CohortRules) -> CohortRun:
    """Judge every measured series of a catalogue against its cohort and record it.

    Curators' decisions stand (the judgement is still stored in the series' QC).
    """
    rows = records.cohort_metrics()
    judgements = judge_cohort(rows, rules)
    changed = 0
    for judgement in judgements:
        if records.record_cohort(
            judgement.series_instance_uid,
            judgement.to_json(),
            judgement.decision,
            judgement.reasons,
        ):
            changed += 1
    flagged = sum(1 for j in judgements if j.decision is Decision.QUARANTINE)
    logger.info(
        "cohort: judged %d series in %d groups; %d flagged, %d decisions changed",
        len(judgements),
        len({(j.label, j.manufacturer) for j in judgements}),
        flagged,
        changed,
    )
    return CohortRun(judgements, changed)


__all__ = ["CohortJudgement", "CohortRun", "MetricScore", "judge_cohort", "judge_node"]

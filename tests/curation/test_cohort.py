"""Cohort rules and judgement: robust z-scores per (label, manufacturer), config parsing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from biobank.catalog.curation import CohortRow, Decision
from biobank.curation.cohort import judge_cohort
from biobank.curation.qc import QcRules, robust_center, robust_z
from biobank.curation.rules import DEFAULT_COHORT_METRICS, CohortRules, Direction
from biobank.errors import InvalidInput

GOOD = {"snr_dietrich": 40.0, "cnr": 4.0, "cjv": 0.5, "efc": 0.45, "fber": 900.0}


def _rows(
    n: int, label: str = "T2W", vendor: str = "SIEMENS", start: int = 0, **worst: float
) -> list[CohortRow]:
    """``n`` series with a little spread around GOOD; the last one gets ``worst``."""
    rows = []
    for i in range(n):
        wobble = 1.0 + 0.02 * ((i % 5) - 2)  # ±4 %: a MAD of about 2 %
        metrics = {name: value * wobble for name, value in GOOD.items()}
        if i == n - 1:
            metrics |= worst
        rows.append(
            CohortRow(f"1.2.3.{start + i}", label, vendor, Decision.APPROVE, "rules", metrics)
        )
    return rows


class TestRobustZ:
    def test_it_is_the_modified_z_score_of_iglewicz_and_hoaglin(self) -> None:
        values = [1.0, 2.0, 3.0, 4.0, 100.0]
        median = 3.0
        mad = float(np.median(np.abs(np.array(values) - median)))  # 1.0
        expected = [0.6745 * (v - median) / mad for v in values]
        assert robust_z(values) == pytest.approx(expected, rel=1e-3)
        assert robust_center(values) == pytest.approx((3.0, 1.4826))
        assert robust_center([]) is None


class TestJudgement:
    def test_an_outlier_in_the_bad_direction_is_quarantined_with_the_reason(self) -> None:
        rows = _rows(37, snr_dietrich=10.0)
        judged = judge_cohort(rows, CohortRules())
        assert [j.decision for j in judged[:-1]] == [Decision.APPROVE] * 36
        worst = judged[-1]
        assert worst.decision is Decision.QUARANTINE
        (reason,) = worst.reasons
        assert reason.startswith("cohort_low_snr_dietrich: snr_dietrich 10 is ")
        assert "MADs below the median 40 of 37 T2W series from SIEMENS (threshold 3.5)" in reason
        score = next(s for s in worst.scores if s.metric == "snr_dietrich")
        assert score.z is not None and score.z < -3.5 and score.flagged
        assert judged[0].reasons[0].startswith("cohort_ok: snr_dietrich, cnr, cjv, efc, fber")

    def test_an_outlier_in_the_good_direction_is_not_flagged(self) -> None:
        judged = judge_cohort(_rows(20, snr_dietrich=400.0, efc=0.01), CohortRules())
        assert judged[-1].decision is Decision.APPROVE
        scores = {s.metric: s for s in judged[-1].scores}
        assert scores["snr_dietrich"].z is not None and scores["snr_dietrich"].z > 3.5
        assert not scores["snr_dietrich"].flagged and not scores["efc"].flagged

    def test_high_cjv_and_efc_are_bad(self) -> None:
        judged = judge_cohort(_rows(20, cjv=2.0, efc=0.9), CohortRules())
        codes = sorted(reason.split(":")[0] for reason in judged[-1].reasons)
        assert codes == ["cohort_high_cjv", "cohort_high_efc"]

    def test_groups_are_judged_apart_and_small_ones_not_at_all(self) -> None:
        siemens = _rows(12)
        ge = _rows(4, vendor="GE MEDICAL SYSTEMS", start=100, snr_dietrich=1.0)
        judged = judge_cohort([*siemens, *ge], CohortRules())
        assert [j.series_instance_uid for j in judged] == [
            r.series_instance_uid for r in [*siemens, *ge]
        ]
        small = judged[-1]
        assert small.decision is Decision.APPROVE and small.size == 4 and small.scores == ()
        assert small.reasons == (
            "cohort_too_small: 4 T2W series from GE MEDICAL SYSTEMS, fewer than 10; "
            "not judged against the cohort",
        )
        assert {j.size for j in judged[:12]} == {12}

    def test_excluded_series_are_judged_but_not_part_of_the_reference(self) -> None:
        rows = _rows(10)
        broken = [
            CohortRow(f"9.{i}", "T2W", "SIEMENS", Decision.EXCLUDE, "rules", {"snr_dietrich": 1.0})
            for i in range(10)
        ]
        judged = judge_cohort([*rows, *broken], CohortRules())
        # Ten broken series would drag the median down to half; left out, they stand out.
        assert all(j.decision is Decision.APPROVE for j in judged[:10])
        assert all(j.decision is Decision.QUARANTINE for j in judged[10:])
        score = next(s for s in judged[0].scores if s.metric == "snr_dietrich")
        assert score.reference == 10

    def test_missing_values_and_no_spread_are_noted_not_flagged(self) -> None:
        rows = [
            CohortRow(f"1.{i}", "CT", "SIEMENS", Decision.APPROVE, "rules", {"efc": 0.3})
            for i in range(12)
        ]
        judged = judge_cohort(rows, CohortRules())
        scores = {s.metric: s for s in judged[0].scores}
        assert scores["efc"].note == "no spread in the cohort" and scores["efc"].z is None
        assert scores["snr_dietrich"].note == "no value for this series"
        assert judged[0].decision is Decision.APPROVE
        assert judged[0].reasons == ("cohort_ok: no metric could be judged against 12 CT "
                                     "series from SIEMENS",)  # fmt: skip

    def test_the_rules_are_configurable(self) -> None:
        rows = _rows(6, snr_dietrich=30.0)
        strict = CohortRules(metrics=(("snr_dietrich", Direction.LOW),), z_threshold=2.0,
                             min_size=5)  # fmt: skip
        judged = judge_cohort(rows, strict)
        assert judged[-1].decision is Decision.QUARANTINE
        assert [s.metric for s in judged[-1].scores] == ["snr_dietrich"]
        assert judge_cohort(rows, CohortRules())[-1].reasons[0].startswith("cohort_too_small")


class TestConfig:
    def test_defaults(self) -> None:
        rules = QcRules.from_config({}, "node.yaml")
        assert rules == QcRules()
        assert rules.cohort.z_threshold == 3.5 and rules.cohort.min_size == 10
        assert dict(rules.cohort.metrics) == {
            "snr_dietrich": Direction.LOW, "cnr": Direction.LOW, "fber": Direction.LOW,
            "cjv": Direction.HIGH, "efc": Direction.HIGH,
        }  # fmt: skip
        assert rules.cohort.metrics == DEFAULT_COHORT_METRICS

    def test_a_section_sets_fixed_and_cohort_rules(self) -> None:
        rules = QcRules.from_config(
            {
                "min_snr_dietrich": 8,
                "min_slices": 5,
                "soft_tissue_hu": [-80, 90],
                "quarantine_on_load_problems": False,
                "cohort": {"z_threshold": 3, "min_size": 20, "metrics": {"efc": "high"}},
            },
            "node.yaml",
        )
        assert rules.min_snr_dietrich == 8.0 and rules.min_slices == 5
        assert rules.soft_tissue_hu == (-80.0, 90.0)
        assert rules.quarantine_on_load_problems is False
        assert rules.cohort == CohortRules(
            metrics=(("efc", Direction.HIGH),), z_threshold=3.0, min_size=20
        )

    @pytest.mark.parametrize(
        ("section", "named"),
        [
            ({"min_snr": 5}, "'min_snr'"),
            ({"min_slices": 2.5}, "curation.min_slices"),
            ({"min_slices": True}, "curation.min_slices"),
            ({"max_efc": "high"}, "curation.max_efc"),
            ({"soft_tissue_hu": [1]}, "curation.soft_tissue_hu"),
            ({"soft_tissue_hu": [100, -100]}, "curation.soft_tissue_hu"),
            ({"quarantine_on_load_problems": "yes"}, "curation.quarantine_on_load_problems"),
            ({"cohort": [1]}, "curation.cohort"),
            ({"cohort": {"threshold": 3}}, "'threshold'"),
            ({"cohort": {"z_threshold": "3.5"}}, "curation.cohort.z_threshold"),
            ({"cohort": {"z_threshold": 0}}, "z_threshold"),
            ({"cohort": {"min_size": 2}}, "min_size"),
            ({"cohort": {"metrics": {"snr_total": "low"}}}, "'snr_total'"),
            ({"cohort": {"metrics": {"cnr": "bad"}}}, "curation.cohort.metrics.cnr"),
            ({"cohort": {"metrics": []}}, "curation.cohort.metrics"),
        ],
    )
    def test_wrong_keys_and_values_are_refused_by_name(
        self, section: dict[str, Any], named: str
    ) -> None:
        with pytest.raises(InvalidInput, match="node.yaml") as caught:
            QcRules.from_config(section, "node.yaml")
        assert named in str(caught.value)

"""Completeness, distributions and robust outliers of a form's records (pure functions)."""

from __future__ import annotations

import datetime as dt
import math
import random

import numpy as np
import pytest

from biobank.clinical.models import (
    Code,
    Condition,
    Form,
    Operator,
    Variable,
    VariableType,
)
from biobank.clinical.quality import (
    MIN_VALUES,
    modified_z_scores,
    outliers,
    percentile,
    summarise,
)

FORM = Form(
    name="demo",
    version=2,
    title="Demo",
    description="",
    variables=(
        Variable("psa", VariableType.NUMBER, unit="ng/mL"),
        Variable("isup", VariableType.INTEGER),
        Variable(
            "status",
            VariableType.CODE,
            codes=(Code("alive"), Code("deceased"), Code("lost")),
            required=True,
        ),
        Variable(
            "death_date",
            VariableType.DATE,
            required_when=(Condition("status", Operator.EQUALS, "deceased"),),
        ),
        Variable("adt", VariableType.BOOLEAN),
        Variable("note", VariableType.STRING),
    ),
)


def rows(values: list[dict[str, object]], site: str = "a") -> list:
    return [(i + 1, f"P{i:04d}", site, v) for i, v in enumerate(values)]


def test_completeness_counts_conditional_variables_where_the_condition_holds() -> None:
    data = rows(
        [
            {"status": "alive", "psa": 4.0},
            {"status": "deceased", "death_date": "2020-05-01"},
            {"status": "deceased"},  # missing death date: counted as missing
            {"status": "alive", "psa": None},
        ]
    )
    summary = summarise(FORM, data)
    assert summary.records == 4
    death = summary.variable("death_date").completeness
    assert (death.present, death.expected, death.conditional) == (1, 2, True)
    assert death.ratio == 0.5
    psa = summary.variable("psa").completeness
    assert (psa.present, psa.expected, psa.conditional) == (1, 4, False)
    assert summary.variable("status").completeness.ratio == 1.0
    assert summary.variable("adt").completeness.ratio == 0.0


def test_numeric_distribution_matches_numpy() -> None:
    rng = random.Random(7)
    values = [round(rng.lognormvariate(2, 0.6), 2) for _ in range(57)]
    summary = summarise(FORM, rows([{"psa": v, "status": "alive"} for v in values]))
    dist = summary.variable("psa").distribution
    array = np.array(values)
    assert dist["n"] == 57
    assert dist["min"] == array.min() and dist["max"] == array.max()
    for name, q in (("p5", 5), ("p25", 25), ("median", 50), ("p75", 75), ("p95", 95)):
        assert dist[name] == pytest.approx(np.percentile(array, q), abs=1e-6), name
    assert dist["mean"] == pytest.approx(array.mean(), abs=1e-6)
    assert dist["sd"] == pytest.approx(array.std(ddof=1), abs=1e-6)


def test_codes_dates_booleans_and_strings() -> None:
    data = rows(
        [
            {"status": "alive", "adt": True, "note": "x"},
            {"status": "alive", "adt": False, "note": "x"},
            {"status": "deceased", "death_date": "2019-12-31", "adt": True, "note": "y"},
            {"status": "deceased", "death_date": dt.date(2021, 1, 2)},
            {"status": "gone"},  # a code no longer in the list
        ]
    )
    summary = summarise(FORM, data)
    codes = summary.variable("status").distribution
    assert codes["counts"] == {"alive": 2, "deceased": 2, "lost": 0}
    assert codes["other"] == 1
    dates = summary.variable("death_date").distribution
    assert dates == {
        "n": 2,
        "min": "2019-12-31",
        "max": "2021-01-02",
        "per_year": {"2019": 1, "2021": 1},
    }
    assert summary.variable("adt").distribution == {"n": 3, "true": 2, "false": 1}
    assert summary.variable("note").distribution == {"n": 3, "distinct": 2}
    assert summary.variable("psa").distribution == {"n": 0}


def test_summaries_per_site() -> None:
    data = rows([{"status": "alive", "psa": 1.0}] * 3, site="b") + rows(
        [{"status": "deceased"}], site="a"
    )
    summary = summarise(FORM, data)
    assert list(summary.sites) == ["a", "b"]
    assert summary.site_records == {"a": 1, "b": 3}
    site_b = {v.name: v for v in summary.sites["b"]}
    assert site_b["psa"].completeness.ratio == 1.0
    site_a = {v.name: v for v in summary.sites["a"]}
    assert site_a["death_date"].completeness.expected == 1
    body = summary.to_json()
    assert body["sites"]["b"]["records"] == 3
    assert body["variables"][0]["name"] == "psa"


def test_modified_z_score_uses_mad() -> None:
    values = [float(x) for x in range(1, 11)] + [100.0]
    scores, median, mad, scale = modified_z_scores(values)  # type: ignore[misc]
    assert (median, mad, scale) == (6.0, 3.0, "mad")
    assert scores[-1] == pytest.approx(0.6745 * 94 / 3)


def test_mad_zero_falls_back_to_mean_absolute_deviation() -> None:
    values = [5.0] * 9 + [6.0, 50.0]
    scores, median, mad, scale = modified_z_scores(values)  # type: ignore[misc]
    assert (median, mad, scale) == (5.0, 0.0, "mean_ad")
    mean_ad = (1 + 45) / 11
    assert scores[-1] == pytest.approx(45 / (1.253314 * mean_ad))


def test_no_outliers_with_too_few_values_or_no_spread() -> None:
    assert MIN_VALUES == 10
    assert modified_z_scores([1.0] * (MIN_VALUES - 2) + [1000.0]) is None
    assert modified_z_scores([1.0] * (MIN_VALUES - 1) + [1000.0]) is not None
    assert modified_z_scores([1.0, 2.0, 1000.0]) is None
    assert modified_z_scores([3.0] * 20) is None
    few = rows([{"psa": float(i)} for i in range(MIN_VALUES - 2)] + [{"psa": 9999.0}])
    assert outliers(FORM, few) == []


def test_outliers_name_the_record_field_value_and_direction() -> None:
    psa = [4.0, 5.0, 6.0, 5.5, 4.5, 6.5, 5.0, 4.8, 5.2, 6.1, 410.0, 0.01]
    data = rows([{"psa": v, "isup": 2} for v in psa])
    found = outliers(FORM, data)
    assert [(o.record_id, o.field, o.value, o.direction) for o in found] == [
        (11, "psa", 410.0, "high"),
        (12, "psa", 0.01, "low"),
    ]
    top = found[0]
    assert top.pseudonym == "P0010" and top.site == "a"
    assert top.median == pytest.approx(np.median(psa))
    assert top.z > 3.5
    assert math.isclose(top.mad, float(np.median(np.abs(np.array(psa) - np.median(psa)))))
    assert top.to_json()["direction"] == "high"
    assert found[1].z < -3.5
    # a higher threshold keeps only the extreme value; isup has no spread: never flagged
    assert [o.record_id for o in outliers(FORM, data, threshold=100.0)] == [11]
    assert all(o.field == "psa" for o in outliers(FORM, data, threshold=0.5))


def test_outliers_on_named_fields_only_and_bad_arguments() -> None:
    data = rows([{"psa": float(i), "isup": i % 5 + 1} for i in range(30)] + [{"isup": 40}])
    assert [o.field for o in outliers(FORM, data, fields=["isup"])] == ["isup"]
    with pytest.raises(ValueError, match="not a numeric variable"):
        outliers(FORM, data, fields=["status"])
    with pytest.raises(ValueError, match="positive"):
        outliers(FORM, data, threshold=0)


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)

"""Data quality of a clinical form: completeness, distributions and robust outliers.

Curators look at a form's records as a whole before they look at one record: how often is
each variable filled, what do its values look like, and which values stand out. These are
pure functions over the rows a repository returns (``(record_id, pseudonym, site,
values)``, e.g. :meth:`biobank.catalog.clinical.ClinicalRecords.form_values`); they read no
database and log nothing (values may be PHI until pseudonymised, and dates are shifted).

Completeness
    ``present / expected``. ``expected`` is every record, except for a variable that is
    required (or allowed) only under conditions (``required_when`` / ``allowed_when``, e.g.
    the cause of death when the patient is deceased): then it counts only the records where
    the conditions hold, so that an empty cause of death for a living patient is not
    counted as missing.

Distribution, by type
    numbers and integers: ``n, min, p5, p25, median, p75, p95, max, mean, sd`` (percentiles
    interpolated linearly between order statistics, as numpy's default; ``sd`` is the sample
    standard deviation); codes: a count per code of the code list, codes never used
    included (with ``other`` for stored values no longer in the list); dates: ``min``,
    ``max`` and a count per year; booleans: ``true`` and ``false`` counts; strings: how many
    and how many distinct (free text is never echoed).

Every summary is given for the whole form and per site.

Outliers (:func:`outliers`)
    The modified z-score of Iglewicz and Hoaglin (1993), per numeric variable:
    ``z = 0.6745 (x - median) / MAD`` where MAD is the median absolute deviation from the
    median. When MAD is 0 (more than half the values are equal) the mean absolute deviation
    from the median, scaled by 1.253314, takes its place: ``z = (x - median) /
    (1.253314 MeanAD)``. Values with ``|z| > threshold`` (3.5 by default, their
    recommendation) are outliers. With fewer than :data:`MIN_VALUES` values, or when every
    value is the same, nothing is flagged: there is no spread to stand out from.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from biobank.clinical.models import Condition, Form, Variable, VariableType
from biobank.clinical.validate import condition_holds

Row = tuple[int, str, str, Mapping[str, Any]]
"""One record as the repository gives it: ``(record_id, pseudonym, site, values)``."""

MIN_VALUES = 10
"""Fewer values than this: no outliers (a robust scale needs some data)."""
DEFAULT_THRESHOLD = 3.5
"""Iglewicz and Hoaglin's cut-off for the modified z-score."""
MAD_FACTOR = 0.6745
"""The 0.75 quantile of the standard normal: makes MAD consistent with sigma."""
MEAN_AD_FACTOR = 1.253314
"""sqrt(pi/2): makes the mean absolute deviation consistent with sigma."""
OTHER = "other"
"""The code count of stored values that are not (or no longer) in the code list."""

_NUMERIC = (VariableType.NUMBER, VariableType.INTEGER)
_PERCENTILES = (("p5", 5.0), ("p25", 25.0), ("median", 50.0), ("p75", 75.0), ("p95", 95.0))


@dataclass(frozen=True)
class Completeness:
    """How often a variable is filled where it is expected."""

    present: int
    expected: int
    conditional: bool = False
    """Whether ``expected`` counts only the records where the variable's conditions hold."""

    @property
    def ratio(self) -> float | None:
        """``present / expected``, ``None`` when nothing is expected."""
        return self.present / self.expected if self.expected else None

    def to_json(self) -> dict[str, Any]:
        """The completeness as a JSON object."""
        ratio = self.ratio
        return {
            "present": self.present,
            "expected": self.expected,
            "ratio": round(ratio, 4) if ratio is not None else None,
            "conditional": self.conditional,
        }


@dataclass(frozen=True)
class VariableSummary:
    """One variable's completeness and distribution (see the module docstring)."""

    name: str
    type: VariableType
    completeness: Completeness
    distribution: dict[str, Any]
    unit: str | None = None
    label: str = ""

    def to_json(self) -> dict[str, Any]:
        """The summary as a JSON object."""
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type.value,
            "unit": self.unit,
            "completeness": self.completeness.to_json(),
            "distribution": self.distribution,
        }


@dataclass(frozen=True)
class FormSummary:
    """Every variable of a form summarised, for all records and per site."""

    form: str
    form_version: int
    records: int
    variables: tuple[VariableSummary, ...]
    sites: dict[str, tuple[VariableSummary, ...]] = field(default_factory=dict)
    site_records: dict[str, int] = field(default_factory=dict)

    def variable(self, name: str) -> VariableSummary:
        """The summary of the variable ``name`` (KeyError if the form has none)."""
        for summary in self.variables:
            if summary.name == name:
                return summary
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """``{"form", "form_version", "records", "variables": [...], "sites": {...}}``."""
        return {
            "form": self.form,
            "form_version": self.form_version,
            "records": self.records,
            "variables": [summary.to_json() for summary in self.variables],
            "sites": {
                site: {
                    "records": self.site_records.get(site, 0),
                    "variables": [summary.to_json() for summary in summaries],
                }
                for site, summaries in self.sites.items()
            },
        }


@dataclass(frozen=True)
class Outlier:
    """A value that stands out from its variable's values (modified z-score)."""

    record_id: int
    pseudonym: str
    site: str
    field: str
    value: float
    z: float
    median: float
    mad: float
    """The median absolute deviation (0 when the mean absolute deviation was used)."""
    scale: str
    """``mad``, or ``mean_ad`` when MAD was 0 (see the module docstring)."""
    direction: str
    """``high`` or ``low``."""

    def to_json(self) -> dict[str, Any]:
        """The outlier as a JSON object."""
        return {
            "record_id": self.record_id,
            "pseudonym": self.pseudonym,
            "site": self.site,
            "field": self.field,
            "value": self.value,
            "z": round(self.z, 3),
            "median": self.median,
            "mad": self.mad,
            "scale": self.scale,
            "direction": self.direction,
        }


# -- helpers ---------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of sorted values, linearly interpolated.

    The same as numpy's default (``method="linear"``, Hyndman and Fan type 7).
    """
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _typed(variable: Variable, value: Any) -> Any:
    """A stored value as its type (JSON gives dates as ISO strings)."""
    if variable.type is VariableType.DATE:
        return _as_date(value)
    return value


def _holds(condition: Condition, values: Mapping[str, Any], form: Form) -> bool:
    """Whether ``condition`` holds, as validation decides it, on values typed by ``form``."""
    variable = form.variable(condition.field)
    raw = values.get(condition.field)
    value = _typed(variable, raw) if variable is not None else raw
    return condition_holds(condition, {condition.field: value})


def _conditions(variable: Variable) -> tuple[Condition, ...]:
    return variable.required_when or variable.allowed_when


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _round(value: float) -> float:
    return round(value, 6)


def _numbers(numbers: list[float]) -> dict[str, Any]:
    if not numbers:
        return {"n": 0}
    ordered = sorted(numbers)
    mean = math.fsum(ordered) / len(ordered)
    out: dict[str, Any] = {"n": len(ordered), "min": ordered[0]}
    for name, q in _PERCENTILES:
        out[name] = _round(percentile(ordered, q))
    out["max"] = ordered[-1]
    out["mean"] = _round(mean)
    if len(ordered) > 1:
        variance = math.fsum((x - mean) ** 2 for x in ordered) / (len(ordered) - 1)
        out["sd"] = _round(math.sqrt(variance))
    else:
        out["sd"] = None
    return out


def _distribution(variable: Variable, values: list[Any]) -> dict[str, Any]:
    kind = variable.type
    if kind in _NUMERIC:
        return _numbers([n for n in (_as_number(v) for v in values) if n is not None])
    if kind is VariableType.CODE:
        counts = dict.fromkeys((code.value for code in variable.codes), 0)
        other = 0
        for value in values:
            text = str(value)
            if text in counts:
                counts[text] += 1
            else:
                other += 1
        return {"n": len(values), "counts": counts, OTHER: other}
    if kind is VariableType.DATE:
        dates = sorted(d for d in (_as_date(v) for v in values) if d is not None)
        years = Counter(d.year for d in dates)
        return {
            "n": len(dates),
            "min": dates[0].isoformat() if dates else None,
            "max": dates[-1].isoformat() if dates else None,
            "per_year": {str(year): years[year] for year in sorted(years)},
        }
    if kind is VariableType.BOOLEAN:
        flags = [v for v in values if isinstance(v, bool)]
        return {"n": len(flags), "true": sum(flags), "false": len(flags) - sum(flags)}
    return {"n": len(values), "distinct": len({str(v) for v in values})}


def _summaries(form: Form, rows: Sequence[Row]) -> tuple[VariableSummary, ...]:
    out = []
    for variable in form.variables:
        conditions = _conditions(variable)
        expected = 0
        found: list[Any] = []
        for _, _, _, values in rows:
            value = values.get(variable.name)
            counted = not conditions or all(_holds(c, values, form) for c in conditions)
            if counted:
                expected += 1
            if _present(value):
                found.append(value)
                if not counted:  # filled where not expected: still present, still expected
                    expected += 1
        present = len(found)
        out.append(
            VariableSummary(
                name=variable.name,
                type=variable.type,
                completeness=Completeness(present, expected, conditional=bool(conditions)),
                distribution=_distribution(variable, found),
                unit=variable.unit,
                label=variable.label,
            )
        )
    return tuple(out)


# -- public ----------------------------------------------------------------------------------


def summarise(form: Form, rows: Iterable[Row]) -> FormSummary:
    """Completeness and distribution of every variable of ``form``, overall and per site.

    ``rows`` are ``(record_id, pseudonym, site, values)`` with the stored typed values
    (dates as ``datetime.date`` or ISO strings). Values of fields the form does not declare
    are ignored.
    """
    rows = list(rows)
    by_site: dict[str, list[Row]] = {}
    for row in rows:
        by_site.setdefault(row[2], []).append(row)
    return FormSummary(
        form=form.name,
        form_version=form.version,
        records=len(rows),
        variables=_summaries(form, rows),
        sites={site: _summaries(form, by_site[site]) for site in sorted(by_site)},
        site_records={site: len(by_site[site]) for site in sorted(by_site)},
    )


def modified_z_scores(values: Sequence[float]) -> tuple[list[float], float, float, str] | None:
    """The modified z-score of each value, with the median, MAD and the scale used.

    Returns ``None`` when there are fewer than :data:`MIN_VALUES` values or no spread at all
    (MAD and mean absolute deviation both 0). The scale is ``mad`` or ``mean_ad``.
    """
    if len(values) < MIN_VALUES:
        return None
    ordered = sorted(values)
    median = percentile(ordered, 50.0)
    deviations = sorted(abs(x - median) for x in ordered)
    mad = percentile(deviations, 50.0)
    if mad > 0:
        return [MAD_FACTOR * (x - median) / mad for x in values], median, mad, "mad"
    mean_ad = math.fsum(deviations) / len(deviations)
    if mean_ad == 0:
        return None
    scale = MEAN_AD_FACTOR * mean_ad
    return [(x - median) / scale for x in values], median, 0.0, "mean_ad"


def outliers(
    form: Form,
    rows: Iterable[Row],
    threshold: float = DEFAULT_THRESHOLD,
    *,
    fields: Iterable[str] | None = None,
) -> list[Outlier]:
    """Values of the numeric variables whose modified z-score exceeds ``threshold``.

    Each numeric (number, integer) variable of ``form`` — or only those named in
    ``fields`` — is scored over all the rows that hold a value. The outliers come by
    variable in form order, then by decreasing ``|z|``.

    Raises
    ------
    ValueError
        If ``threshold`` is not positive or ``fields`` names a variable that is not numeric.
    """
    if not threshold > 0:
        raise ValueError(f"threshold {threshold}: give a positive number (3.5 is customary)")
    numeric = [v for v in form.variables if v.type in _NUMERIC]
    if fields is not None:
        wanted = list(fields)
        names = {v.name for v in numeric}
        wrong = [name for name in wanted if name not in names]
        if wrong:
            raise ValueError(
                f"{wrong[0]} is not a numeric variable of form {form.name}; its numeric "
                f"variables are {', '.join(sorted(names)) or 'none'}"
            )
        numeric = [v for v in numeric if v.name in wanted]
    rows = list(rows)
    found: list[Outlier] = []
    for variable in numeric:
        points = [
            (row, number)
            for row in rows
            if (number := _as_number(row[3].get(variable.name))) is not None
        ]
        scored = modified_z_scores([number for _, number in points])
        if scored is None:
            continue
        scores, median, mad, scale = scored
        flagged = [
            Outlier(
                record_id=row[0],
                pseudonym=row[1],
                site=row[2],
                field=variable.name,
                value=number,
                z=z,
                median=median,
                mad=mad,
                scale=scale,
                direction="high" if z > 0 else "low",
            )
            for (row, number), z in zip(points, scores, strict=True)
            if abs(z) > threshold
        ]
        found.extend(sorted(flagged, key=lambda o: (-abs(o.z), o.record_id)))
    return found


__all__ = [
    "DEFAULT_THRESHOLD",
    "MAD_FACTOR",
    "MEAN_AD_FACTOR",
    "MIN_VALUES",
    "OTHER",
    "Completeness",
    "FormSummary",
    "Outlier",
    "Row",
    "VariableSummary",
    "modified_z_scores",
    "outliers",
    "percentile",
    "summarise",
]

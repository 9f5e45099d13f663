"""Answering a cohort query: count in the catalogue, protect the counts, shape the answer.

:func:`count` runs a :class:`~biobank.datasets.cohort.CohortQuery` on the catalogue (one
statement per count, :func:`biobank.catalog.cohort.count_cohort`) and protects every count
unless the caller may see exact ones (``exact=True``: curators, administrators, the node's
operator at its console). :meth:`CohortResult.to_json` is our answer;
:func:`beacon_response` is the Beacon v2 count response for Beacon input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from biobank.catalog.cohort import count_cohort
from biobank.catalog.repository import Catalog
from biobank.datasets.cohort import CohortQuery, Granularity
from biobank.datasets.privacy import CountPolicy, Precision, ProtectedCount, exact, noise_seed

logger = logging.getLogger(__name__)

BEACON_API_VERSION = "v2.0.0"


@dataclass(frozen=True)
class CountSet:
    """Persons, studies and series, each as reported."""

    persons: ProtectedCount
    studies: ProtectedCount
    series: ProtectedCount

    def to_json(self) -> dict[str, Any]:
        """``{"persons": {"value", "precision"}, ...}``."""
        return {
            "persons": self.persons.to_json(),
            "studies": self.studies.to_json(),
            "series": self.series.to_json(),
        }


@dataclass(frozen=True)
class StratumResult:
    """One stratum: its values (``{"gender": "male"}``) and counts."""

    values: dict[str, str]
    counts: CountSet


@dataclass(frozen=True)
class CohortResult:
    """The answer to a cohort query."""

    total: CountSet
    strata: tuple[StratumResult, ...]
    exact: bool
    """Whether the counts are exact (not protected)."""
    policy: CountPolicy

    def to_json(self) -> dict[str, Any]:
        """Our JSON answer (``biobank query --json``, ``POST /api/v1/cohorts/count``)."""
        out: dict[str, Any] = {
            "protected": not self.exact,
            **self.total.to_json(),
        }
        if not self.exact:
            out["protection"] = {
                "threshold": self.policy.threshold,
                "rounding": self.policy.rounding,
                "obfuscate_zero": self.policy.obfuscate_zero,
                "noise": self.policy.epsilon is not None,
            }
        if self.strata:
            out["strata"] = [
                {"values": stratum.values, **stratum.counts.to_json()} for stratum in self.strata
            ]
        return out


def count(
    catalog: Catalog,
    query: CohortQuery,
    *,
    exact_counts: bool,
    policy: CountPolicy | None = None,
    secret: bytes | None = None,
) -> CohortResult:
    """Count ``query`` and protect the counts unless ``exact_counts``.

    ``secret`` (the node's noise secret) is needed when the policy adds noise.

    Raises
    ------
    InvalidQuery
        If the query cannot be compiled.
    InvalidInput
        If the policy adds noise and no ``secret`` is given.
    StorageError
        If the catalogue cannot be read.
    """
    policy = policy or CountPolicy()
    found = count_cohort(catalog, query.tree, query.stratify)
    normalised = query.normalised()

    def report(value: int, what: str, stratum: str) -> ProtectedCount:
        if exact_counts:
            return exact(value)
        seed = None
        if policy.epsilon is not None and secret is not None:
            seed = noise_seed(secret, normalised, f"{what}|{stratum}")
        return policy.protect(value, seed)

    def counts(persons: int, studies: int, series: int, stratum: str) -> CountSet:
        return CountSet(
            report(persons, "persons", stratum),
            report(studies, "studies", stratum),
            report(series, "series", stratum),
        )

    strata = tuple(
        StratumResult(
            s.values,
            counts(
                s.persons,
                s.studies,
                s.series,
                "|".join(f"{k}={v}" for k, v in sorted(s.values.items())),
            ),
        )
        for s in found.strata
    )
    logger.info(
        "cohort count: %d strata, %s",
        len(strata),
        "exact" if exact_counts else "protected",
    )
    return CohortResult(
        counts(found.persons, found.studies, found.series, ""), strata, exact_counts, policy
    )


def beacon_response(result: CohortResult, query: CohortQuery, beacon_id: str) -> dict[str, Any]:
    """The Beacon v2 count (or boolean) response for the persons count of ``result``."""
    persons = result.total.persons
    granularity = (
        Granularity.BOOLEAN if query.granularity is Granularity.BOOLEAN else Granularity.COUNT
    )
    summary: dict[str, Any] = {"exists": persons.value > 0}
    if granularity is Granularity.COUNT:
        summary["numTotalResults"] = persons.value
        summary["countPrecision"] = persons.precision.value
        if not result.exact:
            # imprecise: reported as the threshold; rounded: to a multiple of the step.
            imprecise = persons.precision is Precision.IMPRECISE
            summary["countAdjustedTo"] = [
                result.policy.threshold if imprecise else result.policy.rounding
            ]
    return {
        "meta": {
            "beaconId": beacon_id,
            "apiVersion": BEACON_API_VERSION,
            "returnedGranularity": granularity.value,
            "receivedRequestSummary": {
                "apiVersion": BEACON_API_VERSION,
                "requestedSchemas": [],
                "filters": list(query.filters),
                "requestedGranularity": query.granularity.value,
                "pagination": {"skip": 0, "limit": 0},
            },
            "returnedSchemas": [],
        },
        "responseSummary": summary,
        "info": {
            "studies": result.total.studies.to_json(),
            "series": result.total.series.to_json(),
        },
    }


__all__ = [
    "BEACON_API_VERSION",
    "CohortResult",
    "CountSet",
    "StratumResult",
    "beacon_response",
    "count",
]

"""Cohorts over clinical and imaging data: the query language, counts and their protection.

- :mod:`biobank.datasets.cohort` parses the Lens/EUCAIM AST and Beacon v2 filters into the
  model the catalogue compiles (:mod:`biobank.catalog.cohort`), with a registry of keys.
- :mod:`biobank.datasets.privacy` protects counts that leave the node (small counts, rounding,
  optional deterministic Laplace noise).
- :mod:`biobank.datasets.service` counts a query and shapes the answer (ours, or Beacon's).

Example
-------
>>> query = parse_query({"ast": {"operand": "AND", "children": [
...     {"key": "gender", "type": "EQUALS", "value": "male"}]}})  # doctest: +SKIP
>>> count(catalog, query, exact_counts=False).to_json()  # doctest: +SKIP
"""

from biobank.datasets.cohort import (
    KEYS,
    CohortQuery,
    Granularity,
    QueryFormat,
    parse_beacon,
    parse_lens,
    parse_query,
    valid_keys,
)
from biobank.datasets.privacy import CountPolicy, Precision, ProtectedCount, noise_secret, protect
from biobank.datasets.service import CohortResult, beacon_response, count

__all__ = [
    "KEYS",
    "CohortQuery",
    "CohortResult",
    "CountPolicy",
    "Granularity",
    "Precision",
    "ProtectedCount",
    "QueryFormat",
    "beacon_response",
    "count",
    "noise_secret",
    "parse_beacon",
    "parse_lens",
    "parse_query",
    "protect",
    "valid_keys",
]

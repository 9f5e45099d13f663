"""``POST /api/v1/cohorts/count``: cohort counts over the node's clinical and imaging data.

The body is a Lens/EUCAIM AST (``{"id", "ast"}`` or the bare tree, with an optional
``stratify``) or a Beacon v2 request body (``{"meta", "query": {"filters",
"requestedGranularity"}}``); a Beacon body gets a Beacon count response
(``responseSummary.exists/numTotalResults/countPrecision``), a Lens one our JSON (persons,
studies, series, each ``{"value", "precision"}``, and ``strata``).

Any authenticated user may count. Curators and administrators get exact counts; everyone
else gets counts protected by the node's ``cohorts:`` policy (small counts reported as the
threshold, the rest rounded; optional deterministic noise) in every stratum. A query that
cannot be compiled is a 400 naming the key and what to send. Each call is in the access log
(``cohorts.count``; the detail names the format and whether counts were exact, never values).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from biobank.access import Principal, Role
from biobank.api.deps import PrincipalDep, Services, ServicesDep, client_of
from biobank.api.errors import status_of
from biobank.datasets import (
    CountPolicy,
    QueryFormat,
    beacon_response,
    count,
    noise_secret,
    parse_query,
)
from biobank.errors import BiobankError

router = APIRouter(prefix="/api/v1", tags=["cohorts"])

EXACT_ROLES = frozenset({Role.CURATOR, Role.ADMIN})
"""Roles that see exact counts."""


def _policy(svc: Services) -> CountPolicy:
    node = svc.node
    return CountPolicy.from_mapping(node.section("cohorts"), str(node.config_path))


def _audit(request: Request, svc: Services, caller: Principal, status: int, detail: str) -> None:
    svc.audit.record(caller, "cohorts.count", "*", status, client_of(request), detail)


@router.post("/cohorts/count", summary="Count a cohort (Lens/EUCAIM AST or Beacon v2 body)")
def count_cohort(
    body: Annotated[Any, Body(description="A Lens AST or a Beacon v2 request body.")],
    request: Request,
    svc: ServicesDep,
    caller: PrincipalDep,
) -> Response:
    """Persons, studies and series of the cohort; exact for curators and admins only."""
    exact = caller.role in EXACT_ROLES
    detail = f"exact={str(exact).lower()}"
    try:
        query = parse_query(body)
        detail += f" format={query.format.value} strata={len(query.stratify)}"
        policy = _policy(svc)
        secret = noise_secret(svc.node.home) if policy.epsilon is not None and not exact else None
        result = count(svc.catalog, query, exact_counts=exact, policy=policy, secret=secret)
    except BiobankError as exc:
        _audit(request, svc, caller, status_of(exc), detail)
        raise
    _audit(request, svc, caller, 200, detail)
    if query.format is QueryFormat.BEACON:
        answer = beacon_response(result, query, svc.node.config.node_id)
    else:
        answer = {"id": query.query_id, **result.to_json()} if query.query_id else result.to_json()
    return Response(
        json.dumps(answer, separators=(",", ":")).encode(), media_type="application/json"
    )


__all__ = ["EXACT_ROLES", "router"]

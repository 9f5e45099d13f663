"""The curation API under ``/api/v1``: the review queue, decisions, labels, sheets, jobs.

What ``biobank curate queue|series|decide|decide-study|study|relabel|history|sheet`` and
``biobank jobs list|retry`` do on the node's machine, over HTTP for curators working
elsewhere (issue 6). ``GET /curation/series`` searches the records by facet (label,
decision, manufacturer, needs_review; paged) and ``/curation/facets`` counts them. Curators and
admins only; retrying jobs is for admins. Every call is appended to the access log (action
``curation.*``, the series UID as resource, the outcome's status); curators' comments are
free text and stay out of the log's detail — they are kept in the series' history.

Reading the catalogue and loading images block, so the endpoints are plain ``def``: FastAPI
runs them on a worker thread.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from biobank.access import Principal, Role
from biobank.api.audit import audited
from biobank.api.deps import AdminDep, PrincipalDep, ServicesDep
from biobank.catalog.curation import CurationFilter, CurationRecords, Decision
from biobank.catalog.jobs import JobRecords, JobState
from biobank.curation.series import load_series_from_node
from biobank.curation.sheet import contact_sheet
from biobank.errors import PermissionDenied

router = APIRouter(prefix="/api/v1", tags=["curation"])

MAX_PAGE = 1000
"""The most records or jobs one request lists."""

CURATION_ROLES = frozenset({Role.CURATOR, Role.ADMIN})


async def curator(caller: PrincipalDep) -> Principal:
    """A curator or an administrator; 403 otherwise."""
    if caller.role not in CURATION_ROLES:
        raise PermissionDenied(
            f"user {caller.username} ({caller.role}) may not review series; the curation API "
            "is for the curator and admin roles — ask an administrator"
        )
    return caller


CuratorDep = Annotated[Principal, Depends(curator)]

# -- bodies ----------------------------------------------------------------------------------

Comment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class DecisionBody(BaseModel):
    """A curator's decision on a series; the comment (why) is required."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "quarantine", "exclude"]
    comment: Comment


class LabelBody(BaseModel):
    """A curator's label for a series (T1W, T2W, FLAIR, …); the comment is required."""

    model_config = ConfigDict(extra="forbid")

    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)]
    comment: Comment


class RetryBody(BaseModel):
    """The failed jobs to put back to pending."""

    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=10_000)]


# -- helpers ---------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (a QC measure may be undefined) as ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _json(value: Any) -> Response:
    body = json.dumps(_finite(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode(), media_type="application/json")


def _record_with_history(records: CurationRecords, series: str) -> dict[str, Any]:
    out = records.get(series).to_json()
    out["history"] = [
        {
            "at": event.at.isoformat(timespec="seconds"),
            "actor": event.actor,
            "action": event.action,
            "detail": event.detail,
        }
        for event in records.history(series)
    ]
    return out


def _filter(
    label: str | None,
    decision: Decision | None,
    manufacturer: str | None,
    needs_review: bool | None,
) -> CurationFilter:
    return CurationFilter(
        label=label, decision=decision, manufacturer=manufacturer, needs_review=needs_review
    )


LabelQuery = Annotated[str | None, Query(max_length=16, description="T1W, T2W, … (any case)")]
ManufacturerQuery = Annotated[
    str | None, Query(max_length=64, description="Normalised: any case, UNKNOWN for none")
]
NeedsReviewQuery = Annotated[bool | None, Query(description="Labels that need review")]

# -- review ----------------------------------------------------------------------------------


@router.get("/curation/queue", summary="Series to review (quarantined, or another decision)")
def review_queue(
    request: Request,
    svc: ServicesDep,
    caller: CuratorDep,
    decision: Decision = Decision.QUARANTINE,
    label: LabelQuery = None,
    manufacturer: ManufacturerQuery = None,
    needs_review: NeedsReviewQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Curation records with this decision, oldest first (``offset`` pages through them).

    ``label``, ``manufacturer`` and ``needs_review`` narrow the queue.
    """
    where = _filter(label, None, manufacturer, needs_review)
    with audited(request, svc, caller, "curation.queue", "*") as entry:
        found = CurationRecords(svc.catalog).queue(
            decision, limit=limit, offset=offset, where=where
        )
        entry.detail = f"decision={decision.value} offset={offset} records={len(found)}"
    return _json([record.to_json() for record in found])


@router.get("/curation/series", summary="Search curation records by facet (paged)")
def search_series(
    request: Request,
    svc: ServicesDep,
    caller: CuratorDep,
    label: LabelQuery = None,
    decision: Decision | None = None,
    manufacturer: ManufacturerQuery = None,
    needs_review: NeedsReviewQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """``{"total": n, "limit", "offset", "filters": {…}, "records": [...]}``, oldest first.

    ``total`` counts every match; ``records`` holds one page of them.
    """
    where = _filter(label, decision, manufacturer, needs_review)
    with audited(request, svc, caller, "curation.search", "*") as entry:
        records = CurationRecords(svc.catalog)
        found = records.find(where, limit, offset)
        total = records.count(where)
        entry.detail = f"filters={json.dumps(where.to_json())} total={total}"
    return _json(
        {
            "total": total,
            "limit": limit,
            "offset": offset,
            "filters": where.to_json(),
            "records": [record.to_json() for record in found],
        }
    )


@router.get("/curation/facets", summary="Series counted by decision, label and manufacturer")
def curation_facets(
    request: Request,
    svc: ServicesDep,
    caller: CuratorDep,
    label: LabelQuery = None,
    decision: Decision | None = None,
    manufacturer: ManufacturerQuery = None,
    needs_review: NeedsReviewQuery = None,
) -> Response:
    """``{"decision": {"quarantine": 3, …}, "label": {"T2W": 12, …}, "manufacturer": {…}}``.

    The filters (as for ``/curation/series``) count only the matching series.
    """
    where = _filter(label, decision, manufacturer, needs_review)
    with audited(request, svc, caller, "curation.facets", "*") as entry:
        facets = CurationRecords(svc.catalog).facets(where)
        entry.detail = f"filters={json.dumps(where.to_json())}"
    return _json(facets)


@router.get("/curation/series/{series}", summary="A series' curation record and history")
def series_record(series: str, request: Request, svc: ServicesDep, caller: CuratorDep) -> Response:
    """The record (label, QC, decision, reasons) with ``history``: who did what, when, why."""
    with audited(request, svc, caller, "curation.series", series):
        found = _record_with_history(CurationRecords(svc.catalog), series)
    return _json(found)


@router.post("/curation/series/{series}/decision", summary="Approve, quarantine or exclude")
def decide_series(
    series: str, body: DecisionBody, request: Request, svc: ServicesDep, caller: CuratorDep
) -> Response:
    """Record the caller's decision with its comment; it stands until another curator's.

    Answers the updated record with its history.
    """
    with audited(request, svc, caller, "curation.decide", series) as entry:
        entry.detail = f"decision={body.decision}"
        records = CurationRecords(svc.catalog)
        records.decide(series, Decision(body.decision), actor=caller.username, comment=body.comment)
        found = _record_with_history(records, series)
    return _json(found)


@router.post("/curation/series/{series}/label", summary="Correct a series' label")
def relabel_series(
    series: str, body: LabelBody, request: Request, svc: ServicesDep, caller: CuratorDep
) -> Response:
    """Record the caller's label (the classifier's stays in the history); the updated record."""
    with audited(request, svc, caller, "curation.relabel", series) as entry:
        entry.detail = f"label={body.label}"
        records = CurationRecords(svc.catalog)
        records.relabel(series, body.label, actor=caller.username, comment=body.comment)
        found = _record_with_history(records, series)
    return _json(found)


@router.get("/curation/studies/{study}", summary="A study's curation state and its series")
def study_record(study: str, request: Request, svc: ServicesDep, caller: CuratorDep) -> Response:
    """``{"state": "approve|quarantine|exclude|mixed|pending", "counts", "series", …}``.

    ``quarantine`` if any series is quarantined, ``approve`` if all are approved, ``exclude``
    if all are excluded, ``pending`` if any is undecided, else ``mixed``.
    """
    with audited(request, svc, caller, "curation.study", study) as entry:
        found = CurationRecords(svc.catalog).study_state(study)
        entry.detail = f"state={found.state.value}"
    return _json(found.to_json())


@router.post("/curation/studies/{study}/decision", summary="Decide every series of a study")
def decide_study(
    study: str, body: DecisionBody, request: Request, svc: ServicesDep, caller: CuratorDep
) -> Response:
    """Record the caller's decision on every series of the study, each with its history.

    Answers the study's updated state.
    """
    with audited(request, svc, caller, "curation.decide_study", study) as entry:
        entry.detail = f"decision={body.decision}"
        records = CurationRecords(svc.catalog)
        count = records.decide_study(
            study, Decision(body.decision), actor=caller.username, comment=body.comment
        )
        entry.detail = f"decision={body.decision} series={count}"
        found = records.study_state(study)
    return _json(found.to_json())


@router.get(
    "/curation/series/{series}/sheet.png",
    summary="Contact sheet of a series (PNG)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def series_sheet(
    series: str,
    request: Request,
    svc: ServicesDep,
    caller: CuratorDep,
    tile: Annotated[int, Query(ge=16, le=1024)] = 128,
    columns: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> Response:
    """Every image of the series, windowed and shrunk to ``tile`` pixels, in one PNG.

    Only slice indices are drawn, never header text. The pixels are those stored (de-identified
    on a site node; burned-in text is what the sheet helps to spot).
    """
    with audited(request, svc, caller, "curation.sheet", series) as entry:
        volume = load_series_from_node(svc.catalog, svc.store, series)
        image = contact_sheet(volume, tile=tile, columns=columns)
        entry.detail = f"tile={tile} images={volume.shape[0]}"
    return Response(image, media_type="image/png", headers={"Cache-Control": "no-store"})


# -- jobs ------------------------------------------------------------------------------------


@router.get("/jobs", summary="Background jobs (classification, QC, fixity) and their state")
def list_jobs(
    request: Request,
    svc: ServicesDep,
    caller: CuratorDep,
    state: JobState | None = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Response:
    """``{"counts": {state: n}, "jobs": [...]}``, newest first."""
    with audited(request, svc, caller, "curation.jobs", "*") as entry:
        records = JobRecords(svc.catalog)
        found = records.find(state=state, kind=kind, limit=limit)
        counts = records.counts()
        entry.detail = f"state={state.value if state else '*'} jobs={len(found)}"
    return _json({"counts": counts, "jobs": [job.to_json() for job in found]})


@router.post("/jobs/retry", summary="Put failed jobs back to pending (admin)")
def retry_jobs(body: RetryBody, request: Request, svc: ServicesDep, caller: AdminDep) -> Response:
    """Failed jobs among ``ids`` start again with fresh attempts; ``{"retried": n}``.

    Ids of jobs that are not failed are left alone (and not counted).
    """
    ids = sorted(set(body.ids))
    with audited(request, svc, caller, "curation.jobs.retry", "*") as entry:
        count = JobRecords(svc.catalog).retry(ids)
        entry.detail = f"ids={','.join(str(i) for i in ids[:50])} retried={count}"
    return _json({"retried": count})


__all__ = ["CuratorDep", "DecisionBody", "LabelBody", "RetryBody", "curator", "router"]

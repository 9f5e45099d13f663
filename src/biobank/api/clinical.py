"""The clinical API under ``/api/v1/clinical``: forms, import, records, curation, data queries.

What ``biobank clinical …`` does on the node's machine, over HTTP (issue 5):

======================================  =========================  ===========================
route                                   who                        what
======================================  =========================  ===========================
``GET  /clinical/forms``                any user                   the forms the node knows
``GET  /clinical/forms/{form}``         any user                   one form's definition
``POST /clinical/{form}``               uploader, admin            import records (below)
``GET  /clinical/records``              uploader, curator, admin   records (``form``, ``site``)
``GET  /clinical/records/{id}``         uploader, curator, admin   a record with its history
``GET  /clinical/summary/{form}``       curator, admin             completeness, distributions
``GET  /clinical/outliers/{form}``      curator, admin             robust z-score outliers
``GET  /clinical/queries``              uploader, curator, admin   data queries, counts per site
``POST /clinical/queries``              curator, admin             raise a query
``GET  /clinical/queries/{id}``         uploader, curator, admin   a query with its history
``POST /clinical/queries/{id}/answer``  uploader, admin            the data provider answers
``POST /clinical/queries/{id}/close``   curator, admin             settle it
``POST /clinical/queries/{id}/reopen``  curator, admin             ask again
======================================  =========================  ===========================

Importing (``POST /clinical/{form}``): the body is JSON — one record (an object), a list of
records, or ``{"records": [...]}``. The answer is the import report (counts, one result per
record, every issue with the record, field, value as submitted, rule, message and hint):

- **200** every record was stored (created, updated or unchanged);
- **422** some or all records were rejected: the valid ones *are* stored; fix the rejected
  ones (``results[i].status == "rejected"`` and their ``issues``) and send them again;
- **400** the body is not valid JSON or not records; **404** no such form (the message lists
  the known ones); **413** the body exceeds the limit (:data:`MAX_IMPORT_BYTES`, or
  ``http.max_upload_bytes`` of ``node.yaml`` if smaller): send fewer records per request;
  **415** the body is not ``application/json``; **401/403** no token, or a role that may
  not import.

Every call is appended to the access log (action ``clinical.*``) with counts only: record
values, messages and answers are free text or PHI and stay out of it. Reading the catalogue
blocks, so the endpoints are plain ``def`` (FastAPI runs them on a worker thread), except
the import, which reads its body asynchronously first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from biobank.access import Principal, Role
from biobank.api.audit import audited
from biobank.api.deps import PrincipalDep, Services, ServicesDep, client_of
from biobank.catalog import Catalog
from biobank.catalog.clinical import ClinicalRecords
from biobank.catalog.data_queries import DataQueries, QueryState
from biobank.clinical.forms import FormRegistry
from biobank.clinical.models import Form
from biobank.clinical.quality import DEFAULT_THRESHOLD, outliers, summarise
from biobank.clinical.service import SEAL_PURPOSE, ClinicalService, ImportReport
from biobank.deid import Pseudonymizer
from biobank.dicom.multipart import PayloadTooLarge, parse_content_type
from biobank.errors import InvalidInput, PermissionDenied
from biobank.ingest.node import Node, NodeRole

router = APIRouter(prefix="/api/v1/clinical", tags=["clinical"])

MAX_PAGE = 1000
"""The most records or queries one request lists."""
MAX_IMPORT_BYTES = 64 << 20
"""The largest import body (64 MiB, about 100,000 records): JSON is parsed in memory."""

UPLOAD_ROLES = frozenset({Role.UPLOADER, Role.ADMIN})
CURATION_ROLES = frozenset({Role.CURATOR, Role.ADMIN})
READ_ROLES = frozenset({Role.UPLOADER, Role.CURATOR, Role.ADMIN})


# -- the node's clinical service ---------------------------------------------------------------


def form_registry(node: Node) -> FormRegistry:
    """The built-in forms plus those ``node.yaml`` names under ``clinical: {forms: [...]}``.

    Relative paths are taken from the node home.
    """
    section = node.section("clinical")
    extra = section.get("forms") or []
    if not isinstance(extra, list) or not all(isinstance(p, str) for p in extra):
        raise InvalidInput(
            f"{node.config_path}: clinical.forms must be a list of YAML files or folders"
        )
    paths = [Path(p) if Path(p).is_absolute() else node.home / p for p in extra]
    return FormRegistry(paths)


def clinical_service(node: Node, catalog: Catalog, forms: FormRegistry) -> ClinicalService:
    """The clinical service of ``node``: a site node pseudonymises and seals with its key."""
    key = node.site_key() if node.role is NodeRole.SITE else None
    return ClinicalService(
        catalog,
        forms,
        site=node.config.site,
        pseudonymizer=Pseudonymizer(key) if key is not None else None,
        profile=node.profile(),
        seal_key=key.derive(SEAL_PURPOSE) if key is not None else None,
    )


def data_queries(catalog: Catalog, forms: FormRegistry) -> DataQueries:
    """The data queries of ``catalog``, with fields checked against ``forms``."""
    return DataQueries(
        catalog,
        variables=lambda name: [v.name for v in forms.get(name).variables] if name in forms else [],
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def form_json(form: Form) -> dict[str, Any]:
    """A form's definition as JSON (enums as their values, dates as ISO text)."""
    data = dataclasses.asdict(form)
    data.pop("source", None)  # a path on the node's machine
    out: dict[str, Any] = _jsonable(data)
    return out


def form_overview(form: Form) -> dict[str, Any]:
    """One line of the list of forms."""
    return {
        "name": form.name,
        "version": form.version,
        "title": form.title,
        "variables": len(form.variables),
        "rules": len(form.rules),
        "key": list(form.key),
    }


# -- roles -----------------------------------------------------------------------------------


def _role_check(roles: frozenset[Role], what: str) -> Any:
    async def check(caller: PrincipalDep) -> Principal:
        if caller.role not in roles:
            allowed = " and ".join(sorted(r.value for r in roles))
            raise PermissionDenied(
                f"user {caller.username} ({caller.role}) may not {what}; the {allowed} roles "
                "may — ask an administrator"
            )
        return caller

    return check


UploaderDep = Annotated[Principal, Depends(_role_check(UPLOAD_ROLES, "import clinical records"))]
CuratorDep = Annotated[Principal, Depends(_role_check(CURATION_ROLES, "curate clinical data"))]
ReaderDep = Annotated[Principal, Depends(_role_check(READ_ROLES, "read clinical records"))]


# -- bodies ----------------------------------------------------------------------------------

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class RaiseBody(BaseModel):
    """A curator's question about a record or one of its fields (``field`` null: the record)."""

    model_config = ConfigDict(extra="forbid")

    record_id: Annotated[int, Field(ge=1)]
    field: Annotated[str | None, StringConstraints(max_length=64)] = None
    message: Text


class AnswerBody(BaseModel):
    """The data provider's answer."""

    model_config = ConfigDict(extra="forbid")

    text: Text


class CloseBody(BaseModel):
    """The curator's closing comment (optional)."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[str | None, StringConstraints(strip_whitespace=True, max_length=4000)] = None


class ReopenBody(BaseModel):
    """Why the curator asks again."""

    model_config = ConfigDict(extra="forbid")

    text: Text


# -- helpers ---------------------------------------------------------------------------------


def _json(value: Any, status: int = 200) -> Response:
    body = json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return Response(body.encode(), status_code=status, media_type="application/json")


def _forms(request: Request, svc: Services) -> FormRegistry:
    """The node's forms, read once per app."""
    state = request.app.state
    found: FormRegistry | None = getattr(state, "clinical_forms", None)
    if found is None:
        found = form_registry(svc.node)
        state.clinical_forms = found
    return found


def _records_of(data: Any) -> list[dict[str, Any]]:
    """The records of a JSON body: an object, a list, or ``{"records": [...]}``."""
    where = "the body"
    if isinstance(data, dict) and "records" in data:
        data, where = data["records"], "'records'"
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise InvalidInput(
            f"{where} must be a record (an object) or a list of records, not {type(data).__name__}"
        )
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise InvalidInput(
                f"record {index} of {where} is a {type(item).__name__}, not an object of "
                "variable names to values"
            )
    if not data:
        raise InvalidInput(f"{where} holds no record; send at least one")
    return data


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(limit))
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(_too_large(limit))
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except UnicodeDecodeError:
        raise InvalidInput("the body is not UTF-8 text; send JSON encoded as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the body is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def _too_large(limit: int) -> str:
    return (
        f"the body exceeds {limit} bytes; send the records in several requests (the limit is "
        "the smaller of 64 MiB and http.max_upload_bytes of node.yaml)"
    )


def _unsupported(media: str) -> Response:
    message = (
        "clinical records are sent as application/json (an object, a list, or "
        f'{{"records": [...]}}), not {media or "a body without Content-Type"}; to import a '
        "CSV file use 'biobank clinical import FILE.csv --form NAME'"
    )
    return _json({"status": 415, "error": message}, 415)


# -- forms -----------------------------------------------------------------------------------


@router.get("/forms", summary="The clinical forms the node knows")
def list_forms(request: Request, svc: ServicesDep, caller: PrincipalDep) -> Response:
    """``[{"name", "version", "title", "variables": n, "rules": n, "key": [...]}]``."""
    forms = _forms(request, svc)
    return _json([form_overview(form) for form in forms])


@router.get("/forms/{form}", summary="A form's definition")
def get_form(form: str, request: Request, svc: ServicesDep, caller: PrincipalDep) -> Response:
    """Variables (type, unit, codes, range, conditions, OMOP target), key, date and rules."""
    return _json(form_json(_forms(request, svc).get(form)))


# -- records ---------------------------------------------------------------------------------


@router.get("/records", summary="Clinical records (current versions), paged")
def list_records(
    request: Request,
    svc: ServicesDep,
    caller: ReaderDep,
    form: Annotated[str | None, Query(max_length=64)] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    pseudonym: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """``{"total": n, "limit", "offset", "records": [...]}`` in order of id.

    Values are pseudonymised and dates shifted as stored.
    """
    with audited(request, svc, caller, "clinical.records", form or "*") as entry:
        records = ClinicalRecords(svc.catalog)
        found = records.records(form, site, patient_pseudonym=pseudonym, limit=limit, offset=offset)
        total = records.count(form, site) if pseudonym is None else len(found)
        entry.detail = f"site={site or '*'} total={total}"
    return _json(
        {
            "total": total,
            "limit": limit,
            "offset": offset,
            "records": [record.to_json() for record in found],
        }
    )


@router.get("/records/{record_id}", summary="A record with its history of versions")
def get_record(record_id: int, request: Request, svc: ServicesDep, caller: ReaderDep) -> Response:
    """The current version, with its history and its data queries.

    ``history`` lists every version (who, when, changed fields); ``queries`` the data
    queries on the record.
    """
    with audited(request, svc, caller, "clinical.record", str(record_id)):
        records = ClinicalRecords(svc.catalog)
        out = records.get(record_id).to_json()
        out["history"] = [version.to_json() for version in records.history(record_id)]
        queries = data_queries(svc.catalog, _forms(request, svc))
        out["queries"] = [q.to_json() for q in queries.list(record_id=record_id, limit=MAX_PAGE)]
    return _json(out)


# -- curation --------------------------------------------------------------------------------


@router.get("/summary/{form}", summary="Completeness and distributions of a form's variables")
def form_summary(form: str, request: Request, svc: ServicesDep, caller: CuratorDep) -> Response:
    """Completeness and distribution of every variable, overall and under ``sites``.

    Conditional variables are counted complete where their condition holds.
    """
    definition = _forms(request, svc).get(form)
    with audited(request, svc, caller, "clinical.summary", form) as entry:
        summary = summarise(definition, ClinicalRecords(svc.catalog).form_values(form))
        entry.detail = f"records={summary.records}"
    return _json(summary.to_json())


@router.get("/outliers/{form}", summary="Values that stand out (modified z-score)")
def form_outliers(
    form: str,
    request: Request,
    svc: ServicesDep,
    caller: CuratorDep,
    threshold: Annotated[float, Query(gt=0)] = DEFAULT_THRESHOLD,
    field: Annotated[list[str] | None, Query(description="Only these variables")] = None,
) -> Response:
    """Values whose modified z-score exceeds ``threshold`` (3.5 by default).

    ``{"form", "threshold", "outliers": [{record_id, pseudonym, field, value, z, median, mad,
    direction}]}``; a variable with fewer than 10 values has none.
    """
    definition = _forms(request, svc).get(form)
    with audited(request, svc, caller, "clinical.outliers", form) as entry:
        try:
            found = outliers(
                definition,
                ClinicalRecords(svc.catalog).form_values(form),
                threshold,
                fields=field,
            )
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        entry.detail = f"threshold={threshold} outliers={len(found)}"
    return _json({"form": form, "threshold": threshold, "outliers": [o.to_json() for o in found]})


# -- data queries ----------------------------------------------------------------------------


@router.get("/queries", summary="Data queries, filtered, with counts per site and state")
def list_queries(
    request: Request,
    svc: ServicesDep,
    caller: ReaderDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    state: QueryState | None = None,
    form: Annotated[str | None, Query(max_length=64)] = None,
    record_id: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """``{"counts": {site: {state: n}}, "queries": [...]}``, oldest first."""
    with audited(request, svc, caller, "clinical.queries", form or "*") as entry:
        queries = data_queries(svc.catalog, _forms(request, svc))
        found = queries.list(
            site=site, state=state, form=form, record_id=record_id, limit=limit, offset=offset
        )
        counts = queries.counts(site=site, form=form)
        entry.detail = f"site={site or '*'} state={state or '*'} queries={len(found)}"
    return _json({"counts": counts, "queries": [q.to_json() for q in found]})


@router.post("/queries", summary="Raise a data query (curator)", status_code=201)
def raise_query(
    body: RaiseBody, request: Request, svc: ServicesDep, caller: CuratorDep
) -> Response:
    """The new open query (201), with its history."""
    with audited(request, svc, caller, "clinical.query.raise", str(body.record_id)) as entry:
        queries = data_queries(svc.catalog, _forms(request, svc))
        found = queries.raise_query(body.record_id, body.field, body.message, caller.username)
        entry.status = 201
        entry.detail = f"query={found.id} field={found.field or '*'}"
    return _json(found.to_json(), 201)


@router.get("/queries/{query_id}", summary="A data query with its history")
def get_query(query_id: int, request: Request, svc: ServicesDep, caller: ReaderDep) -> Response:
    """The query with ``history``: raise, answer, correct, close, reopen (who, when, text)."""
    with audited(request, svc, caller, "clinical.query", str(query_id)):
        found = data_queries(svc.catalog, _forms(request, svc)).get(query_id)
    return _json(found.to_json())


@router.post("/queries/{query_id}/answer", summary="Answer a data query (data provider)")
def answer_query(
    query_id: int, body: AnswerBody, request: Request, svc: ServicesDep, caller: UploaderDep
) -> Response:
    """Open or answered → answered; 409 if the query is closed (a curator may reopen it)."""
    with audited(request, svc, caller, "clinical.query.answer", str(query_id)):
        found = data_queries(svc.catalog, _forms(request, svc)).answer(
            query_id, body.text, caller.username
        )
    return _json(found.to_json())


@router.post("/queries/{query_id}/close", summary="Close a data query (curator)")
def close_query(
    query_id: int,
    request: Request,
    svc: ServicesDep,
    caller: CuratorDep,
    body: CloseBody | None = None,
) -> Response:
    """Open or answered → closed, with an optional comment; 409 if already closed."""
    text = body.text if body is not None else None
    with audited(request, svc, caller, "clinical.query.close", str(query_id)):
        found = data_queries(svc.catalog, _forms(request, svc)).close(
            query_id, caller.username, text
        )
    return _json(found.to_json())


@router.post("/queries/{query_id}/reopen", summary="Reopen a closed data query (curator)")
def reopen_query(
    query_id: int, body: ReopenBody, request: Request, svc: ServicesDep, caller: CuratorDep
) -> Response:
    """Closed → open, saying why; 409 if the query is not closed."""
    with audited(request, svc, caller, "clinical.query.reopen", str(query_id)):
        found = data_queries(svc.catalog, _forms(request, svc)).reopen(
            query_id, caller.username, body.text
        )
    return _json(found.to_json())


# -- import (declared last: ``/clinical/{form}`` would shadow ``/clinical/queries``) ----------


@router.post(
    "/{form}",
    summary="Import records of a form (one, a list, or {'records': [...]})",
    responses={
        200: {"description": "Every record stored (created, updated or unchanged)"},
        422: {"description": "Some or all records rejected; the valid ones are stored"},
        413: {"description": "Body too large"},
        415: {"description": "Body not application/json"},
    },
)
async def import_records(
    form: str, request: Request, svc: ServicesDep, caller: UploaderDep
) -> Response:
    """Validate, pseudonymise and store the records; the answer is the import report.

    See the module docstring for the status codes.
    """
    forms = _forms(request, svc)
    forms.get(form)  # 404 before reading the body
    content_type = request.headers.get("content-type", "")
    media = parse_content_type(content_type)[0] if content_type else ""
    if media != "application/json" and not media.endswith("+json"):
        svc.audit.record(caller, "clinical.import", form, 415, client_of(request), "not JSON")
        return _unsupported(media)
    limit = min(MAX_IMPORT_BYTES, svc.http.max_upload_bytes)
    with audited(request, svc, caller, "clinical.import", form) as entry:
        records = _records_of(await _read_json(request, limit))
        report = await run_in_threadpool(_import, svc, forms, form, records, caller.username)
        entry.status = 200 if report.ok else 422
        entry.detail = " ".join(f"{k}={v}" for k, v in report.counts().items())
    return _json(report.to_json(), entry.status)


def _import(
    svc: Services, forms: FormRegistry, form: str, records: list[dict[str, Any]], user: str
) -> ImportReport:
    service = clinical_service(svc.node, svc.catalog, forms)
    report = service.import_records(form, records, submitter=user, channel="api")
    return report


__all__ = [
    "MAX_IMPORT_BYTES",
    "AnswerBody",
    "CloseBody",
    "RaiseBody",
    "ReopenBody",
    "clinical_service",
    "data_queries",
    "form_json",
    "form_overview",
    "form_registry",
    "router",
]

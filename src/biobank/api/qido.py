"""QIDO-RS (PS3.18 §10.6): search for studies, series and instances at every level."""

from __future__ import annotations

import json
import string
from typing import Any

from fastapi import APIRouter, Request, Response
from pydicom.datadict import tag_for_keyword

from biobank.api.deps import ReaderDep, Services, ServicesDep, base_url, client_of, owner_filter
from biobank.api.negotiate import want_json
from biobank.catalog.search import MAX_LIMIT, DicomQuery, QueryLevel
from biobank.errors import InvalidQuery

router = APIRouter(tags=["QIDO-RS"])

DICOM_JSON = "application/dicom+json"
_CONTROL = {"includefield", "limit", "offset", "fuzzymatching"}
DEFAULT_LIMIT = 1000


def parse_tag(text: str) -> int:
    """A tag given as a keyword (``PatientName``) or 8 hex digits (``00100010``).

    Raises
    ------
    InvalidQuery
        If ``text`` is neither (or names a sequence item path, which cannot be matched).
    """
    if len(text) == 8 and all(c in string.hexdigits for c in text):
        return int(text, 16)
    tag = tag_for_keyword(text)
    if tag is None:
        raise InvalidQuery(
            f"{text!r} is neither a DICOM keyword nor a tag (8 hex digits, e.g. 00100010); "
            "check the spelling (keywords are case-sensitive: PatientName)"
        )
    return int(tag)


def _int(value: str, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidQuery(f"{name}={value!r} is not a whole number") from None
    if not low <= number <= high:
        raise InvalidQuery(f"{name}={number}: give a value between {low} and {high}")
    return number


def parse_query(
    request: Request,
    level: QueryLevel,
    *,
    study: str | None = None,
    series: str | None = None,
    owner: int | None = None,
) -> tuple[DicomQuery, list[str]]:
    """The query of a QIDO-RS request, and the parameters it cannot match on (nested keys)."""
    match: dict[int, str] = {}
    include: set[int] = set()
    include_all = False
    fuzzy = False
    limit, offset = DEFAULT_LIMIT, 0
    ignored: list[str] = []
    for name, value in request.query_params.multi_items():
        if name == "includefield":
            for field in value.split(","):
                field = field.strip()
                if field == "all":
                    include_all = True
                elif field:
                    include.add(parse_tag(field))
        elif name == "limit":
            limit = _int(value, name, 0, MAX_LIMIT)
        elif name == "offset":
            offset = _int(value, name, 0, 2**31)
        elif name == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise InvalidQuery(f"fuzzymatching={value!r}: write true or false")
            fuzzy = value.lower() == "true"
        elif "." in name:  # a sequence attribute path: PS3.18 allows ignoring it, with warning
            ignored.append(name)
        elif name in _CONTROL:  # pragma: no cover - handled above
            continue
        else:
            tag = parse_tag(name)
            match[tag] = f"{match[tag]},{value}" if tag in match else value
    query = DicomQuery(
        level=level,
        match=match,
        include=frozenset(include),
        include_all=include_all,
        fuzzy=fuzzy,
        limit=limit,
        offset=offset,
        study_instance_uid=study,
        series_instance_uid=series,
        owner_user_id=owner,
    )
    return query, ignored


def _retrieve_url(match: dict[str, Any], root: str, level: QueryLevel) -> None:
    study = match.get("0020000D", {}).get("Value", [None])[0]
    url = f"{root}/studies/{study}"
    if level is not QueryLevel.STUDY:
        url += f"/series/{match.get('0020000E', {}).get('Value', [None])[0]}"
    if level is QueryLevel.INSTANCE:
        url += f"/instances/{match.get('00080018', {}).get('Value', [None])[0]}"
    match["00081190"] = {"vr": "UR", "Value": [url]}


def _search(
    request: Request,
    svc: Services,
    caller: Any,
    level: QueryLevel,
    *,
    study: str | None = None,
    series: str | None = None,
) -> Response:
    want_json(request.headers.get("accept"))
    query, ignored = parse_query(
        request, level, study=study, series=series, owner=owner_filter(caller)
    )
    result = svc.catalog.search(query)
    root = base_url(request, svc)
    for match in result.matches:
        _retrieve_url(match, root, level)
        if level is not QueryLevel.STUDY:  # the order of keys is the order of tags
            match["00081190"] = match.pop("00081190")
    body = json.dumps(result.matches, ensure_ascii=False, separators=(",", ":"))
    headers = {}
    unsupported = [f"{t:08X}" for t in result.unsupported] + ignored
    if unsupported:
        headers["Warning"] = (
            f'299 biobank "The following attributes are not supported for matching and were '
            f'ignored: {", ".join(unsupported)}"'
        )
    resource = "/".join(p for p in (study, series) if p) or "*"
    keys = ",".join(f"{t:08X}" for t in sorted(query.match))  # tags only, never values
    svc.audit.record(
        caller,
        f"qido.{level.value.lower()}",
        resource,
        200,
        client_of(request),
        f"keys={keys} matches={len(result.matches)}",
    )
    return Response(body.encode(), media_type=DICOM_JSON, headers=headers)


@router.get("/studies", summary="Search for studies")
def search_studies(request: Request, svc: ServicesDep, caller: ReaderDep) -> Response:
    """QIDO-RS studies: every PS3.18 matching key, wildcards, ranges, ``includefield``."""
    return _search(request, svc, caller, QueryLevel.STUDY)


@router.get("/series", summary="Search for series (all studies)")
def search_all_series(request: Request, svc: ServicesDep, caller: ReaderDep) -> Response:
    """QIDO-RS series across studies; study and patient keys may be given too."""
    return _search(request, svc, caller, QueryLevel.SERIES)


@router.get("/studies/{study}/series", summary="Search for the series of a study")
def search_study_series(
    study: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Response:
    """QIDO-RS series of one study."""
    return _search(request, svc, caller, QueryLevel.SERIES, study=study)


@router.get("/instances", summary="Search for instances (all studies)")
def search_all_instances(request: Request, svc: ServicesDep, caller: ReaderDep) -> Response:
    """QIDO-RS instances across studies."""
    return _search(request, svc, caller, QueryLevel.INSTANCE)


@router.get("/studies/{study}/instances", summary="Search for the instances of a study")
def search_study_instances(
    study: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Response:
    """QIDO-RS instances of one study."""
    return _search(request, svc, caller, QueryLevel.INSTANCE, study=study)


@router.get(
    "/studies/{study}/series/{series}/instances", summary="Search for the instances of a series"
)
def search_series_instances(
    study: str, series: str, request: Request, svc: ServicesDep, caller: ReaderDep
) -> Response:
    """QIDO-RS instances of one series."""
    return _search(request, svc, caller, QueryLevel.INSTANCE, study=study, series=series)


__all__ = ["DICOM_JSON", "parse_query", "parse_tag", "router"]

"""The export API under ``/api/v1/exports``: the EUCAIM search view and the MIABIS collection.

====================================  ==============  ====================================
route                                 who             what
====================================  ==============  ====================================
``GET /api/v1/exports/eucaim``        curator, admin  one object per patient (EUCAIM)
``GET /api/v1/exports/miabis``        curator, admin  the MIABIS Core v3 collection
====================================  ==============  ====================================

Both are for curators and administrators only. The EUCAIM view is *per patient*: pseudonyms,
(shifted) diagnosis and imaging dates, ages, tumour markers — what a central search index
ingests under a data-sharing agreement, not what a researcher may browse; researchers get
protected counts through the cohort API instead. The MIABIS descriptor is aggregate, but
its exact subject counts and age range are also not small-count protected, so it follows
the same rule. The MIABIS ``id``, ``name`` and ``description`` are query parameters
(defaults: the node id, the site name). Every call is appended to the access log (action
``export.*``) with a count only.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from biobank.access import Principal, Role
from biobank.api.audit import audited
from biobank.api.deps import PrincipalDep, ServicesDep
from biobank.datasets.exports import eucaim_view, miabis_collection
from biobank.errors import PermissionDenied

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])

EXPORT_ROLES = frozenset({Role.CURATOR, Role.ADMIN})


async def exporter(caller: PrincipalDep) -> Principal:
    """A curator or an administrator; 403 otherwise."""
    if caller.role not in EXPORT_ROLES:
        raise PermissionDenied(
            f"user {caller.username} ({caller.role}) may not export per-patient data; the "
            "exports are for the curator and admin roles — researchers use the cohort counts"
        )
    return caller


ExporterDep = Annotated[Principal, Depends(exporter)]


def _json(value: Any) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Response(body.encode(), media_type="application/json")


@router.get("/eucaim", summary="The EUCAIM search view, one object per patient")
def export_eucaim(request: Request, svc: ServicesDep, caller: ExporterDep) -> Response:
    """Every patient of the node with sex, diseases (tumour metadata) and image studies."""
    with audited(request, svc, caller, "export.eucaim", "exports/eucaim") as entry:
        view = eucaim_view(svc.catalog)
        entry.detail = f"patients={len(view)}"
        return _json(view)


@router.get("/miabis", summary="The MIABIS Core v3 collection descriptor of the node")
def export_miabis(
    request: Request,
    svc: ServicesDep,
    caller: ExporterDep,
    collection_id: Annotated[str | None, Query(alias="id", max_length=128)] = None,
    name: Annotated[str | None, Query(max_length=256)] = None,
    description: Annotated[str | None, Query(max_length=4000)] = None,
) -> Response:
    """MIABIS collection attributes computed from the catalogue (sex, ages, diseases, ...)."""
    config = svc.node.config
    with audited(request, svc, caller, "export.miabis", "exports/miabis") as entry:
        title = name or f"{config.site} imaging biobank"
        data = miabis_collection(
            svc.catalog,
            collection_id=collection_id or config.node_id,
            name=title,
            description=description or f"{title}: imaging and clinical data.",
        )
        entry.detail = f"subjects={data['Total number of subjects']}"
        return _json(data)

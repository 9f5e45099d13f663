"""What the routes share: the node's services, the caller, the settings of the HTTP service."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from biobank.access import AccessLogWriter, AccessService, Principal
from biobank.api.metrics import Metrics
from biobank.catalog import Catalog
from biobank.errors import InvalidInput, PermissionDenied
from biobank.ingest.node import Node
from biobank.ingest.service import IngestService
from biobank.store.blobs import FileBlobStore

GiB = 1 << 30


@dataclass(frozen=True)
class HttpSettings:
    """The ``http:`` section of ``node.yaml`` (every key optional).

    ``base_url``: the public URL of the service, for RetrieveURL and BulkDataURI (default:
    taken from each request). ``max_upload_bytes``: the largest STOW-RS request body
    (default 8 GiB; larger → 413). ``max_instance_bytes``: the largest single part
    (default 2 GiB). ``store_group``: instances handed to the ingest pool at a time while a
    STOW-RS body is still arriving (default 32). ``cors_origins``: web origins allowed to
    call the service from a browser (a viewer such as OHIF served elsewhere), e.g.
    ``["http://localhost:3000"]``; none by default.
    """

    base_url: str | None = None
    max_upload_bytes: int = 8 * GiB
    max_instance_bytes: int = 2 * GiB
    store_group: int = 32
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str) -> HttpSettings:
        """Validate the ``http:`` mapping; errors name the key."""
        known = {
            "base_url",
            "max_upload_bytes",
            "max_instance_bytes",
            "store_group",
            "cors_origins",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(
                f"{source}: unknown key http.{unknown[0]}; known keys: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for key in ("max_upload_bytes", "max_instance_bytes", "store_group"):
            if key in data:
                value = data[key]
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise InvalidInput(f"{source}: http.{key} must be a positive integer")
                values[key] = value
        if data.get("base_url") is not None:
            url = str(data["base_url"]).rstrip("/")
            if not url.startswith(("http://", "https://")):
                raise InvalidInput(f"{source}: http.base_url must start with http:// or https://")
            values["base_url"] = url
        origins = data.get("cors_origins") or []
        if not isinstance(origins, list) or not all(
            isinstance(o, str) and o.startswith(("http://", "https://")) for o in origins
        ):
            raise InvalidInput(
                f"{source}: http.cors_origins must be a list of origins like http://host:3000"
            )
        values["cors_origins"] = tuple(o.rstrip("/") for o in origins)
        return cls(**values)


@dataclass
class Services:
    """The node's services, created once by the app's lifespan."""

    node: Node
    catalog: Catalog
    ingest: IngestService
    store: FileBlobStore
    access: AccessService
    audit: AccessLogWriter
    metrics: Metrics
    http: HttpSettings


async def services(request: Request) -> Services:
    """The services of the app serving ``request``."""
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


async def principal(request: Request, svc: ServicesDep) -> Principal:
    """The authenticated caller (bearer API token or OIDC JWT); 401 otherwise.

    The dependencies are ``async``: FastAPI runs a sync dependency on a worker thread, a hop
    that cost more than the query itself. Only an authentication that is not cached (which
    may read the catalogue or fetch a JWKS) goes to a thread.
    """
    header = request.headers.get("authorization")
    found = svc.access.authenticate_cached(header)
    if found is None:
        found = await run_in_threadpool(svc.access.authenticate, header)
    request.state.principal = found
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]


async def reader(caller: PrincipalDep) -> Principal:
    """A caller who may read patient data (some of it, for an uploader); 403 otherwise."""
    if not caller.can_read_any:
        raise PermissionDenied(
            f"user {caller.username} ({caller.role}) may not read imaging data until a dataset "
            "is granted to them; ask a curator or an administrator"
        )
    return caller


async def storer(caller: PrincipalDep) -> Principal:
    """A caller who may store instances; 403 otherwise."""
    if not caller.can_store:
        raise PermissionDenied(
            f"user {caller.username} ({caller.role}) may not store instances; the uploader, "
            "curator and admin roles may"
        )
    return caller


async def admin(caller: PrincipalDep) -> Principal:
    """An administrator; 403 otherwise."""
    if not caller.is_admin:
        raise PermissionDenied(f"user {caller.username} ({caller.role}) is not an administrator")
    return caller


ReaderDep = Annotated[Principal, Depends(reader)]
StorerDep = Annotated[Principal, Depends(storer)]
AdminDep = Annotated[Principal, Depends(admin)]


def owner_filter(caller: Principal) -> int | None:
    """The user whose studies alone ``caller`` may see (None: every study)."""
    return caller.user_id if caller.reads_only_own else None


def client_of(request: Request) -> str:
    """The caller's address, for the access log."""
    client = request.client
    return f"{client.host}:{client.port}" if client is not None else "-"


def base_url(request: Request, svc: Services) -> str:
    """The URL of the DICOMweb root (``.../dicomweb``) as clients should use it."""
    if svc.http.base_url:
        return svc.http.base_url + "/dicomweb"
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1] not in (80, 443) and _direct(url.hostname):
        # Some clients (dicomweb-client) send "Host: 127.0.0.1" without the port; on a direct
        # connection the port is the one we listen on. Behind a proxy, set http.base_url.
        url = url.replace(port=server[1])
    return str(url).rstrip("/") + "/dicomweb"


def _direct(hostname: str | None) -> bool:
    """Whether ``hostname`` names this machine directly (an IP literal or localhost)."""
    if not hostname:
        return False
    if hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        return False
    return True


__all__ = [
    "AdminDep",
    "HttpSettings",
    "PrincipalDep",
    "ReaderDep",
    "Services",
    "ServicesDep",
    "StorerDep",
    "base_url",
    "client_of",
    "owner_filter",
    "principal",
    "services",
]

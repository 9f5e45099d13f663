"""Every error class mapped to an HTTP status, in one table (a test checks none is missing).

Domain code raises the classes of :mod:`biobank.errors`; their messages are written for the
user and carry no PHI, so they are sent as they are. Anything else becomes a 500 with a
generic message: a third-party message may quote a value from a file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from biobank import errors
from biobank.dicom.multipart import PayloadTooLarge
from biobank.dicom.render import NotAcceptable

logger = logging.getLogger(__name__)

#: Status of each error class; the most specific class listed wins (checked in MRO order).
STATUS: dict[type[errors.BiobankError], int] = {
    errors.BiobankError: 500,
    errors.InvalidInput: 400,
    errors.InvalidDicom: 400,
    errors.InvalidClinicalRecord: 400,
    errors.InvalidQuery: 400,
    errors.InvalidProfile: 400,
    errors.InvalidKey: 500,  # the node's own key file: an operator problem, not the client's
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PermissionDenied: 403,
    errors.AuthenticationFailed: 401,
    errors.DeidentificationError: 422,
    errors.QuarantineRequired: 422,
    errors.StorageError: 503,
    errors.FederationError: 502,
    PayloadTooLarge: 413,
    NotAcceptable: 406,
}


def status_of(exc: errors.BiobankError) -> int:
    """The HTTP status of ``exc``: that of its nearest listed class."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(status: int, message: str) -> JSONResponse:
    """The body every error has: ``{"status": 404, "error": "..."}``."""
    headers = {"WWW-Authenticate": 'Bearer realm="biobank"'} if status == 401 else None
    return JSONResponse({"status": status, "error": message}, status, headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(errors.BiobankError)
    async def _biobank(request: Request, exc: errors.BiobankError) -> JSONResponse:
        status = status_of(exc)
        if status in (401, 403):
            _record_refusal(request, status)
        if status >= 500:
            logger.warning("%s %s failed: %s", request.method, _route(request), type(exc).__name__)
        return error_response(status, str(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        )
        return error_response(400, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The class and where it was raised, never the message: it may quote a header value.
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
        logger.error(
            "%s %s raised %s at %s", request.method, _route(request), type(exc).__name__, where
        )
        return error_response(
            500, "internal error; the node's log has the details (no data were changed)"
        )


def _record_refusal(request: Request, status: int) -> None:
    """Refused requests go to the access log too (who tried what; no token, no values)."""
    svc = getattr(request.app.state, "services", None)
    if svc is None:
        return
    principal = getattr(request.state, "principal", None)
    client = request.client
    where = f"{client.host}:{client.port}" if client is not None else "-"
    svc.audit.record(principal, "refused", f"{request.method} {_route(request)}", status, where)


def route_template(scope: Mapping[str, Any]) -> str:
    """The route template of a request (``/dicomweb/studies/{study}``).

    Logs and metrics name the template, never the path, which carries UIDs.
    """
    template = str(getattr(scope.get("route"), "path", "unmatched"))
    path = str(scope.get("path", ""))
    if path.startswith("/dicomweb/") and not template.startswith("/dicomweb"):
        template = "/dicomweb" + template  # included routers report their own path
    return template


def _route(request: Request) -> str:
    return route_template(request.scope)


__all__ = ["STATUS", "error_response", "install", "route_template", "status_of"]

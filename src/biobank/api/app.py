"""The node's HTTP service: DICOMweb under ``/dicomweb``, ``/healthz``, ``/metrics``, OpenAPI.

:func:`create_app` builds the FastAPI app over an opened node; the services (catalogue,
ingest pool, access control, access log) are created by the app's lifespan and closed with
it. Every route but ``/healthz`` (and the OpenAPI pages) needs a bearer token.

Request logs are one JSON object per request: method, route *template*, status, duration,
user. Paths and query strings are never logged: they carry UIDs and search values.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from biobank import __version__
from biobank.access import AccessLogWriter, AccessService
from biobank.access.oidc import OidcSettings
from biobank.api import clinical, cohorts, curation, errors, exports, qido, stow, wado
from biobank.api.deps import AdminDep, HttpSettings, Services
from biobank.api.metrics import Metrics
from biobank.catalog import Catalog
from biobank.catalog.jobs import JobRecords
from biobank.dicom.io import quiet_pydicom
from biobank.ingest.node import Node
from biobank.ingest.service import IngestService
from biobank.jobs import BackgroundJobs, Executor, Handler, JobContext, JobRunner, executor_for

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("biobank.api.requests")


@dataclass(frozen=True)
class ServiceOptions:
    """How to run the services of an app (the CLI fills it from its options)."""

    jobs: int = 0
    #: Background jobs run while serving (classification, QC… of series as they arrive):
    #: the handlers by kind (none: jobs stay queued for ``biobank jobs run``).
    job_handlers: Mapping[str, Handler] | None = None
    #: Local processes for the background jobs (the ingest pool has the others), or a
    #: Dask scheduler address to run them there.
    job_workers: int = 1
    dask_scheduler: str | None = None


Hook = Callable[[Services], Callable[[], None]]


def create_app(
    node: Node, *, options: ServiceOptions | None = None, on_start: Hook | None = None
) -> FastAPI:
    """The app serving ``node``.

    ``on_start`` is called with the services once they run and returns a function called at
    shutdown (``biobank serve`` starts the DIMSE server that way).
    """
    options = options or ServiceOptions()
    quiet_pydicom()  # its warnings quote header values
    # uvicorn's access log prints paths and query strings (UIDs, searched names): ours
    # (biobank.api.requests) logs route templates instead.
    logging.getLogger("uvicorn.access").disabled = True
    http = HttpSettings.from_mapping(node.section("http"), str(node.config_path))
    oidc_section = node.section("oidc")
    oidc = OidcSettings.from_mapping(oidc_section, str(node.config_path)) if oidc_section else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog = node.open_catalog()
        ingest = audit = None
        stop: Callable[[], None] | None = None
        background: tuple[BackgroundJobs, Executor] | None = None
        try:
            ingest = IngestService(node, jobs=options.jobs, catalog=catalog)
            await run_in_threadpool(ingest.wait_ready)  # listen once the workers are up
            audit = AccessLogWriter(catalog)
            svc = Services(
                node=node,
                catalog=catalog,
                ingest=ingest,
                store=node.open_store(fsync=False),
                access=AccessService(catalog, oidc=oidc),
                audit=audit,
                metrics=Metrics(),
                http=http,
            )
            app.state.services = svc
            app.state.schema_revision = await run_in_threadpool(catalog.schema_revision)
            if options.job_handlers:
                background = await run_in_threadpool(
                    _start_jobs, node, catalog, options, dict(options.job_handlers)
                )
            if on_start is not None:
                stop = on_start(svc)
            logger.info("node %s serving (%s role)", node.config.node_id, node.role.value)
            yield
        finally:
            if stop is not None:
                stop()
            if background is not None:
                background[0].stop()
                background[1].close()
            if ingest is not None:
                ingest.close()
            if audit is not None:
                audit.close()
            catalog.close()

    app = FastAPI(
        title="Imaging Biobank node",
        version=__version__,
        summary="DICOMweb (QIDO-RS, WADO-RS, STOW-RS) over a de-identified imaging catalogue",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(RequestLog)
    if http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(http.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Accept", "Content-Type"],
            expose_headers=["Warning", "Content-Location"],
        )
    for router in (qido.router, wado.router, stow.router):
        app.include_router(router, prefix="/dicomweb")
    app.include_router(curation.router)
    app.include_router(exports.router)
    app.include_router(clinical.router)
    app.include_router(cohorts.router)

    @app.get("/healthz", tags=["service"], summary="Liveness and catalogue reachability")
    def healthz(request: Request) -> Response:
        """200 with the node id when the catalogue answers; 503 otherwise. No token needed."""
        svc: Services = request.app.state.services
        try:
            svc.catalog.ping()
        except Exception:  # noqa: BLE001 - reported as unhealthy
            return Response(
                json.dumps({"status": "unavailable", "catalog": "unreachable"}),
                status_code=503,
                media_type="application/json",
            )
        body = {
            "status": "ok",
            "node_id": node.config.node_id,
            "role": node.role.value,
            "schema": request.app.state.schema_revision,
            "version": __version__,
        }
        return Response(json.dumps(body), media_type="application/json")

    @app.get("/metrics", tags=["service"], summary="Prometheus metrics (admin)")
    def metrics(request: Request, caller: AdminDep) -> Response:
        """The Prometheus text format: requests, latencies, ingest outcomes."""
        svc: Services = request.app.state.services
        return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def _start_jobs(
    node: Node, catalog: Catalog, options: ServiceOptions, handlers: dict[str, Handler]
) -> tuple[BackgroundJobs, Executor]:
    executor = executor_for(options.dask_scheduler, options.job_workers)
    context = JobContext(
        catalog.url, str(node.blob_root.resolve()), curation=node.section("curation")
    )
    jobs = BackgroundJobs(JobRunner(JobRecords(catalog), executor, handlers, context))
    jobs.start()
    logger.info("background jobs on %s: %s", executor.name, ", ".join(sorted(handlers)))
    return jobs, executor


class RequestLog:
    """ASGI middleware: metrics and one PHI-free JSON log line per request.

    A plain ASGI middleware rather than ``@app.middleware("http")``, which costs a task and
    a stream per request. The route template comes from the scope the router fills in.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = getattr(scope.get("app"), "state", None)
        svc: Services | None = getattr(state, "services", None)
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        if svc is not None:
            svc.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - started
            template = errors.route_template(scope)
            if svc is not None:
                svc.metrics.in_flight.dec()
                svc.metrics.requests.labels(scope["method"], template, str(status)).inc()
                svc.metrics.latency.labels(template).observe(elapsed)
            principal = scope.get("state", {}).get("principal")
            access_logger.info(
                "%s",
                json.dumps(
                    {
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "user": getattr(principal, "username", None),
                    }
                ),
            )


__all__ = ["ServiceOptions", "create_app"]

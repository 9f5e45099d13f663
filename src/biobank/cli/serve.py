"""``biobank serve``: the node's HTTP (DICOMweb) and DIMSE services."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

import typer
import uvicorn

from biobank.api import ServiceOptions, create_app
from biobank.api.deps import Services
from biobank.cli.common import HomeOption, console, fail, load_node
from biobank.cli.jobs import HANDLERS
from biobank.cli.node import _log_to_node
from biobank.config import get_settings
from biobank.errors import BiobankError

logger = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve")(serve)


def _dimse_hook(settings: Any) -> Callable[[Services], Callable[[], None]]:
    from biobank.dimse import DimseServer

    def start(svc: Services) -> Callable[[], None]:
        def audit(action: str, resource: str, status: int, client: str, detail: str) -> None:
            svc.audit.record(None, action, resource, status, client, detail)

        server = DimseServer(
            svc.node, settings=settings, ingest=svc.ingest, catalog=svc.catalog, audit=audit
        )
        server.start()
        stop: Callable[[], None] = server.stop
        callers = ", ".join(settings.allowed_callers) or "none — see docs/dimse.md"
        console.print(
            f"DIMSE: AE title [bold]{settings.ae_title}[/] on {settings.host}:{server.port} "
            f"(callers allowed: {callers})",
            highlight=False,
        )
        return stop

    return start


def serve(
    home: HomeOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on (HTTP).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP port.")] = 8000,
    dimse_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="DIMSE port (default: node.yaml dimse.port, else 11112)."
        ),
    ] = None,
    no_dimse: Annotated[bool, typer.Option("--no-dimse", help="Serve HTTP only.")] = False,
    jobs: Annotated[
        int, typer.Option(min=0, help="Ingest worker processes (0: one per core).")
    ] = 0,
    no_jobs: Annotated[
        bool,
        typer.Option(
            "--no-jobs",
            help="Do not run background jobs (classification, QC) while serving; they stay "
            "queued for `biobank jobs run`.",
        ),
    ] = False,
) -> None:
    """Serve DICOMweb on http://HOST:PORT/dicomweb and DIMSE on DIMSE_PORT until Ctrl-C.

    Every route but /healthz needs a bearer token: create one with
    `biobank user add NAME --role ROLE` and `biobank token create NAME`.
    """
    node = load_node(home)
    _log_to_node(node)
    hook = None
    if not no_dimse:
        try:
            section = node.section("dimse")
            if dimse_port is not None:
                section["port"] = dimse_port
            section.setdefault("host", host)
            from biobank.dimse import DimseSettings  # only when DIMSE is served

            settings = DimseSettings.from_mapping(section, str(node.config_path))
        except BiobankError as exc:
            raise fail(str(exc)) from None
        hook = _dimse_hook(settings)
    try:
        options = ServiceOptions(
            jobs=jobs,
            job_handlers=None if no_jobs else HANDLERS,
            dask_scheduler=get_settings().dask_scheduler,
        )
        app = create_app(node, options=options, on_start=hook)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"Imaging Biobank node [bold]{node.config.node_id}[/] ({node.role.value}) — "
        f"DICOMweb at http://{host}:{port}/dicomweb, API docs at http://{host}:{port}/docs",
        highlight=False,
    )
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
    )
    uvicorn.Server(config).run()


__all__ = ["register", "serve"]

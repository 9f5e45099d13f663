"""``biobank curate``: classify series, measure their quality, look at them whole."""

from __future__ import annotations

import typer

curate_app = typer.Typer(
    help="Curate series: classify (MR labels), quality control, contact sheets.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``curate`` and its commands to ``app``."""
    app.add_typer(curate_app, name="curate")


__all__ = ["curate_app", "register"]

"""``biobank curate``: classify series, measure their quality, look at them whole."""

from __future__ import annotations

import typer

from biobank.cli import (
    curate_check,
    curate_classify,
    curate_cohort,
    curate_image,
    curate_review,
)

curate_app = typer.Typer(
    help=(
        "Curate series: classify (MR labels), quality control, cohort judgement, contact "
        "sheets, review."
    ),
    no_args_is_help=True,
)
curate_image.register(curate_app)
curate_classify.register(curate_app)
curate_review.register(curate_app)
curate_check.register(curate_app)
curate_cohort.register(curate_app)


def register(app: typer.Typer) -> None:
    """Add ``curate`` and its commands to ``app``."""
    app.add_typer(curate_app, name="curate")


__all__ = ["curate_app", "register"]

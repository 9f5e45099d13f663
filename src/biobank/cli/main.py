"""The ``biobank`` command line (Typer + rich): an adapter that parses, calls services, prints."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

import biobank
from biobank.cli import access as access_commands
from biobank.cli import clinical as clinical_commands
from biobank.cli import curate as curate_commands
from biobank.cli import export as export_commands
from biobank.cli import jobs as jobs_commands
from biobank.cli import node as node_commands
from biobank.cli import push as push_commands
from biobank.cli import query as query_commands
from biobank.cli import serve as serve_commands
from biobank.cli.common import fail, item_progress, out
from biobank.config import get_settings
from biobank.deid import (
    DEFAULT_PROFILE,
    Outcome,
    Profile,
    builtin_profile,
    builtin_profile_names,
    parse_profile,
)
from biobank.dicom.io import quiet_pydicom
from biobank.errors import BiobankError, InvalidProfile
from biobank.ingest.deid_run import ItemResult, run_deid, write_report
from biobank.store.keyring import (
    PseudonymMap,
    create_key_file,
    pseudonym_map_path,
    read_key_file,
)

app = typer.Typer(
    name="biobank",
    help="Imaging Biobank: de-identify, check and share imaging data for AI research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
pseudonym_app = typer.Typer(help="Work with the site-local pseudonym map.", no_args_is_help=True)
profile_app = typer.Typer(help="List and show de-identification profiles.", no_args_is_help=True)
app.add_typer(pseudonym_app, name="pseudonym")
app.add_typer(profile_app, name="profile")
node_commands.register(app)
access_commands.register(app)
serve_commands.register(app)
curate_commands.register(app)
jobs_commands.register(app)
push_commands.register(app)
query_commands.register(app)
export_commands.register(app)
clinical_commands.register(app)


def _version(value: bool) -> None:
    if value:
        out.print(f"biobank {biobank.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Imaging Biobank command line."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:  # node commands also log INFO to a file
        handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
    quiet_pydicom()  # its messages quote header values (PHI); ours name the problem instead


def _load_profile(spec: str) -> Profile:
    path = Path(spec)
    if spec in builtin_profile_names() and not path.is_file():
        return builtin_profile(spec)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise InvalidProfile(f"{path}: cannot read the profile ({exc.strerror})") from None
        return parse_profile(text, source=str(path))
    return builtin_profile(spec)


@app.command()
def keygen(
    key_file: Annotated[Path, typer.Argument(help="Where to create the site key (mode 0600).")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing key (orphans its pseudonyms).")
    ] = False,
) -> None:
    """Create a site secret key for pseudonyms, UIDs and date offsets."""
    try:
        key = create_key_file(key_file, overwrite=force)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    out.print(f"created {key_file} (key id {key.key_id}); keep it private and backed up")


@app.command()
def deid(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="DICOM files, folders (searched recursively) and .zip/.tar/.tar.gz archives."
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    key_file: Annotated[Path, typer.Option("--key-file", "-k", help="The site key file.")],
    profile: Annotated[
        str,
        typer.Option(help="Profile name (research, basic, research-full-dates) or a YAML file."),
    ] = DEFAULT_PROFILE,
    report: Annotated[
        Path | None, typer.Option(help="Write the JSON report of every input here.")
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=0, help="Worker processes (0: all cores).")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """De-identify DICOM files into OUT as <study>/<series>/<sop>.dcm (PS3.15 Annex E)."""
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise fail(f"no such file or folder: {', '.join(missing)}")
    try:
        chosen = _load_profile(profile)
        key = read_key_file(key_file)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    jobs = jobs or get_settings().jobs
    problems: list[ItemResult] = []
    try:
        with item_progress("de-identifying", quiet=as_json) as bar:
            task = bar.add_task("deid", total=None, rate="", problems=0)
            done_bytes = [0]

            def tick(item: ItemResult) -> None:
                done_bytes[0] += item.bytes_in
                if item.outcome in (Outcome.QUARANTINED, Outcome.REJECTED):
                    problems.append(item)
                elapsed = bar.tasks[0].elapsed or 1e-9
                bar.update(
                    task,
                    advance=1,
                    rate=f"{done_bytes[0] / elapsed / 1e6:.0f} MB/s",
                    problems=len(problems),
                )

            result = run_deid(sources, out_dir, key, key_file, chosen, jobs=jobs, progress=tick)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    if report is not None:
        write_report(result, report)
    summary = result.summary()
    if as_json:
        out.print_json(json.dumps({"summary": summary, "report": str(report) if report else None}))
    else:
        _print_summary(result.profile.name, summary, problems, report)
    if summary["inputs"] == 0:
        raise fail("no input files found", code=1)


def _print_summary(
    profile: str, summary: dict[str, object], problems: list[ItemResult], report: Path | None
) -> None:
    table = Table(title=f"De-identification ({profile})", show_header=False)
    for label, key in [
        ("inputs", "inputs"),
        ("written", "written"),
        ("duplicates", "duplicate"),
        ("quarantined", "quarantined"),
        ("rejected", "rejected"),
        ("patients", "patients"),
        ("studies", "studies"),
        ("series", "series"),
        ("new pseudonyms", "new_pseudonyms"),
        ("files/s", "files_per_second"),
        ("MB/s", "mb_per_second"),
        ("seconds", "seconds"),
    ]:
        table.add_row(label, str(summary[key]))
    out.print(table)
    for item in sorted(problems, key=lambda i: i.source_path)[:20]:
        out.print(
            f"[yellow]{item.outcome.value}[/]: {item.source_path}: {item.reason}", highlight=False
        )
    if len(problems) > 20:
        out.print(f"... and {len(problems) - 20} more (see the report)")
    if report is not None:
        out.print(f"report: {report}")


@pseudonym_app.command("lookup")
def pseudonym_lookup(
    pseudonym: Annotated[str, typer.Argument(help="The pseudonym (PatientID in the output).")],
    key_file: Annotated[Path, typer.Option("--key-file", "-k", help="The site key file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-identify: print the source issuer and Patient ID behind a pseudonym (site only)."""
    try:
        key = read_key_file(key_file)
        map_path = pseudonym_map_path(key_file)
        if not map_path.exists():
            raise fail(f"{map_path}: no pseudonym map next to this key yet")
        with PseudonymMap(map_path, key) as pmap:
            entry = pmap.lookup(pseudonym)
    except BiobankError as exc:
        raise fail(str(exc), code=1) from None
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "pseudonym": entry.pseudonym,
                    "issuer": entry.issuer,
                    "patient_id": entry.patient_id,
                }
            )
        )
    else:
        out.print(f"pseudonym:  {entry.pseudonym}", highlight=False)
        out.print(f"issuer:     {entry.issuer or '(none)'}", highlight=False)
        out.print(f"patient id: {entry.patient_id}", highlight=False)


@profile_app.command("list")
def profile_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the packaged profiles."""
    profiles = [builtin_profile(n) for n in builtin_profile_names()]
    if as_json:
        out.print_json(
            json.dumps(
                [{"name": p.name, "options": sorted(o.value for o in p.options)} for p in profiles]
            )
        )
        return
    table = Table("name", "options")
    for p in profiles:
        table.add_row(p.name, ", ".join(sorted(o.value for o in p.options)))
    out.print(table)


@profile_app.command("show")
def profile_show(
    name: Annotated[str, typer.Argument(help="A packaged profile name or a YAML file.")],
) -> None:
    """Show a profile's options with their CID 7050 codes."""
    try:
        p = _load_profile(name)
    except BiobankError as exc:
        raise fail(str(exc)) from None
    out.print(f"[bold]{p.name}[/]: {p.description}")
    for option in sorted(p.options, key=lambda o: o.code):
        out.print(f"  {option.code}  {option.value}  ({option.meaning})", highlight=False)


def main() -> None:
    """Entry point of the ``biobank`` console script."""
    app()


__all__ = ["app", "main"]

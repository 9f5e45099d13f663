"""De-identify files and folders into an output folder, in parallel, with a report.

This is the file-level runner behind ``biobank deid``: it walks the sources, sends each file
through :func:`biobank.deid.deidentify_bytes` (the same engine the ingest pipeline uses) on a
pool of worker processes, writes each result to ``<study>/<series>/<sop>.dcm`` (new UIDs only;
never a name derived from the input path), records new pseudonyms in the site-local map, and
accounts for every input in the report: written, duplicate, quarantined or rejected, with the
reason. A worker process that dies (a decoder crash) costs only the file it was on: the rest
of its chunk is retried one by one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import biobank
from biobank.deid import (
    Outcome,
    PatientIdentity,
    Profile,
    Pseudonymizer,
    SiteKey,
    deidentify_bytes,
    table_edition,
)
from biobank.errors import BiobankError, InvalidDicom, InvalidInput, QuarantineRequired
from biobank.ingest.pool import run_items
from biobank.ingest.sources import SourceItem, iter_items
from biobank.store.atomic import create_once
from biobank.store.keyring import PseudonymMap, pseudonym_map_path

logger = logging.getLogger(__name__)

MAP_BATCH = 256


@dataclass
class ItemResult:
    """The outcome of one input file. ``source_path`` is the only field naming the input."""

    source_path: str
    outcome: Outcome
    reason: str = ""
    output_path: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    record: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the report entry."""
        out: dict[str, Any] = {"source_path": self.source_path, "outcome": self.outcome.value}
        if self.reason:
            out["reason"] = self.reason
        if self.output_path:
            out["output_path"] = self.output_path
        if self.record is not None:
            out["record"] = self.record
        return out


@dataclass
class DeidRunReport:
    """Everything a run did, PHI-free except the ``source_path`` of each item."""

    profile: Profile
    key_id: str
    out_dir: Path
    jobs: int
    started: float
    finished: float = 0.0
    items: list[ItemResult] = field(default_factory=list)
    new_pseudonyms: int = 0

    def counts(self) -> dict[str, int]:
        """Items per outcome."""
        counts = {o.value: 0 for o in Outcome}
        for item in self.items:
            counts[item.outcome.value] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """The summary block of the report."""
        seconds = max(self.finished - self.started, 1e-9)
        bytes_in = sum(i.bytes_in for i in self.items)
        written = [i for i in self.items if i.outcome is Outcome.WRITTEN]
        return {
            "inputs": len(self.items),
            **self.counts(),
            "patients": len({i.record["patient_pseudonym"] for i in written if i.record}),
            "studies": len({i.record["study_instance_uid"] for i in written if i.record}),
            "series": len({i.record["series_instance_uid"] for i in written if i.record}),
            "new_pseudonyms": self.new_pseudonyms,
            "bytes_in": bytes_in,
            "bytes_out": sum(i.bytes_out for i in self.items),
            "seconds": round(seconds, 3),
            "files_per_second": round(len(self.items) / seconds, 1),
            "mb_per_second": round(bytes_in / seconds / 1e6, 1),
            "jobs": self.jobs,
        }

    def to_json(self) -> dict[str, Any]:
        """The whole report (see docs/deid.md for the format)."""
        return {
            "report": "biobank deid",
            "version": biobank.__version__,
            "profile": self.profile.name,
            "options": sorted(o.value for o in self.profile.options),
            "table_edition": table_edition(),
            "key_id": self.key_id,
            "output_dir": str(self.out_dir),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "summary": self.summary(),
            "items": [i.to_json() for i in self.items],
        }


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


# --- worker side --------------------------------------------------------------------------

_worker: dict[str, Any] = {}


def _init_worker(secret: bytes, profile: Profile, out_dir: str) -> None:
    _worker["pseudo"] = Pseudonymizer(SiteKey(secret))
    _worker["profile"] = profile
    _worker["out_dir"] = out_dir
    _worker["made_dirs"] = set()


def _process_item(item: SourceItem) -> tuple[ItemResult, PatientIdentity | None]:
    """De-identify one input and write its output; never raises for a bad input."""
    source_path = item.source_path
    if item.problem is not None:
        return ItemResult(source_path, Outcome.REJECTED, item.problem), None
    try:
        data = item.read()
    except OSError as exc:
        return (
            ItemResult(
                source_path,
                Outcome.REJECTED,
                f"unreadable file ({exc.__class__.__name__}: {exc.strerror or 'I/O error'}); "
                "check permissions and that the file still exists",
            ),
            None,
        )
    try:
        output = deidentify_bytes(data, _worker["profile"], _worker["pseudo"], source="input file")
    except QuarantineRequired as exc:
        return ItemResult(source_path, Outcome.QUARANTINED, str(exc), bytes_in=len(data)), None
    except (InvalidDicom, InvalidInput) as exc:
        return ItemResult(source_path, Outcome.REJECTED, str(exc), bytes_in=len(data)), None
    except BiobankError as exc:
        return ItemResult(source_path, Outcome.REJECTED, str(exc), bytes_in=len(data)), None
    except Exception as exc:  # noqa: BLE001 - third-party messages may quote values: class only
        logger.warning("unexpected %s while de-identifying an item", exc.__class__.__name__)
        return (
            ItemResult(
                source_path,
                Outcome.REJECTED,
                f"could not be processed ({exc.__class__.__name__}); the file may be malformed "
                "— report it with the file if it opens in other viewers",
                bytes_in=len(data),
            ),
            None,
        )
    record = output.record
    relative = (
        f"{record.study_instance_uid}/{record.series_instance_uid}/{record.sop_instance_uid}.dcm"
    )
    outcome, reason = _write_output(Path(_worker["out_dir"]), relative, output.data)
    return (
        ItemResult(
            source_path,
            outcome,
            reason,
            output_path=relative,
            bytes_in=len(data),
            bytes_out=len(output.data) if outcome is Outcome.WRITTEN else 0,
            record=record.to_json(),
        ),
        output.identity,
    )


def _run_item(item: SourceItem) -> tuple[ItemResult, PatientIdentity | None]:
    # Looked up by name in the worker, so a test can replace _process_item (pickled by name).
    return _process_item(item)


def _crashed(item: SourceItem) -> tuple[ItemResult, PatientIdentity | None]:
    reason = (
        "the worker process died while reading this file (a decoder crash); the file is "
        "probably corrupt"
    )
    return ItemResult(item.source_path, Outcome.REJECTED, reason), None


def _write_output(out_dir: Path, relative: str, data: bytes) -> tuple[Outcome, str]:
    """Write ``data`` at ``relative`` atomically; never overwrite different content.

    :func:`biobank.store.atomic.create_once`: a killed run leaves no partial file and no
    temporary name behind, and an existing file is never replaced.
    """
    target = out_dir / relative
    folder = target.parent
    made: set[Path] = _worker.setdefault("made_dirs", set())
    if folder not in made:
        folder.mkdir(parents=True, exist_ok=True)
        made.add(folder)
    if create_once(target, (data,)):
        return Outcome.WRITTEN, ""
    if target.read_bytes() == data:
        return Outcome.DUPLICATE, "the same instance was already written from another input"
    return (
        Outcome.REJECTED,
        "another input with the same SOP Instance UID but different content was already "
        "written; the two exports disagree — check which one is right",
    )


# --- parent side --------------------------------------------------------------------------


ProgressCallback = Callable[[ItemResult], None]


def run_deid(
    sources: Iterable[Path],
    out_dir: Path,
    key: SiteKey,
    key_path: Path,
    profile: Profile,
    *,
    jobs: int = 0,
    progress: ProgressCallback | None = None,
) -> DeidRunReport:
    """De-identify every file under ``sources`` into ``out_dir``; return the report.

    ``jobs`` worker processes (0: all cores; 1: in this process). New pseudonyms go to the
    map next to ``key_path``, never into ``out_dir``.
    """
    out_dir = out_dir.resolve()
    map_path = pseudonym_map_path(key_path.resolve())
    if map_path.parent == out_dir or out_dir in map_path.parents:
        raise InvalidInput(
            "the key and its pseudonym map must not live inside the output folder; "
            "choose another --out"
        )
    items = iter_items(sources, exclude=out_dir)
    jobs = jobs if jobs > 0 else (os.cpu_count() or 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = DeidRunReport(
        profile=profile, key_id=key.key_id, out_dir=out_dir, jobs=jobs, started=time.time()
    )
    identities: list[PatientIdentity] = []
    pmap = PseudonymMap(map_path, key)

    def collect(result: ItemResult, identity: PatientIdentity | None) -> None:
        report.items.append(result)
        if identity is not None:
            identities.append(identity)
            if len(identities) >= MAP_BATCH:
                # In batches as results arrive: a run killed midway leaves in the map the
                # pseudonym of every output it wrote, not only those of a finished run.
                report.new_pseudonyms += pmap.record(identities)
                identities.clear()
        if progress is not None:
            progress(result)

    try:
        run_items(
            items,
            jobs=jobs,
            initializer=_init_worker,
            initargs=(key.secret, profile, str(out_dir)),
            process_item=_run_item,
            collect=lambda pair: collect(*pair),
            on_crash=_crashed,
        )
        report.new_pseudonyms += pmap.record(identities)
    finally:
        pmap.close()
    os.sync()  # outputs on disk before the report says so
    report.items.sort(key=lambda i: i.source_path)
    report.finished = time.time()
    return report


def write_report(report: DeidRunReport, path: Path) -> None:
    """Write the JSON report atomically: the header indented, then one item per line.

    (``json.dumps(indent=...)`` runs the pure-Python encoder, about ten times slower than the
    C encoder used for each compact item; on 2,000 inputs that was a second.)
    """
    document = report.to_json()
    items = document.pop("items")
    head = json.dumps(document, indent=2, ensure_ascii=False)
    lines = ",\n    ".join(json.dumps(item, ensure_ascii=False) for item in items)
    text = head[:-2] + ',\n  "items": [\n    ' + lines + "\n  ]\n}\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


__all__ = ["DeidRunReport", "ItemResult", "run_deid", "write_report"]

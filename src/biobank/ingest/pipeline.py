"""The ingest pipeline: sources → parse → de-identify or check → validate → store → index.

:func:`ingest` runs every item of the sources (files, folders, archives; see
:mod:`biobank.ingest.sources`) on a pool of worker processes. A worker does the expensive
part of each item: it reads the bytes, de-identifies them (site node) or checks that they
arrive de-identified (central node), validates the result, writes the blob (content-
addressed, not yet synced) and extracts what the catalogue indexes. This process collects the
results and commits them in batches — *group commit*:

1. the pseudonyms of the batch go to the site-local map (so a catalogued instance is always
   re-identifiable by its provider);
2. one ``syncfs`` makes every blob of the batch durable;
3. one catalogue transaction records every item: stored, duplicate (same SOP Instance UID,
   same bytes), conflict (same UID, other bytes: recorded, never overwritten), rejected or
   quarantined, each with its reason.

A process killed at any point leaves at worst blobs that no catalogue row names yet; the
next run re-creates the same blobs (de-identification is deterministic under the site key),
names them, and records the rest of the items as duplicates, so every instance ends up stored
exactly once. ``biobank verify --repair`` removes blobs that stay unnamed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset

from biobank.catalog import BatchState, Catalog, ItemInput, ItemOutcome, ItemResult
from biobank.catalog.jobs import JobRecords
from biobank.catalog.omop_imaging import sync_imaging_quietly
from biobank.catalog.repository import ANALYZE_AFTER
from biobank.deid import Profile, Pseudonymizer, SiteKey, deidentify_bytes
from biobank.deid.check import check_deidentified
from biobank.deid.models import PatientIdentity
from biobank.dicom.io import read_dataset
from biobank.dicom.json import header_json
from biobank.dicom.values import read_strings
from biobank.errors import BiobankError, InvalidDicom, QuarantineRequired
from biobank.ingest.attributes import instance_record
from biobank.ingest.node import Node, NodeRole
from biobank.ingest.pool import run_items
from biobank.ingest.sources import Limits, SourceItem, iter_items
from biobank.ingest.validate import validate_instance
from biobank.jobs import SERIES_JOBS
from biobank.store.blobs import FileBlobStore
from biobank.store.keyring import PseudonymMap

logger = logging.getLogger(__name__)

#: Items per catalogue transaction, and the longest wait before a partial batch is committed.
COMMIT_ITEMS = 256
COMMIT_SECONDS = 2.0
BULK_DATA_THRESHOLD = 1024
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class IngestReport:
    """What a run did; PHI-free except the ``source_path`` of problem items."""

    batch_id: str
    role: NodeRole
    jobs: int
    started: float
    finished: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in ItemOutcome})
    bytes_in: int = 0
    problems: list[ItemResult] = field(default_factory=list)
    patients: set[str] = field(default_factory=set)
    studies: set[str] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    interrupted: bool = False
    queued_jobs: int = 0

    @property
    def inputs(self) -> int:
        """Items seen."""
        return sum(self.counts.values())

    def summary(self) -> dict[str, Any]:
        """The figures of the run (``biobank ingest --json``)."""
        seconds = max(self.finished - self.started, 1e-9)
        return {
            "inputs": self.inputs,
            **self.counts,
            "patients": len(self.patients),
            "studies": len(self.studies),
            "series": len(self.series),
            "bytes_in": self.bytes_in,
            "seconds": round(seconds, 3),
            "instances_per_second": round(self.inputs / seconds, 1),
            "mb_per_second": round(self.bytes_in / seconds / 1e6, 1),
            "jobs": self.jobs,
        }

    def to_json(self) -> dict[str, Any]:
        """Summary and problems."""
        return {
            "batch_id": self.batch_id,
            "role": self.role.value,
            "state": (BatchState.INTERRUPTED if self.interrupted else BatchState.COMPLETE).value,
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "summary": self.summary(),
            "problems": [
                {"source_path": p.source_path, "outcome": p.outcome.value, "reason": p.reason}
                for p in self.problems
            ],
        }


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


# --- worker side --------------------------------------------------------------------------

_worker: dict[str, Any] = {}


@dataclass(frozen=True)
class _WorkerSetup:
    role: NodeRole
    secret: bytes | None
    profile: Profile | None
    blob_root: str


def _init_worker(setup: _WorkerSetup) -> None:
    _worker.clear()
    _worker["setup"] = setup
    _worker["store"] = FileBlobStore(Path(setup.blob_root), fsync=False)
    if setup.secret is not None:
        _worker["pseudo"] = Pseudonymizer(SiteKey(setup.secret))


_Result = tuple[ItemInput, PatientIdentity | None]


_SOURCE = "input item"


def _problem(item: SourceItem, outcome: ItemOutcome, reason: str, size: int = 0) -> _Result:
    # The item is named by its source path next to the reason; drop the engine's own prefix.
    reason = reason.removeprefix(f"{_SOURCE}: ")
    return ItemInput(item.source_path, outcome, reason, bytes_in=size), None


def _run_item(item: SourceItem) -> _Result:
    """Take one item through the worker's stages; never raises for a bad input."""
    if item.problem is not None:
        return _problem(item, ItemOutcome.REJECTED, item.problem)
    try:
        data = item.read()
    except OSError as exc:
        reason = (
            f"unreadable file ({exc.__class__.__name__}: {exc.strerror or 'I/O error'}); "
            "check permissions and that the file still exists"
        )
        return _problem(item, ItemOutcome.REJECTED, reason)
    try:
        return _stages(item, data)
    except QuarantineRequired as exc:
        return _problem(item, ItemOutcome.QUARANTINED, str(exc), len(data))
    except BiobankError as exc:
        return _problem(item, ItemOutcome.REJECTED, str(exc), len(data))
    except Exception as exc:  # noqa: BLE001 - third-party messages may quote values: class only
        logger.warning("unexpected %s while ingesting an item", exc.__class__.__name__)
        reason = (
            f"could not be processed ({exc.__class__.__name__}); the file may be malformed — "
            "report it with the file if it opens in other viewers"
        )
        return _problem(item, ItemOutcome.REJECTED, reason, len(data))


def _stages(item: SourceItem, data: bytes) -> _Result:
    setup: _WorkerSetup = _worker["setup"]
    identity: PatientIdentity | None = None
    record_json: str | None = None
    if setup.role is NodeRole.SITE:
        assert setup.profile is not None
        seen: list[Dataset] = []
        output = deidentify_bytes(
            data, setup.profile, _worker["pseudo"], source=_SOURCE, on_dataset=seen.append
        )
        ds, stored, identity = seen[0], output.data, output.identity
        record_json = json.dumps(output.record.to_json(), separators=(",", ":"))
    else:
        ds = read_dataset(data, _SOURCE)
        stored = data  # a central node stores what the site sent, byte for byte
        sop_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if sop_class == _DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
            raise InvalidDicom("a DICOMDIR is an index of files, not an instance; skip it")
        reasons = check_deidentified(ds)
        if reasons:
            raise InvalidDicom(
                "not de-identified, a central node refuses it: "
                + "; ".join(reasons)
                + " — de-identify it at the site (biobank ingest on a site node) and resend"
            )
    meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    problems = validate_instance(ds, transfer_syntax)
    if problems:
        raise InvalidDicom("; ".join(problems))
    # BulkDataURIs are relative to the instance's series (WADO-RS prefixes the rest).
    sop_instance_uid = read_strings(ds, 0x00080018, "UI", [])[0]
    header = header_json(
        ds,
        bulk_data_threshold=BULK_DATA_THRESHOLD,
        bulk_prefix=f"instances/{sop_instance_uid}/bulk/",
    )
    blob = _worker["store"].put(stored)
    instance = instance_record(
        ds,
        transfer_syntax_uid=transfer_syntax,
        blob_digest=blob.digest,
        blob_size=blob.size,
        header_json=header,
        deid_record_json=record_json,
    )
    return ItemInput(item.source_path, ItemOutcome.STORED, "", instance, len(data)), identity


def _crashed(item: SourceItem) -> _Result:
    reason = (
        "the worker process died while reading this item (a decoder crash); the file is "
        "probably corrupt — export it again"
    )
    return _problem(item, ItemOutcome.REJECTED, reason)


# --- parent side --------------------------------------------------------------------------

ProgressCallback = Callable[[Sequence[ItemResult], int], None]


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close_stale_batches(catalog: Catalog) -> int:
    """Mark batches whose process is gone (killed, crashed) as interrupted; return how many."""
    stale = [b for b in catalog.running_batches() if not _pid_alive(b.pid)]
    for batch in stale:
        catalog.set_batch_state(batch.batch_id, BatchState.INTERRUPTED)
    return len(stale)


class _Committer:
    """Commits worker results in groups, on a thread of its own (see the module docstring).

    The main thread keeps feeding the worker processes while a group is synced and
    committed: ``syncfs`` and SQLite/PostgreSQL release the GIL, so the workers never wait
    for the disk. Groups are committed in order; an error in the thread is raised in the
    main thread at the next :meth:`add` or at :meth:`close`.
    """

    def __init__(
        self,
        catalog: Catalog,
        store: FileBlobStore,
        map_path: Path | None,
        key: SiteKey | None,
        report: IngestReport,
        progress: ProgressCallback | None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.report = report
        self.progress = progress
        self.touched: set[str] = set()
        self._map = (map_path, key)
        self._pending: list[_Result] = []
        self._last = time.monotonic()
        self._queue: queue.Queue[list[_Result] | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="biobank-commit", daemon=True)
        self._thread.start()

    def add(self, result: _Result) -> None:
        """Take one worker result (main thread)."""
        self._raise_error()
        self._pending.append(result)
        if len(self._pending) >= COMMIT_ITEMS or time.monotonic() - self._last > COMMIT_SECONDS:
            self._hand_over()

    def close(self) -> None:
        """Commit what is pending, wait for the thread, raise its error if it had one."""
        if self._thread.is_alive():
            self._hand_over()
            self._queue.put(None)
            self._thread.join()
        self._raise_error()

    def _hand_over(self) -> None:
        self._last = time.monotonic()
        if self._pending:
            self._queue.put(self._pending)
            self._pending = []

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        map_path, key = self._map
        # sqlite3 connections belong to the thread that opens them: open the map here.
        pmap = PseudonymMap(map_path, key) if map_path and key else None
        try:
            while (group := self._queue.get()) is not None:
                if not self._failed:  # after a failure, the rest waits for the next run
                    try:
                        self._commit(group, pmap)
                    except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                        self._failed = True
                        self._error = exc
        finally:
            if pmap is not None:
                pmap.close()

    def _commit(self, group: list[_Result], pmap: PseudonymMap | None) -> None:
        items = [item for item, _ in group]
        identities = [identity for _, identity in group if identity is not None]
        if pmap is not None and identities:
            pmap.record(identities)  # before the catalogue names them: always re-identifiable
        if any(i.instance is not None for i in items):
            self.store.sync()  # the blobs are durable before the rows that name them
        results = self.catalog.record_items(self.report.batch_id, items)
        size = 0
        for item, result in zip(items, results, strict=True):
            size += item.bytes_in
            self._account(item, result)
        self.report.bytes_in += size
        if self.progress is not None:
            self.progress(results, size)

    def _account(self, item: ItemInput, result: ItemResult) -> None:
        report = self.report
        report.counts[result.outcome.value] += 1
        instance = item.instance
        if result.outcome not in (ItemOutcome.STORED, ItemOutcome.DUPLICATE):
            report.problems.append(result)
        elif instance is not None:
            report.patients.add(instance.patient_pseudonym)
            report.studies.add(instance.study_instance_uid)
            report.series.add(instance.series_instance_uid)
            if result.outcome is ItemOutcome.STORED:
                self.touched.add(instance.series_instance_uid)


def ingest(
    node: Node,
    sources: Iterable[Path],
    *,
    jobs: int = 0,
    progress: ProgressCallback | None = None,
    limits: Limits | None = None,
    queue_jobs: Sequence[str] = SERIES_JOBS,
) -> IngestReport:
    """Ingest every file and archive member under ``sources`` into ``node``.

    The series that received new instances get a job of each kind in ``queue_jobs``
    (classification and quality control; ``biobank jobs run`` runs them).

    ``jobs`` worker processes (0: all cores; 1: in this process). Every input is accounted
    for in the returned report and in the catalogue's batch (``biobank ls problems``).
    """
    sources = [Path(s) for s in sources]
    jobs = jobs if jobs > 0 else (os.cpu_count() or 1)
    role = node.role
    profile = node.profile() if role is NodeRole.SITE else None
    key = node.site_key() if role is NodeRole.SITE else None
    catalog = node.open_catalog()
    try:
        close_stale_batches(catalog)
        store = node.open_store(fsync=False)
        if key is not None:
            PseudonymMap(node.map_path, key).close()  # refuses a map of another key, now
        batch_id = catalog.start_batch(
            role=role.value,
            sources=[str(s) for s in sources],
            profile=profile.name if profile else None,
            key_id=key.key_id if key else None,
            pid=os.getpid(),
        )
        report = IngestReport(batch_id=batch_id, role=role, jobs=jobs, started=time.time())
        committer = _Committer(
            catalog, store, node.map_path if key else None, key, report, progress
        )
        setup = _WorkerSetup(
            role, key.secret if key else None, profile, str(node.blob_root.resolve())
        )
        logger.info("ingest batch %s started (%s node, %d jobs)", batch_id, role.value, jobs)
        try:
            run_items(
                iter_items(sources, exclude=node.home, limits=limits),
                jobs=jobs,
                initializer=_init_worker,
                initargs=(setup,),
                process_item=_run_item,
                collect=committer.add,
                on_crash=_crashed,
            )
            committer.close()
        except BaseException:
            report.interrupted = True
            _finish_interrupted(catalog, committer)
            raise
        if report.counts[ItemOutcome.STORED.value] >= ANALYZE_AFTER:
            # Planner statistics first: without them PostgreSQL (autovacuum off, or not yet
            # run) scans whole tables for each series the refresh recounts.
            catalog.analyze()
        catalog.refresh_series(committer.touched)
        report.queued_jobs = queue_series_jobs(catalog, committer.touched, queue_jobs)
        sync_imaging_quietly(catalog, None)  # OMOP rows of every unmapped series; never raises
        catalog.finish_batch(batch_id, state=BatchState.COMPLETE, expected=report.inputs)
        report.finished = time.time()
        logger.info("ingest batch %s complete: %s", batch_id, report.counts)
        return report
    finally:
        catalog.close()


def queue_series_jobs(catalog: Catalog, series: Iterable[str], kinds: Sequence[str]) -> int:
    """Queue a job of each kind for each series (new instances: classify and measure again)."""
    subjects = sorted(series)
    if not subjects:
        return 0
    records = JobRecords(catalog)
    return sum(records.enqueue(kind, subjects) for kind in kinds)


def _finish_interrupted(catalog: Catalog, committer: _Committer) -> None:
    """Commit what was done before an interruption, and say the batch was interrupted."""
    try:
        committer.close()
        catalog.refresh_series(committer.touched)
    except Exception:  # noqa: BLE001 - the original error matters more
        logger.exception("could not commit the items done before the interruption")
    try:
        catalog.finish_batch(committer.report.batch_id, state=BatchState.INTERRUPTED)
    except Exception:  # noqa: BLE001
        logger.exception("could not mark the batch interrupted")


__all__ = ["COMMIT_ITEMS", "IngestReport", "close_stale_batches", "ingest", "queue_series_jobs"]

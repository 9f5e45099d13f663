"""Ingest for a running node: STOW-RS requests and C-STORE associations.

:func:`biobank.ingest.pipeline.ingest` takes a finite stream (folders, archives) and owns its
worker pool for one run. A server receives items a few at a time, from many clients at
once, and must answer each client with the fate of *its* items once they are durable. The
:class:`IngestService` keeps one pool of worker processes for the life of the server (the
same worker code as the pipeline: parse → de-identify or check → validate → blob → index)
and one commit thread:

* :meth:`IngestService.store` sends the items of one request to the pool, waits for them,
  then hands them to the commit thread and waits for the commit;
* the commit thread takes every request waiting at that moment, writes their pseudonyms,
  makes all their blobs durable with **one** ``syncfs``, and records each request's items in
  the catalogue (one transaction per request) — concurrent uploads share the disk flush;
* only then does ``store`` return: an item reported stored is on disk and catalogued.

Each call is one ingest batch (``biobank ls batches``) whose sources name the channel
("STOW-RS from alice", "C-STORE from MODALITY1"); problems are kept like any batch's. A worker
process that dies on an item (a decoder crash) costs only that item. Series counters are kept
by the catalogue on every write; series metadata is rebuilt lazily when it is next read.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from biobank.catalog import BatchState, Catalog, InstanceRecord, ItemOutcome, ItemResult
from biobank.catalog.access import AccessRecords
from biobank.catalog.omop_imaging import sync_imaging_quietly
from biobank.errors import StorageError
from biobank.ingest.node import Node, NodeRole
from biobank.ingest.pipeline import (
    _crashed,
    _init_worker,
    _Result,
    _run_item,
    _WorkerSetup,
    close_stale_batches,
    queue_series_jobs,
)
from biobank.ingest.sources import SourceItem
from biobank.jobs import SERIES_JOBS
from biobank.store.keyring import PseudonymMap

logger = logging.getLogger(__name__)

#: Items per task sent to a worker process (fewer round trips, still balanced on 2+ cores).
TASK_ITEMS = 4


@dataclass
class _Commit:
    """One request's items, waiting for the commit thread."""

    batch_id: str
    results: list[_Result]
    owner_user_id: int | None
    done: threading.Event = field(default_factory=threading.Event)
    outcome: list[ItemResult] = field(default_factory=list)
    error: BaseException | None = None


class IngestService:
    """Ingest items as they arrive, on a long-lived worker pool (see the module docstring).

    Parameters
    ----------
    node
        The node whose catalogue, blob store and keys are used.
    jobs
        Worker processes (0: one per core; 1: in the calling thread, serialised).
    catalog
        An open catalogue to use (the server shares its own); opened from ``node`` if None
        and then closed by :meth:`close`.
    """

    def __init__(
        self,
        node: Node,
        *,
        jobs: int = 0,
        catalog: Catalog | None = None,
        queue_jobs: Sequence[str] = SERIES_JOBS,
    ) -> None:
        self.node = node
        self.queue_jobs = tuple(queue_jobs)
        self.role = node.role
        self.jobs = jobs if jobs > 0 else (os.cpu_count() or 1)
        profile = node.profile() if self.role is NodeRole.SITE else None
        self._key = node.site_key() if self.role is NodeRole.SITE else None
        self._owns_catalog = catalog is None
        self.catalog = catalog if catalog is not None else node.open_catalog()
        close_stale_batches(self.catalog)
        self._owners = AccessRecords(self.catalog)
        self._store = node.open_store(fsync=False)
        if self._key is not None:
            PseudonymMap(node.map_path, self._key).close()  # refuses a map of another key
        self._setup = _WorkerSetup(
            self.role,
            self._key.secret if self._key else None,
            profile,
            str(node.blob_root.resolve()),
        )
        self._profile_name = profile.name if profile else None
        self._pool_lock = threading.Lock()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._inline_lock = threading.Lock()
        if self.jobs <= 1:
            _init_worker(self._setup)
        self._ready = threading.Event()
        if self.jobs <= 1:
            self._ready.set()
        else:  # start the workers now, not on the first request (seconds of imports)
            threading.Thread(target=self._warm_up, name="biobank-warm-up", daemon=True).start()
        self._queue: queue.Queue[_Commit | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._commit_loop, name="biobank-commit")
        self._thread.daemon = True
        self._thread.start()

    # -- the public operation ------------------------------------------------------------

    def begin(self, channel: str) -> str:
        """Open a batch for items that arrive one by one (a C-STORE association).

        Pass its id to :meth:`store` and close it with :meth:`end`.
        """
        return self.catalog.start_batch(
            role=self.role.value,
            sources=[channel],
            profile=self._profile_name,
            key_id=self._key.key_id if self._key else None,
            pid=os.getpid(),
        )

    def end(self, batch_id: str, *, interrupted: bool = False) -> None:
        """Close a batch opened by :meth:`begin` (interrupted: the sender went away early)."""
        state = BatchState.INTERRUPTED if interrupted else BatchState.COMPLETE
        self._finish(batch_id, state, None)

    def store(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        channel: str,
        owner_user_id: int | None = None,
        batch_id: str | None = None,
    ) -> list[ItemResult]:
        """Ingest ``items`` (name, bytes); return each item's result, in order.

        See :meth:`store_records`, which also returns what was catalogued of each item.
        """
        stored = self.store_records(
            items, channel=channel, owner_user_id=owner_user_id, batch_id=batch_id
        )
        return [result for result, _ in stored]

    def store_records(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        channel: str,
        owner_user_id: int | None = None,
        batch_id: str | None = None,
    ) -> list[tuple[ItemResult, InstanceRecord | None]]:
        """Ingest ``items`` (name, bytes); return each item's result and record, in order.

        The record (None for an item that was rejected before it could be read) holds the
        stored instance's UIDs and main attributes, de-identified on a site node. The items
        are one batch whose source is ``channel`` (where they came from; no PHI),
        unless ``batch_id`` names a batch opened by :meth:`begin`. ``owner_user_id``, when
        given, is recorded as an owner of every study the items were stored in (or found in,
        for duplicates): an uploader may read those back.

        Raises
        ------
        StorageError
            If the service is closed, or the catalogue or disk failed (nothing of this call
            is then reported stored; a retry is safe: ingest is idempotent).
        """
        if self._closed:
            raise StorageError("the ingest service is shutting down; retry in a moment")
        own_batch = batch_id is None
        batch = self.begin(channel) if batch_id is None else batch_id
        try:
            results = self._process([SourceItem(name, data=data) for name, data in items])
            commit = _Commit(batch, results, owner_user_id)
            self._queue.put(commit)
            commit.done.wait()
            if commit.error is not None:
                raise commit.error
        except BaseException:
            if own_batch:
                self._finish(batch, BatchState.INTERRUPTED, None)
            raise
        if own_batch:
            self._finish(batch, BatchState.COMPLETE, len(items))
        records = [item.instance for item, _ in commit.results]
        return list(zip(commit.outcome, records, strict=True))

    def close(self) -> None:
        """Finish the commits in flight, stop the workers and the commit thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
        if self._owns_catalog:
            self.catalog.close()

    def __enter__(self) -> IngestService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers -------------------------------------------------------------------------

    def _get_pool(self) -> cf.ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                # forkserver: the server process runs threads, and forking those is unsafe.
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["biobank.ingest.pipeline"])
                self._pool = cf.ProcessPoolExecutor(
                    max_workers=self.jobs,
                    mp_context=context,
                    initializer=_init_worker,
                    initargs=(self._setup,),
                )
            return self._pool

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until the worker processes are up (a server calls it before it listens)."""
        return self._ready.wait(timeout)

    def _warm_up(self) -> None:
        try:
            pool = self._get_pool()
            for future in [pool.submit(_run_task, []) for _ in range(self.jobs)]:
                future.result()
        except Exception:  # noqa: BLE001 - the first request will start (and report) them
            logger.warning("the ingest workers could not be started ahead of time")
        finally:
            self._ready.set()

    def _replace_pool(self, broken: cf.ProcessPoolExecutor) -> None:
        with self._pool_lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def _process(self, items: list[SourceItem]) -> list[_Result]:
        if self.jobs <= 1:
            with self._inline_lock:
                return [_run_item(item) for item in items]
        pool = self._get_pool()
        tasks = [items[i : i + TASK_ITEMS] for i in range(0, len(items), TASK_ITEMS)]
        futures = [pool.submit(_run_task, task) for task in tasks]
        results: list[_Result] = []
        for task, future in zip(tasks, futures, strict=True):
            try:
                results.extend(future.result())
            except cf.process.BrokenProcessPool:
                self._replace_pool(pool)
                results.extend(_isolate(task, self._setup))
        return results

    # -- commits -------------------------------------------------------------------------

    def _commit_loop(self) -> None:
        pmap = PseudonymMap(self.node.map_path, self._key) if self._key is not None else None
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                stop = False
                while True:  # every request waiting now shares this round's disk flush
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    group.append(more)
                self._commit_group(group, pmap)
                if stop:
                    return
        finally:
            if pmap is not None:
                pmap.close()

    def _commit_group(self, group: list[_Commit], pmap: PseudonymMap | None) -> None:
        try:
            identities = [i for c in group for _, i in c.results if i is not None]
            if pmap is not None and identities:
                pmap.record(identities)
            if any(item.instance is not None for c in group for item, _ in c.results):
                self._store.sync()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
            for commit in group:
                commit.error = exc
                commit.done.set()
            return
        for commit in group:
            try:
                items = [item for item, _ in commit.results]
                commit.outcome = self.catalog.record_items(commit.batch_id, items)
                if commit.owner_user_id is not None:
                    self._record_owner(commit)
                self._queue_jobs(commit)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                commit.error = exc
            finally:
                commit.done.set()

    def _record_owner(self, commit: _Commit) -> None:
        assert commit.owner_user_id is not None
        studies = {
            item.instance.study_instance_uid
            for (item, _), result in zip(commit.results, commit.outcome, strict=True)
            if item.instance is not None
            and result.outcome in (ItemOutcome.STORED, ItemOutcome.DUPLICATE)
        }
        if studies:
            self._owners.add_study_owners(commit.owner_user_id, sorted(studies))

    def _queue_jobs(self, commit: _Commit) -> None:
        """Series that received new instances are classified and measured (again)."""
        series = {
            item.instance.series_instance_uid
            for (item, _), result in zip(commit.results, commit.outcome, strict=True)
            if item.instance is not None and result.outcome is ItemOutcome.STORED
        }
        try:
            queue_series_jobs(self.catalog, series, self.queue_jobs)
        except Exception:  # noqa: BLE001 - the instances are stored; the jobs can be queued later
            logger.exception("could not queue the jobs of %d series", len(series))
        sync_imaging_quietly(self.catalog, series)  # OMOP image_occurrence; never raises

    def _finish(self, batch_id: str, state: BatchState, expected: int | None) -> None:
        try:
            self.catalog.finish_batch(batch_id, state=state, expected=expected)
        except Exception:  # noqa: BLE001 - the items' fate is already decided and reported
            logger.exception("could not close ingest batch %s", batch_id)


def _run_task(task: list[SourceItem]) -> list[_Result]:
    return [_run_item(item) for item in task]


def _isolate(task: list[SourceItem], setup: _WorkerSetup) -> list[_Result]:
    """Re-run each item of a task lost with a broken pool alone, in a fresh process."""
    results: list[_Result] = []
    context = multiprocessing.get_context("forkserver")
    for item in task:
        with cf.ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=_init_worker, initargs=(setup,)
        ) as pool:
            try:
                results.append(pool.submit(_run_item, item).result())
            except cf.process.BrokenProcessPool:
                results.append(_crashed(item))
    return results


__all__ = ["TASK_ITEMS", "IngestService"]

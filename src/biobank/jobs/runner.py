"""Run pending jobs on an executor and record what became of each."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from biobank.catalog.jobs import JobRecord, JobRecords, JobState
from biobank.errors import BiobankError, InvalidInput
from biobank.jobs.executor import Executor, Waitable
from biobank.jobs.handlers import JobContext

logger = logging.getLogger(__name__)

Handler = Callable[[JobContext, str], dict[str, Any]]
"""A job handler: module-level (picklable), (context, subject) → JSON-ready result."""


@dataclass
class RunSummary:
    """What one :meth:`JobRunner.run_pending` did."""

    done: int = 0
    retried: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "done": self.done,
            "retried": self.retried,
            "failed": self.failed,
            "by_kind": self.by_kind,
        }


def _describe(exc: BaseException) -> str:
    """A PHI-free account of an error: our messages as they are, others by class only."""
    if isinstance(exc, BiobankError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (a third-party error; its message is not kept: it may quote data)"


class JobRunner:
    """Claims pending jobs, runs them on ``executor`` with ``handlers[kind]``, records results.

    Parameters
    ----------
    records
        The catalogue's job table.
    executor
        Where the handlers run (:class:`~biobank.jobs.executor.LocalExecutor` or Dask).
    handlers
        The handler of each job kind this runner takes.
    context
        Passed to every handler.
    """

    def __init__(
        self,
        records: JobRecords,
        executor: Executor,
        handlers: Mapping[str, Handler],
        context: JobContext,
    ) -> None:
        if not handlers:
            raise InvalidInput("a job runner needs at least one handler")
        self.records = records
        self.executor = executor
        self.handlers = dict(handlers)
        self.context = context
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def run_pending(self, *, limit: int | None = None) -> RunSummary:
        """Run pending jobs until none is left (or ``limit`` were run); see RunSummary.

        A sliding window: about twice as many jobs as the executor runs at once are in
        flight; each finished job is recorded as soon as it finishes and makes room for the
        next claim, so a slow job never holds the others back (claims come a few at a time).
        """
        summary = RunSummary()
        window = max(2, self.executor.parallelism * 2)
        finished: queue.SimpleQueue[tuple[JobRecord, Waitable]] = queue.SimpleQueue()
        in_flight = 0
        ran = 0
        exhausted = False
        while True:
            room = window - in_flight
            if limit is not None:
                room = min(room, limit - ran)
            if not exhausted and room >= max(1, window // 2):
                claimed = self.records.claim(self.worker, limit=room, kinds=list(self.handlers))
                exhausted = len(claimed) < room
                for job in claimed:
                    future = self.executor.submit(
                        self.handlers[job.kind], self.context, job.subject
                    )
                    future.add_done_callback(
                        lambda done, job=job: finished.put((job, done))  # type: ignore[misc]
                    )
                in_flight += len(claimed)
                ran += len(claimed)
                if limit is not None and ran >= limit:
                    exhausted = True
            if in_flight == 0:
                break
            job, future = finished.get()
            in_flight -= 1
            self._collect(job, future, summary)
        return summary

    def _collect(self, job: JobRecord, future: Waitable, summary: RunSummary) -> None:
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, never lost
            state = self.records.fail(job.id, _describe(exc))
            logger.warning(
                "job %d (%s) failed, attempt %d: %s",
                job.id,
                job.kind,
                job.attempts,
                type(exc).__name__,
            )
            if state is JobState.FAILED:
                summary.failed += 1
            else:
                summary.retried += 1
            return
        self.records.finish(job.id, result)
        summary.done += 1
        summary.by_kind[job.kind] = summary.by_kind.get(job.kind, 0) + 1


class BackgroundJobs:
    """Runs pending jobs on a thread of its own until stopped (``biobank serve`` uses it).

    It polls the job table every ``interval`` seconds when idle and goes on at once while
    there is work; an error (a catalogue that does not answer) is logged and retried.
    """

    def __init__(self, runner: JobRunner, *, interval: float = 2.0) -> None:
        self.runner = runner
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="biobank-jobs", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the jobs in hand (they are recorded), and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        batch = max(1, self.runner.executor.parallelism * 4)
        while not self._stop.is_set():
            try:
                summary = self.runner.run_pending(limit=batch)
            except Exception as exc:  # noqa: BLE001 - logged, then tried again
                logger.warning("background jobs: %s; trying again", type(exc).__name__)
                summary = RunSummary()
            busy = summary.done + summary.retried + summary.failed
            if not busy:
                self._stop.wait(self.interval)


__all__ = ["BackgroundJobs", "Handler", "JobRunner", "RunSummary"]

"""Job records: background work (classify a series, measure its quality…) and its state.

One row per (kind, subject). :meth:`JobRecords.enqueue` creates a job or puts a finished one
back to ``pending`` (a series that received new instances is classified again);
:meth:`JobRecords.claim` hands pending jobs to one runner at a time (the claim is one
transaction on the write lock, so two runners never take the same job); a job that fails is
retried until ``max_attempts``, then stays ``failed`` with its last error until
:meth:`JobRecords.retry`. A runner that died leaves ``running`` jobs behind:
:meth:`JobRecords.release_stale` puts them back.
"""

from __future__ import annotations

import datetime
import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, func, insert, select, update

from biobank.catalog.recording import chunked
from biobank.catalog.repository import Catalog
from biobank.catalog.schema import JOB
from biobank.errors import InvalidInput, NotFound

MAX_ERROR = 2000
"""Characters of an error message kept (the rest is cut)."""


class JobState(enum.StrEnum):
    """Where a job is."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class JobRecord:
    """One job as stored."""

    id: int
    kind: str
    subject: str
    state: JobState
    attempts: int
    max_attempts: int
    worker: str | None
    error: str | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None
    result: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``biobank jobs --json``)."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "state": self.state.value,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "worker": self.worker,
            "error": self.error,
            "result": self.result,
        }
        for name in ("created_at", "updated_at", "started_at", "finished_at"):
            value = getattr(self, name)
            out[name] = value.isoformat(timespec="seconds") if value else None
        return out


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _record(row: RowMapping) -> JobRecord:
    result = row["result"]
    return JobRecord(
        id=row["id"],
        kind=row["kind"],
        subject=row["subject"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        worker=row["worker"],
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=json.loads(result) if result else None,
    )


class JobRecords:
    """The job table of a catalogue (see the module docstring)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def enqueue(self, kind: str, subjects: Iterable[str], *, max_attempts: int = 3) -> int:
        """Make a pending job of ``kind`` for every subject; return how many became pending.

        A subject already pending or running is left alone; a done or failed one is reset
        (attempts to 0).
        """
        if not kind or len(kind) > 32:
            raise InvalidInput(f"job kind {kind!r}: give 1 to 32 characters")
        if max_attempts < 1:
            raise InvalidInput("max_attempts must be at least 1")
        wanted = list(dict.fromkeys(subjects))
        changed = 0
        now = _now()
        with self.catalog._writing(f"enqueueing {kind} jobs") as conn:
            for chunk in chunked(wanted):
                existing = dict(
                    conn.execute(
                        select(JOB.c.subject, JOB.c.state).where(
                            JOB.c.kind == kind, JOB.c.subject.in_(chunk)
                        )
                    ).all()
                )
                fresh = [s for s in chunk if s not in existing]
                if fresh:
                    conn.execute(
                        insert(JOB),
                        [
                            {
                                "kind": kind,
                                "subject": subject,
                                "state": JobState.PENDING.value,
                                "attempts": 0,
                                "max_attempts": max_attempts,
                                "created_at": now,
                                "updated_at": now,
                            }
                            for subject in fresh
                        ],
                    )
                finished = [
                    s
                    for s, state in existing.items()
                    if state in (JobState.DONE.value, JobState.FAILED.value)
                ]
                if finished:
                    conn.execute(
                        update(JOB)
                        .where(JOB.c.kind == kind, JOB.c.subject.in_(finished))
                        .values(
                            state=JobState.PENDING.value,
                            attempts=0,
                            max_attempts=max_attempts,
                            error=None,
                            worker=None,
                            updated_at=now,
                        )
                    )
                changed += len(fresh) + len(finished)
        return changed

    def claim(self, worker: str, *, limit: int = 16, kinds: Sequence[str] = ()) -> list[JobRecord]:
        """Take up to ``limit`` pending jobs (oldest first) for ``worker``: they are running."""
        now = _now()
        with self.catalog._writing("claiming jobs") as conn:
            stmt = select(JOB.c.id).where(JOB.c.state == JobState.PENDING.value)
            if kinds:
                stmt = stmt.where(JOB.c.kind.in_(list(kinds)))
            stmt = stmt.order_by(JOB.c.id).limit(limit)
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            ids = list(conn.execute(stmt).scalars())
            if not ids:
                return []
            conn.execute(
                update(JOB)
                .where(JOB.c.id.in_(ids))
                .values(
                    state=JobState.RUNNING.value,
                    attempts=JOB.c.attempts + 1,
                    worker=worker[:128],
                    started_at=now,
                    updated_at=now,
                )
            )
            return self._by_ids(conn, ids)

    def finish(self, job_id: int, result: dict[str, Any]) -> None:
        """Record a job's success and its result (JSON)."""
        now = _now()
        self._set(
            job_id,
            {
                "state": JobState.DONE.value,
                "result": json.dumps(result, separators=(",", ":")),
                "error": None,
                "finished_at": now,
                "updated_at": now,
            },
            "finishing",
        )

    def fail(self, job_id: int, error: str) -> JobState:
        """Record a failure: back to pending while attempts remain, else failed."""
        now = _now()
        with self.catalog._writing(f"failing job {job_id}") as conn:
            row = conn.execute(
                select(JOB.c.attempts, JOB.c.max_attempts).where(JOB.c.id == job_id)
            ).first()
            if row is None:
                raise NotFound(f"no job {job_id}")
            state = JobState.PENDING if row.attempts < row.max_attempts else JobState.FAILED
            conn.execute(
                update(JOB)
                .where(JOB.c.id == job_id)
                .values(
                    state=state.value,
                    error=error[:MAX_ERROR],
                    finished_at=now if state is JobState.FAILED else None,
                    updated_at=now,
                )
            )
        return state

    def retry(self, job_ids: Sequence[int] = ()) -> int:
        """Put failed jobs (these, or every failed one) back to pending with fresh attempts."""
        condition = JOB.c.state == JobState.FAILED.value
        if job_ids:
            condition = and_(condition, JOB.c.id.in_(list(job_ids)))
        with self.catalog._writing("retrying jobs") as conn:
            result = conn.execute(
                update(JOB)
                .where(condition)
                .values(state=JobState.PENDING.value, attempts=0, error=None, updated_at=_now())
            )
        return int(result.rowcount or 0)

    def release_stale(self, alive: Iterable[str]) -> int:
        """Put back to pending the running jobs of workers not in ``alive`` (they died)."""
        keep = list(alive)
        condition = JOB.c.state == JobState.RUNNING.value
        if keep:
            condition = and_(condition, JOB.c.worker.not_in(keep))
        with self.catalog._writing("releasing stale jobs") as conn:
            result = conn.execute(
                update(JOB).where(condition).values(state=JobState.PENDING.value, updated_at=_now())
            )
        return int(result.rowcount or 0)

    def get(self, job_id: int) -> JobRecord:
        """One job."""
        with self.catalog._reading(f"reading job {job_id}") as conn:
            found = self._by_ids(conn, [job_id])
        if not found:
            raise NotFound(f"no job {job_id}")
        return found[0]

    def find(
        self,
        *,
        state: JobState | None = None,
        kind: str | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs matching the filters, newest first."""
        stmt = select(JOB)
        if state is not None:
            stmt = stmt.where(JOB.c.state == state.value)
        if kind is not None:
            stmt = stmt.where(JOB.c.kind == kind)
        if subject is not None:
            stmt = stmt.where(JOB.c.subject == subject)
        stmt = stmt.order_by(JOB.c.id.desc()).limit(limit)
        with self.catalog._reading("listing jobs") as conn:
            return [_record(row) for row in conn.execute(stmt).mappings()]

    def counts(self) -> dict[str, int]:
        """Jobs per state."""
        stmt = select(JOB.c.state, func.count()).group_by(JOB.c.state)
        with self.catalog._reading("counting jobs") as conn:
            found = {str(state): int(n) for state, n in conn.execute(stmt).all()}
        return {state.value: found.get(state.value, 0) for state in JobState}

    def _set(self, job_id: int, values: dict[str, Any], doing: str) -> None:
        with self.catalog._writing(f"{doing} job {job_id}") as conn:
            result = conn.execute(update(JOB).where(JOB.c.id == job_id).values(values))
        if not result.rowcount:
            raise NotFound(f"no job {job_id}")

    @staticmethod
    def _by_ids(conn: Connection, ids: Sequence[int]) -> list[JobRecord]:
        rows = conn.execute(select(JOB).where(JOB.c.id.in_(ids)).order_by(JOB.c.id)).mappings()
        return [_record(row) for row in rows]


__all__ = ["MAX_ERROR", "JobRecord", "JobRecords", "JobState"]

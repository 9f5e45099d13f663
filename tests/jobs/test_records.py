"""The job table on SQLite and PostgreSQL: enqueue, claim, finish, fail, retry, stale."""

from __future__ import annotations

import threading

import pytest

from biobank.catalog import Catalog
from biobank.catalog.jobs import JobRecords, JobState
from biobank.errors import InvalidInput, NotFound


class TestJobRecords:
    def test_enqueue_claim_finish(self, catalog: Catalog) -> None:
        records = JobRecords(catalog)
        assert records.enqueue("verify-series", ["s1", "s2", "s1"]) == 2
        assert records.enqueue("verify-series", ["s1"]) == 0  # pending: left alone
        (first,) = records.claim("w1", limit=1)
        assert (first.subject, first.state, first.attempts, first.worker) == (
            "s1",
            JobState.RUNNING,
            1,
            "w1",
        )
        records.finish(first.id, {"instances": 3})
        done = records.get(first.id)
        assert done.state is JobState.DONE and done.result == {"instances": 3}
        assert records.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 0}
        assert records.enqueue("verify-series", ["s1"]) == 1  # done: queued again
        assert records.get(first.id).state is JobState.PENDING

    def test_failures_are_retried_then_kept_failed(self, catalog: Catalog) -> None:
        records = JobRecords(catalog)
        records.enqueue("qc", ["s1"], max_attempts=2)
        (job,) = records.claim("w")
        assert records.fail(job.id, "NotFound: boom") is JobState.PENDING
        (job,) = records.claim("w")
        assert job.attempts == 2
        assert records.fail(job.id, "NotFound: boom again") is JobState.FAILED
        assert records.claim("w") == []
        failed = records.find(state=JobState.FAILED)
        assert [j.error for j in failed] == ["NotFound: boom again"]
        assert records.retry() == 1
        (again,) = records.claim("w")
        assert again.attempts == 1 and again.error is None

    def test_claims_are_exclusive(self, catalog: Catalog) -> None:
        records = JobRecords(catalog)
        records.enqueue("k", [f"s{n}" for n in range(40)])
        taken: list[list[int]] = []

        def take(worker: str) -> None:
            mine: list[int] = []
            while batch := records.claim(worker, limit=3):
                mine += [job.id for job in batch]
            taken.append(mine)

        threads = [threading.Thread(target=take, args=(f"w{n}",)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = [job_id for mine in taken for job_id in mine]
        assert len(every) == 40 and len(set(every)) == 40

    def test_stale_running_jobs_are_released(self, catalog: Catalog) -> None:
        records = JobRecords(catalog)
        records.enqueue("k", ["a", "b"])
        records.claim("dead", limit=1)
        records.claim("alive", limit=1)
        assert records.release_stale(["alive"]) == 1
        assert {j.subject: j.state for j in records.find()} == {
            "a": JobState.PENDING,
            "b": JobState.RUNNING,
        }

    def test_filters_and_bad_input(self, catalog: Catalog) -> None:
        records = JobRecords(catalog)
        records.enqueue("a", ["x"])
        records.enqueue("b", ["x", "y"])
        assert [j.subject for j in records.find(kind="b")] == ["y", "x"]
        assert [j.kind for j in records.find(subject="x")] == ["b", "a"]
        assert [j.kind for j in records.claim("w", kinds=["b"], limit=9)] == ["b", "b"]
        with pytest.raises(InvalidInput):
            records.enqueue("", ["x"])
        with pytest.raises(NotFound):
            records.get(999)
        with pytest.raises(NotFound):
            records.fail(999, "x")

"""AccessLogWriter: batched, off the request path, never failing the caller."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pytest

from biobank.access import AccessLogWriter, Principal, Role
from biobank.access.audit import DROPPED_ACTION, clean
from biobank.catalog import Catalog
from biobank.catalog.access import AccessEvent, AccessRecords
from biobank.errors import StorageError

ALICE = Principal(7, "alice", Role.UPLOADER, "token")
TOKEN = "bb_0123456789abcdef_" + "ab" * 32


class FlakySink:
    """Fails the first ``failures`` writes, then keeps what it is given."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.batches: list[list[AccessEvent]] = []
        self.lock = threading.Lock()

    def append_access_entries(self, events: Sequence[AccessEvent]) -> None:
        with self.lock:
            if self.failures:
                self.failures -= 1
                raise StorageError("catalogue x: appending failed (OperationalError); retry")
            self.batches.append(list(events))

    @property
    def events(self) -> list[AccessEvent]:
        return [event for batch in self.batches for event in batch]


def test_entries_reach_the_database_in_order_and_chained(log_catalog: Catalog) -> None:
    with AccessLogWriter(log_catalog) as writer:
        for n in range(300):
            writer.record(ALICE, "wado.retrieve", f"1.2.3.{n}", 200, "10.0.0.7")
        writer.record(None, "qido.search", "/studies", 401, None, detail="no credentials")
        assert writer.flush()
        assert writer.pending == 0 and writer.written == 301
    records = AccessRecords(log_catalog)
    entries = list(records.iter_access_entries())
    assert [e.resource for e in entries[:300]] == [f"1.2.3.{n}" for n in range(300)]
    assert (entries[0].username, entries[0].role, entries[0].client) == (
        "alice",
        "uploader",
        "10.0.0.7",
    )
    assert (entries[-1].username, entries[-1].status, entries[-1].detail) == (
        None,
        401,
        "no credentials",
    )
    assert records.verify_access_chain() is None


def test_batches_are_bounded_in_size_and_delay() -> None:
    sink = FlakySink()
    with AccessLogWriter(sink, max_batch=10, max_delay=0.02) as writer:
        for n in range(35):
            writer.record(ALICE, "a", str(n), 200, None)
        writer.flush()
        assert max(len(batch) for batch in sink.batches) <= 10
        writer.record(ALICE, "a", "late", 200, None)
        deadline = time.monotonic() + 2
        while len(sink.events) < 36 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert sink.events[-1].resource == "late"  # written without a flush, after the delay


def test_recording_never_waits_for_the_database() -> None:
    gate = threading.Event()

    class Stuck(FlakySink):
        def append_access_entries(self, events: Sequence[AccessEvent]) -> None:
            gate.wait(30)  # a database that does not answer
            super().append_access_entries(events)

    sink = Stuck()
    writer = AccessLogWriter(sink)
    caller = threading.Thread(
        target=lambda: [
            writer.record(ALICE, "wado.retrieve", f"1.2.3.{n}", 200, "10.0.0.7")
            for n in range(5000)
        ]
    )
    caller.start()
    caller.join(timeout=20)
    recorded_while_stuck = not caller.is_alive()
    gate.set()
    writer.close()
    assert recorded_while_stuck  # the request path went on while the writer was blocked
    assert len(sink.events) == 5000


def test_failures_are_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    sink = FlakySink(failures=3)
    with (
        caplog.at_level(logging.ERROR, logger="biobank.access.audit"),
        AccessLogWriter(sink, retry_delay=0.01) as writer,
    ):
        writer.record(ALICE, "stow.store", "1.2.3", 200, "10.0.0.7")
        assert writer.flush(timeout=5)
    assert [e.resource for e in sink.events] == ["1.2.3"]
    failures = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(failures) == 3
    assert all("1.2.3" not in r.getMessage() for r in caplog.records)


def test_unexpected_errors_never_reach_the_caller(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __init__(self) -> None:
            self.calls = 0

        def append_access_entries(self, events: Sequence[AccessEvent]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("driver said something with a value in it")

    sink = Broken()
    with (
        caplog.at_level(logging.ERROR, logger="biobank.access.audit"),
        AccessLogWriter(sink, retry_delay=0.01) as writer,
    ):
        writer.record(ALICE, "a", "r", 200, None)
        writer.record(ALICE, "a", "r", "not a status", None)  # type: ignore[arg-type]
        assert writer.flush(timeout=5)
    assert sink.calls == 2
    text = caplog.text
    assert "RuntimeError" in text and "value in it" not in text
    assert "could not queue" in text


def test_a_full_queue_drops_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    gate = threading.Event()

    class Slow(FlakySink):
        def append_access_entries(self, events: Sequence[AccessEvent]) -> None:
            gate.wait(5)
            super().append_access_entries(events)

    sink = Slow()
    with caplog.at_level(logging.ERROR, logger="biobank.access.audit"):
        writer = AccessLogWriter(sink, max_pending=5, max_batch=1, max_delay=0)
        for n in range(20):
            writer.record(ALICE, "a", str(n), 200, None)
        # (writer.dropped is not checked here: the thread may already have taken the count
        # into the entry it is writing; the marker written at the end is what must hold it.)
        gate.set()
        writer.close()
    kept = [e for e in sink.events if e.action != DROPPED_ACTION]
    marker = [e for e in sink.events if e.action == DROPPED_ACTION]
    dropped = sum(int(m.detail.split()[0]) for m in marker)  # one marker per write that saw drops
    assert dropped > 0 and len(kept) + dropped == 20
    assert "dropped" in caplog.text


def test_close_drains_and_later_records_are_dropped() -> None:
    sink = FlakySink()
    writer = AccessLogWriter(sink, max_delay=10)
    for n in range(10):
        writer.record(ALICE, "a", str(n), 200, None)
    writer.close()
    assert len(sink.events) == 10
    writer.record(ALICE, "a", "after", 200, None)  # no exception
    assert writer.dropped == 1
    writer.close()  # idempotent
    assert writer.flush(timeout=1) is True


def test_close_gives_up_on_a_dead_database(caplog: pytest.LogCaptureFixture) -> None:
    sink = FlakySink(failures=10_000)
    with caplog.at_level(logging.ERROR, logger="biobank.access.audit"):
        writer = AccessLogWriter(sink, retry_delay=0.01, max_retry_delay=0.05)
        writer.record(ALICE, "a", "r", 200, None)
        start = time.monotonic()
        writer.close(timeout=0.2)
    assert time.monotonic() - start < 15  # close() honours its timeout instead of hanging
    assert "they are lost" in caplog.text


def test_values_are_cleaned_of_tokens_and_nul() -> None:
    jwt_like = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert clean(f"/studies?access_token={TOKEN}") == (
        "/studies?access_token=bb_0123456789abcdef_[redacted]"
    )
    assert clean(f"Bearer {jwt_like}") == "Bearer [redacted]"
    assert clean("a\x00b") == "a\ufffdb"
    assert clean("x" * 100, 64) == "x" * 64
    sink = FlakySink()
    with AccessLogWriter(sink) as writer:
        writer.record(ALICE, "a" * 100, f"1.2.3 {TOKEN}", 200, "c" * 100, detail=jwt_like)
        writer.flush()
    (entry,) = sink.events
    assert len(entry.action) == 64 and entry.client == "c" * 64
    assert "ab" * 32 not in entry.resource and entry.detail == "[redacted]"

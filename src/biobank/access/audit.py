"""Recording requests in the access log without slowing them: :class:`AccessLogWriter`.

:meth:`AccessLogWriter.record` stamps the time, cleans the values and puts the entry on a
queue (a few microseconds); a background thread appends the queued entries in batches — when
:data:`MAX_BATCH` are waiting or :data:`MAX_DELAY` after the first of a batch arrived — in
one transaction each (:meth:`biobank.catalog.access.AccessRecords.append_access_entries`,
which continues the hash chain).

When writing fails (the database is down) the batch is retried with a growing pause and the
failure is logged (the exception's type and our own message only: no entry values); new
entries wait in the queue. Beyond ``max_pending`` waiting entries, new ones are dropped and
counted, and an ``access_log.dropped`` entry saying how many is written once the database is
back. Nothing here ever raises into the request that records.

Values are cleaned before they are queued: NUL characters replaced, ``action`` and
``client`` cut to their columns' 64 characters, and anything that looks like an API token
(its secret) or a JWT replaced by ``[redacted]`` — a token must never reach the log.
"""

from __future__ import annotations

import datetime
import logging
import queue
import re
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from biobank.access.models import Principal
from biobank.catalog.access import AccessEvent, AccessRecords
from biobank.catalog.repository import Catalog
from biobank.errors import BiobankError, InvalidInput

logger = logging.getLogger(__name__)

MAX_BATCH = 256
"""At most this many entries are appended per transaction."""
MAX_DELAY = 0.05
"""Seconds an entry may wait for its batch to fill before the batch is written."""
MAX_PENDING = 100_000
"""Entries waiting beyond this are dropped (and counted) rather than filling the memory."""
RETRY_DELAY = 0.1
"""Seconds before the first retry of a failed write (doubling up to :data:`MAX_RETRY_DELAY`)."""
MAX_RETRY_DELAY = 5.0
"""The longest pause between two retries."""
DROPPED_ACTION = "access_log.dropped"
"""The action of the entry recording how many entries were dropped."""

_API_TOKEN = re.compile(r"(bb_[0-9a-f]{16}_)[0-9a-f]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_STOP = object()


class AccessLogSink(Protocol):
    """Where :class:`AccessLogWriter` appends (an :class:`AccessRecords`, or a test double)."""

    def append_access_entries(self, events: Sequence[AccessEvent]) -> object:
        """Append ``events`` in order, in one transaction."""


def clean(value: str, limit: int | None = None) -> str:
    """``value`` fit for the access log: no NUL, no token, at most ``limit`` characters."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if "bb_" in value:
        value = _API_TOKEN.sub(r"\1[redacted]", value)
    if "eyJ" in value:
        value = _JWT.sub("[redacted]", value)
    if limit is not None and len(value) > limit:
        value = value[:limit]
    return value


def _describe(exc: BaseException) -> str:
    """What failed, safe to log: our messages carry no PHI, others' may, so only their type."""
    if isinstance(exc, BiobankError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


class AccessLogWriter:
    """Append access log entries from a background thread, in batches.

    Parameters
    ----------
    target
        The catalogue (its :class:`AccessRecords` is used) or any :class:`AccessLogSink`.
    max_batch, max_delay
        A batch is written when it holds ``max_batch`` entries or ``max_delay`` seconds
        after its first entry arrived.
    max_pending
        At most this many entries wait; more are dropped and counted (see the module doc).
    retry_delay, max_retry_delay
        The pause before the first retry of a failed write, and the longest pause.

    Use it as a context manager, or call :meth:`close` at shutdown: entries still queued are
    written then.
    """

    def __init__(
        self,
        target: Catalog | AccessLogSink,
        *,
        max_batch: int = MAX_BATCH,
        max_delay: float = MAX_DELAY,
        max_pending: int = MAX_PENDING,
        retry_delay: float = RETRY_DELAY,
        max_retry_delay: float = MAX_RETRY_DELAY,
    ) -> None:
        if max_batch < 1 or max_delay < 0 or max_pending < 1:
            raise InvalidInput(
                "AccessLogWriter: max_batch and max_pending must be at least 1 and max_delay "
                "at least 0"
            )
        self._sink: AccessLogSink = AccessRecords(target) if isinstance(target, Catalog) else target
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_pending = max_pending
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._dropped = 0
        self._written = 0
        self._closed = False
        self._give_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="biobank-access-log", daemon=True)
        self._thread.start()

    # -- the caller's side -----------------------------------------------------------------

    def record(
        self,
        principal: Principal | None,
        action: str,
        resource: str,
        status: int,
        client: str | None,
        detail: str = "",
    ) -> None:
        """Queue one entry (never raises; costs a few microseconds).

        Parameters
        ----------
        principal
            Who made the request; None if it did not authenticate.
        action
            What, e.g. ``"wado.retrieve"`` (cut to 64 characters).
        resource
            On what: DICOM UIDs or a path — de-identified values only, never a token.
        status
            The outcome (an HTTP status, or a DIMSE status).
        client
            The client's address (cut to 64 characters), if known.
        detail
            Anything else worth keeping, without PHI.
        """
        try:
            event = AccessEvent(
                at=datetime.datetime.now(datetime.UTC),
                username=principal.username if principal is not None else None,
                role=principal.role.value if principal is not None else None,
                action=clean(action, 64),
                resource=clean(resource),
                status=int(status),
                client=clean(client, 64) if client else None,
                detail=clean(detail),
            )
            with self._lock:
                if self._closed or self._pending >= self._max_pending:
                    self._dropped += 1
                    first = self._dropped == 1
                else:
                    self._pending += 1
                    self._queue.put(event)
                    return
            if first:
                logger.error(
                    "access log: an entry was dropped (%s); more may follow, they are counted",
                    "the writer is closed" if self._closed else "too many entries are waiting",
                )
        except Exception as exc:  # noqa: BLE001 - recording must never fail the request
            logger.error("access log: could not queue an entry (%s)", _describe(exc))

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every entry recorded before this call is written (or ``timeout``).

        Returns
        -------
        bool
            True if they were written in time.
        """
        if self._closed or not self._thread.is_alive():
            self._thread.join(timeout)
            return self.pending == 0
        marker = threading.Event()
        self._queue.put(marker)
        return marker.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the thread.

        Waits up to ``timeout`` seconds for the database; entries still unwritten then are
        given up (and logged as lost). Entries recorded after closing are dropped.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._give_up.set()
            self._thread.join(max(self._max_retry_delay, 1.0))

    def __enter__(self) -> AccessLogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Entries recorded and not written yet."""
        return self._pending

    @property
    def dropped(self) -> int:
        """Entries dropped (queue full, or recorded after closing) and not yet accounted for."""
        return self._dropped

    @property
    def written(self) -> int:
        """Entries written so far."""
        return self._written

    # -- the thread's side -----------------------------------------------------------------

    def _run(self) -> None:
        batch: list[AccessEvent] = []
        deadline = 0.0
        while True:
            timeout = None if not batch else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, AccessEvent):
                if not batch:
                    deadline = time.monotonic() + self._max_delay
                batch.append(item)
                if len(batch) < self._max_batch and time.monotonic() < deadline:
                    continue
            self._write(batch)
            batch = []
            if isinstance(item, threading.Event):
                item.set()
            elif item is _STOP:
                return

    def _write(self, batch: list[AccessEvent]) -> None:
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if not batch and not dropped:
            return
        events = list(batch)
        if dropped:
            events.append(
                AccessEvent(
                    at=datetime.datetime.now(datetime.UTC),
                    username=None,
                    role=None,
                    action=DROPPED_ACTION,
                    resource="access_log",
                    status=503,
                    detail=f"{dropped} entries were dropped: too many waited while the "
                    "database was unavailable, or they came after the writer closed",
                )
            )
        delay = self._retry_delay
        while True:
            try:
                self._sink.append_access_entries(events)
            except InvalidInput as exc:  # never happens after clean(); retrying cannot help
                logger.error(
                    "access log: %d entries refused and dropped (%s)", len(batch), _describe(exc)
                )
            except Exception as exc:  # noqa: BLE001 - logged and retried; the thread must live
                if self._give_up.is_set():
                    logger.error(
                        "access log: %d entries could not be written before closing (%s); "
                        "they are lost",
                        len(batch),
                        _describe(exc),
                    )
                else:
                    logger.error(
                        "access log: writing %d entries failed (%s); retrying in %.1f s",
                        len(events),
                        _describe(exc),
                        delay,
                    )
                    self._give_up.wait(delay)
                    delay = min(delay * 2, self._max_retry_delay)
                    continue
            else:
                self._written += len(batch)
            break
        with self._lock:
            self._pending -= len(batch)


__all__ = [
    "DROPPED_ACTION",
    "MAX_BATCH",
    "MAX_DELAY",
    "MAX_PENDING",
    "AccessLogSink",
    "AccessLogWriter",
    "clean",
]

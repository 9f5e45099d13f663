"""Push the de-identified studies of this node to another node over DICOMweb STOW-RS.

For each study, in order:

1. list the study's instances in the local catalogue;
2. ask the destination which of them it already holds (QIDO-RS
   ``GET {url}/studies/{study}/instances?includefield=00080018``, paged with ``limit`` and
   ``offset``), so a push that was interrupted resumes without trusting local state alone;
3. send only the missing instances, byte for byte as stored (``store.get(digest)``), in
   batches of at most ``batch_instances`` instances or ``batch_bytes`` bytes per STOW-RS
   request (``POST {url}/studies``);
4. reconcile: QIDO-RS the destination's study (``/studies?StudyInstanceUID=``) and its series
   and compare NumberOfStudyRelatedInstances and each NumberOfSeriesRelatedInstances with
   the local catalogue;
5. when they agree, append one line to the push journal
   (``<home>/push/<destination key>.jsonl``): later runs skip that study without asking the
   destination, as long as the local study still has the same instances and bytes.

Connection errors, timeouts, 408, 429 and 5xx answers are retried with exponential backoff
(``Retry-After`` is honoured); before a STOW-RS request is sent again, the destination is
asked again what it holds, so an instance it already has is never sent twice. A refused
token (401/403) or a destination that stays unreachable stops the push
(:attr:`PushReport.stopped`); an instance the destination refuses (STOW-RS 202/409 with
FailedSOPSequence) is reported with the destination's reason and the push goes on with the
other studies.

The destination must store what it receives as is (a central node, or a PACS): a node that
changes the UIDs (a site node de-identifies again) is detected and reported.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from biobank.catalog import Catalog, InstanceSummary, StudySummary
from biobank.dicom.multipart import encode_multipart, multipart_content_type, new_boundary
from biobank.errors import BiobankError
from biobank.federation.journal import JournalEntry, PushJournal
from biobank.federation.models import (
    BatchHook,
    Destination,
    FailedInstance,
    ProgressCallback,
    PushOptions,
    PushProgress,
    PushReport,
    StudyPush,
    StudyState,
)
from biobank.ingest.node import Node
from biobank.store.blobs import FileBlobStore

logger = logging.getLogger(__name__)

#: Statuses worth another attempt besides every 5xx: Request Timeout, Too Many Requests.
RETRYABLE_STATUS = frozenset({408, 429})
DICOM_JSON = "application/dicom+json"
#: DICOM JSON keys (PS3.18 F.2) the push reads.
_SOP_INSTANCE_UID = "00080018"
_STUDY_UID = "0020000D"
_SERIES_UID = "0020000E"
_STUDY_INSTANCES = "00201208"
_SERIES_INSTANCES = "00201209"
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_SEQUENCE = "00081199"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_REASON_WORDS = "00091001"  # a biobank node's private element: the reason in words
#: FailureReason codes (PS3.4 Annex GG, PS3.18 Table 10.5.3-3) for destinations without words.
FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xA700: "out of resources",
    0xA900: "data set does not match SOP class (or the study of the request)",
    0xC000: "cannot understand",
    0xC122: "referenced transfer syntax not supported",
}


# --- HTTP ----------------------------------------------------------------------------------


class _Stop(Exception):  # noqa: N818 - internal: ends the run with a message
    """The push cannot go on (token refused, destination unreachable)."""


class _Rejected(Exception):  # noqa: N818 - internal: this request will never succeed
    """A 4xx answer other than 401/403/408/429: the study fails, the push goes on."""


def _value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") if isinstance(item, dict) else None
    return values[0] if isinstance(values, list) and values else None


def _message(response: httpx.Response) -> str:
    """The destination's own words about an error, short (its JSON ``error`` or text)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text
    else:  # a biobank node says "error", Orthanc "Message"; DICOM JSON says nothing useful
        found = body.get("error") or body.get("Message") if isinstance(body, dict) else None
        text = str(found) if found else "no reason given"
    text = " ".join(text.split()) or "no reason given"
    return text[:300] + ("…" if len(text) > 300 else "")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def batches(
    instances: Sequence[InstanceSummary], max_instances: int, max_bytes: int
) -> Iterator[list[InstanceSummary]]:
    """Split ``instances`` in order into groups of at most ``max_instances`` and ``max_bytes``.

    An instance larger than ``max_bytes`` is a group of its own.
    """
    group: list[InstanceSummary] = []
    size = 0
    for instance in instances:
        if group and (len(group) >= max_instances or size + instance.blob_size > max_bytes):
            yield group
            group, size = [], 0
        group.append(instance)
        size += instance.blob_size
    if group:
        yield group


class Pusher:
    """Pushes studies of one catalogue and store to one destination (see the module doc).

    Parameters
    ----------
    catalog, store
        The local catalogue and blob store (read only).
    destination
        Where to push.
    client
        An ``httpx.Client`` carrying the destination's token; tests pass one with a mock or
        counting transport.
    journal
        The destination's journal.
    options
        Batching and retries.
    progress
        Called after every batch and study.
    after_batch
        Called after every acknowledged batch (a fault-injection seam for tests).
    sleep
        How to wait between tries (tests pass a recorder).
    """

    def __init__(
        self,
        catalog: Catalog,
        store: FileBlobStore,
        destination: Destination,
        client: httpx.Client,
        journal: PushJournal,
        options: PushOptions,
        *,
        progress: ProgressCallback | None = None,
        after_batch: BatchHook | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.destination = destination
        self.client = client
        self.journal = journal
        self.options = options
        self.progress = progress
        self.after_batch = after_batch
        self.sleep = sleep
        self._done = [0, 0, 0]  # studies, instances, bytes
        self._totals = (0, 0)

    # -- the run -------------------------------------------------------------------------

    def run(self, studies: Sequence[str] | None = None) -> PushReport:
        """Push ``studies`` (UIDs), or every study of the catalogue when None."""
        started = time.monotonic()
        report = PushReport(self.destination.url)
        plan: list[tuple[str, StudySummary | None]] = (
            [(s.study_instance_uid, s) for s in self._all_studies()]
            if studies is None
            else [(uid, self._study(uid)) for uid in dict.fromkeys(studies)]
        )
        self._totals = (len(plan), sum(s.number_of_instances for _, s in plan if s))
        self._done = [0, 0, 0]
        self._report_progress()
        report.studies = [StudyPush(uid, s.number_of_instances if s else 0) for uid, s in plan]
        outcome: StudyPush | None = None
        try:
            for (uid, summary), outcome in zip(plan, report.studies, strict=True):
                if summary is None:
                    outcome.state = StudyState.FAILED
                    outcome.problems.append(
                        f"study {uid} is not in this node's catalogue; check the UID with "
                        "biobank ls studies"
                    )
                elif not self.options.recheck and self.journal.is_verified(summary):
                    outcome.state = StudyState.SKIPPED
                    outcome.already_present = summary.number_of_instances
                    self._done[1] += summary.number_of_instances
                else:
                    self._push_study(summary, outcome)
                self._done[0] += 1
                self._report_progress()
        except _Stop as stop:
            report.stopped = str(stop)
            if outcome is not None:  # the study it stopped in
                outcome.state = StudyState.FAILED
                outcome.problems.append(str(stop))
            logger.info("push to %s stopped: %s", self.destination.key, stop)
        report.seconds = time.monotonic() - started
        return report

    def _all_studies(self) -> Iterator[StudySummary]:
        offset, page = 0, 1000
        while True:
            found = self.catalog.find_studies(limit=page, offset=offset)
            yield from found
            if len(found) < page:
                return
            offset += page

    def _study(self, uid: str) -> StudySummary | None:
        found = self.catalog.find_studies(study_instance_uid=uid, limit=1)
        return found[0] if found else None

    def _local_instances(self, uid: str) -> list[InstanceSummary]:
        instances: list[InstanceSummary] = []
        page = 1000
        while True:
            found = self.catalog.find_instances(
                study_instance_uid=uid, limit=page, offset=len(instances)
            )
            instances += found
            if len(found) < page:
                return instances

    def _report_progress(self) -> None:
        if self.progress is not None:
            self.progress(
                PushProgress(
                    self._done[0], self._totals[0], self._done[1], self._totals[1], self._done[2]
                )
            )

    # -- one study --------------------------------------------------------------------------

    def _push_study(self, summary: StudySummary, outcome: StudyPush) -> None:
        uid = summary.study_instance_uid
        local = self._local_instances(uid)
        outcome.instances = len(local)
        before = self._done[1]
        try:
            present = self._present(uid, outcome)
            missing = [i for i in local if i.sop_instance_uid not in present]
            outcome.already_present = len(local) - len(missing)
            self._done[1] += outcome.already_present
            self._report_progress()
            logger.info(
                "push to %s: study %s: %d instances, %d already there",
                self.destination.key,
                uid,
                len(local),
                outcome.already_present,
            )
            for group in batches(missing, self.options.batch_instances, self.options.batch_bytes):
                self._send(uid, group, outcome)
            self._reconcile(uid, local, outcome)
        except _Rejected as exc:
            outcome.problems.append(str(exc))
        self._done[1] = before + outcome.instances
        if outcome.failed or outcome.problems:
            outcome.state = StudyState.FAILED
            return
        self.journal.record(JournalEntry(uid, summary.number_of_instances, summary.stored_bytes))
        outcome.state = StudyState.PUSHED

    def _present(self, uid: str, outcome: StudyPush) -> set[str]:
        """The SOP Instance UIDs of study ``uid`` the destination holds (QIDO-RS, paged)."""
        found: set[str] = set()
        limit, offset = self.options.page_size, 0
        url = f"{self.destination.url}/studies/{uid}/instances"
        while True:
            params = {"includefield": _SOP_INSTANCE_UID, "limit": limit, "offset": offset}
            response = self._call("GET", url, uid, "listing its instances", outcome, params=params)
            if response.status_code in (204, 404):  # no such study there (yet)
                return found
            page = self._json_list(response, uid, "the list of its instances")
            found.update(str(v) for v in (_value(m, _SOP_INSTANCE_UID) for m in page) if v)
            if len(page) != limit:  # the last page (or the limit was ignored)
                return found
            offset += limit

    def _json_list(self, response: httpx.Response, uid: str, what: str) -> list[dict[str, Any]]:
        if not response.is_success:
            raise _Rejected(
                f"study {uid}: the destination refused {what} (HTTP {response.status_code}: "
                f"{_message(response)}); check that the URL is the DICOMweb root"
            )
        if not response.content.strip():
            return []
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, list):
            raise _Rejected(
                f"study {uid}: {what} from the destination is not a DICOM JSON array; check "
                "that the URL is the DICOMweb root (e.g. .../dicomweb)"
            )
        return [m for m in data if isinstance(m, dict)]

    # -- one batch ------------------------------------------------------------------------

    def _send(self, uid: str, group: list[InstanceSummary], outcome: StudyPush) -> None:
        body, content_type, readable = self._body(group, outcome)
        if not readable:
            return

        def refresh() -> tuple[bytes, str] | None:
            # Before sending again: the destination may have stored (part of) the batch.
            nonlocal readable
            present = self._present(uid, outcome)
            now_there = [i for i in readable if i.sop_instance_uid in present]
            outcome.already_present += len(now_there)
            self._done[1] += len(now_there)
            readable = [i for i in readable if i.sop_instance_uid not in present]
            if not readable:
                return None
            new_body, new_type, readable = self._body(readable, outcome)
            return (new_body, new_type) if readable else None

        response = self._call_or_skip(
            "POST",
            f"{self.destination.url}/studies",
            uid,
            f"sending {len(readable)} instances",
            outcome,
            content=body,
            headers={"Content-Type": content_type, "Accept": DICOM_JSON},
            refresh=refresh,
        )
        if response is None:  # everything turned out to be there already
            self._report_progress()
            return
        sent_bytes = len(response.request.content)
        self._acknowledge(uid, readable, response, outcome)
        outcome.bytes_sent += sent_bytes
        self._done[2] += sent_bytes
        self._report_progress()
        if self.after_batch is not None:
            self.after_batch(outcome)

    def _body(
        self, instances: list[InstanceSummary], outcome: StudyPush
    ) -> tuple[bytes, str, list[InstanceSummary]]:
        """The STOW-RS body of the instances whose bytes can be read, and those instances."""
        parts: list[bytes] = []
        readable: list[InstanceSummary] = []
        for instance in instances:
            try:
                parts.append(self.store.get(instance.blob_digest))
            except BiobankError as exc:
                outcome.failed.append(
                    FailedInstance(
                        instance.sop_instance_uid,
                        f"not sent: its stored bytes cannot be read here ({type(exc).__name__}); "
                        "run biobank verify on this node",
                    )
                )
                self._done[1] += 1
                continue
            readable.append(instance)
        boundary = new_boundary()
        body = b"".join(
            encode_multipart(((p, {"Content-Type": "application/dicom"}) for p in parts), boundary)
        )
        return body, multipart_content_type("application/dicom", boundary), readable

    def _acknowledge(
        self,
        uid: str,
        sent: list[InstanceSummary],
        response: httpx.Response,
        outcome: StudyPush,
    ) -> None:
        """Read a STOW-RS answer: count what was stored, record what failed and why."""
        status = response.status_code
        answer: Any = None
        if response.content.strip():
            try:
                answer = response.json()
            except ValueError:
                answer = None
        if status not in (200, 202, 409) or not isinstance(answer, dict):
            if status in (200, 202, 409):
                reason = f"the destination's answer (HTTP {status}) is not DICOM JSON"
            else:
                hint = " (send smaller batches with --batch)" if status == 413 else ""
                reason = (
                    f"the destination refused the request (HTTP {status}: "
                    f"{_message(response)}){hint}"
                )
            for instance in sent:
                outcome.failed.append(FailedInstance(instance.sop_instance_uid, reason))
            self._done[1] += len(sent)
            return
        by_uid = {i.sop_instance_uid: i for i in sent}
        referenced = answer.get(_REFERENCED_SOP_SEQUENCE, {}).get("Value") or []
        stored = {str(_value(item, _REFERENCED_SOP_INSTANCE_UID) or "") for item in referenced}
        foreign = stored - set(by_uid)
        if foreign:
            outcome.problems.append(
                f"study {uid}: the destination stored {len(foreign)} instances under other SOP "
                "Instance UIDs than those sent (it de-identifies again, like a site node); push "
                "to a node that stores data as received (a central node)"
            )
        failures = answer.get(_FAILED_SOP_SEQUENCE, {}).get("Value") or []
        anonymous: list[FailedInstance] = []
        failed_uids: set[str] = set()
        for item in failures:
            sop = str(_value(item, _REFERENCED_SOP_INSTANCE_UID) or "")
            code = _count(_value(item, _FAILURE_REASON))
            words = _value(item, _REASON_WORDS)
            reason = str(words) if words else _code_words(code)
            if sop in by_uid and sop not in stored:
                failed_uids.add(sop)
                outcome.failed.append(FailedInstance(sop, reason, code))
            else:
                anonymous.append(FailedInstance(sop, reason, code))
        acknowledged = stored & set(by_uid)
        outcome.sent += len(acknowledged)
        for instance in sent:
            sop = instance.sop_instance_uid
            if sop in acknowledged or sop in failed_uids:
                continue
            reason = (
                anonymous.pop(0).reason
                if anonymous
                else "the destination did not acknowledge it (neither stored nor failed)"
            )
            outcome.failed.append(FailedInstance(sop, reason))
        self._done[1] += len(sent)

    # -- reconciliation ---------------------------------------------------------------------

    def _reconcile(self, uid: str, local: list[InstanceSummary], outcome: StudyPush) -> None:
        """Compare the destination's study and series counts with the local ones."""
        here: dict[str, int] = {}
        for instance in local:
            here[instance.series_instance_uid] = here.get(instance.series_instance_uid, 0) + 1
        root = self.destination.url
        studies = self._json_list(
            self._call(
                "GET",
                f"{root}/studies",
                uid,
                "checking the study",
                outcome,
                params={"StudyInstanceUID": uid, "includefield": _STUDY_INSTANCES},
            ),
            uid,
            "the study's summary",
        )
        match = [s for s in studies if _value(s, _STUDY_UID) == uid]
        if not match:
            outcome.problems.append(
                f"study {uid}: the destination does not list the study after the push (0 of "
                f"its {len(local)} instances are there)"
            )
            return
        response = self._call(
            "GET",
            f"{root}/studies/{uid}/series",
            uid,
            "checking its series",
            outcome,
            params={"includefield": _SERIES_INSTANCES, "limit": self.options.page_size},
        )
        there: dict[str, int | None] = {}
        for series in self._json_list(response, uid, "the study's series"):
            count = _value(series, _SERIES_INSTANCES)
            there[str(_value(series, _SERIES_UID))] = _count(count)
        total = _count(_value(match[0], _STUDY_INSTANCES))
        if total is None:  # not reported: count what the destination lists
            total = len(self._present(uid, outcome))
        problems: list[str] = []
        if total != len(local):
            problems.append(f"{len(local)} instances here, {total} at the destination")
        for series_uid in sorted(set(here) | set(there)):
            mine, theirs = here.get(series_uid, 0), there.get(series_uid, 0)
            if theirs is not None and mine != theirs:
                problems.append(f"series {series_uid}: {mine} here, {theirs} at the destination")
        if problems:
            outcome.problems.append(
                f"study {uid}: the counts disagree after the push ("
                + "; ".join(problems[:5])
                + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
                + "); run biobank push again, then compare the study on both nodes"
            )

    # -- requests with retries ---------------------------------------------------------------

    def _call(
        self, method: str, url: str, uid: str, what: str, outcome: StudyPush, **kwargs: Any
    ) -> httpx.Response:
        """One request, tried up to ``attempts`` times; raises :class:`_Stop` on 401/403."""
        response = self._call_or_skip(method, url, uid, what, outcome, **kwargs)
        assert response is not None  # only a refresh can skip
        return response

    def _call_or_skip(
        self,
        method: str,
        url: str,
        uid: str,
        what: str,
        outcome: StudyPush,
        *,
        refresh: Callable[[], tuple[bytes, str] | None] | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """Like :meth:`_call`; before a retry, ``refresh`` gives the body anew (None: skip)."""
        options = self.options
        last = ""
        for attempt in range(1, options.attempts + 1):
            if attempt > 1 and refresh is not None:
                fresh = refresh()
                if fresh is None:
                    return None
                kwargs["content"] = fresh[0]
                kwargs["headers"] = {**kwargs["headers"], "Content-Type": fresh[1]}
            wait = min(options.max_backoff_seconds, options.backoff_seconds * 2 ** (attempt - 1))
            try:
                outcome.requests += 1
                response = self.client.request(method, url, **kwargs)
            except httpx.TransportError as exc:  # connection refused or reset, timeouts
                last = type(exc).__name__
            else:
                status = response.status_code
                if status in (401, 403):
                    raise _Stop(self._refused(response, what))
                if status < 500 and status not in RETRYABLE_STATUS:
                    return response
                last = f"HTTP {status}"
                after = _retry_after(response)
                if after is not None:
                    wait = min(options.max_backoff_seconds, max(wait, after))
            if attempt < options.attempts:
                logger.warning(
                    "push to %s: study %s: %s failed (%s), try %d of %d in %.1f s",
                    self.destination.key,
                    uid,
                    what,
                    last,
                    attempt + 1,
                    options.attempts,
                    wait,
                )
                self.sleep(wait)
        raise _Stop(
            f"study {uid}: {what} failed {options.attempts} times (last: {last}) at "
            f"{self.destination.url}; check that the destination is up and reachable, then "
            "run biobank push again: it resumes where it stopped"
        )

    def _refused(self, response: httpx.Response, what: str) -> str:
        if response.status_code == 401:
            return (
                f"the destination refused the token (HTTP 401 while {what}): it is missing, "
                "unknown, revoked or expired; create one on the destination (biobank token "
                "create NAME) and pass it with --token"
            )
        return (
            f"the destination's user of this token may not do this (HTTP 403 while {what}: "
            f"{_message(response)}); a push needs a token of an uploader, curator or admin "
            "there"
        )


def _count(value: Any) -> int | None:
    """A count from DICOM JSON: a number, or a string of digits (IS as some servers send it)."""
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _code_words(code: int | None) -> str:
    if code is None:
        return "refused by the destination (no reason given)"
    meaning = FAILURE_REASONS.get(code, "failure")
    return f"refused by the destination: FailureReason {code:04X}H ({meaning})"


def push(
    node: Node,
    destination: Destination,
    *,
    studies: Sequence[str] | None = None,
    options: PushOptions | None = None,
    progress: ProgressCallback | None = None,
    after_batch: BatchHook | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PushReport:
    """Push ``studies`` of ``node`` (every study when None) to ``destination``.

    See the module docstring for the algorithm. The report says what became of each study;
    the push stops early (``report.stopped``) when the token is refused or the destination
    stays unreachable, and goes on with the other studies when some instances are refused.

    Parameters
    ----------
    node
        The node whose catalogue and blob store are read.
    destination
        The DICOMweb root to push to, with its token.
    studies
        Study Instance UIDs; None for every study of the catalogue.
    options
        Batching, retries, paging; :class:`PushOptions` by default.
    progress
        Called with a :class:`PushProgress` after every batch and study.
    after_batch
        Called after every acknowledged STOW-RS request (tests inject faults there).
    transport
        An httpx transport to use instead of the network (tests).
    sleep
        How to wait between tries.

    Returns
    -------
    PushReport
        One :class:`StudyPush` per study, in order.

    Raises
    ------
    StorageError
        If the local catalogue cannot be read.
    BiobankError
        If the push journal cannot be written.
    """
    options = options or PushOptions()
    headers = {"User-Agent": "biobank-push"}
    if destination.token:
        headers["Authorization"] = f"Bearer {destination.token}"
    timeout = httpx.Timeout(options.timeout_seconds, connect=min(10.0, options.timeout_seconds))
    catalog = node.open_catalog()
    try:
        with httpx.Client(headers=headers, timeout=timeout, transport=transport) as client:
            pusher = Pusher(
                catalog,
                node.open_store(fsync=False),
                destination,
                client,
                PushJournal.for_destination(node.home, destination),
                options,
                progress=progress,
                after_batch=after_batch,
                sleep=sleep,
            )
            return pusher.run(studies)
    finally:
        catalog.close()


__all__ = ["FAILURE_REASONS", "Pusher", "batches", "push"]

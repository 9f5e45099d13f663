"""The DIMSE services' event handlers: C-STORE into ingest, C-FIND, C-MOVE and C-GET.

:class:`ServiceHandlers` is bound to pynetdicom's events by :class:`~biobank.dimse.DimseServer`
(pynetdicom's design: behaviour plugged in through typed event handlers). It keeps one record
per association: the calling AE title and address, the ingest batch its C-STOREs go to (opened
on the first C-STORE, closed when the association is released — or marked interrupted when it
is aborted or the connection drops), and the requests waiting for their final response.

What is logged and audited carries no PHI. On a site node the instances that arrive are not
de-identified yet, so nothing of them is logged — not even their UIDs: the log names the AE
title, the address and counts. SOP Instance UIDs appear (in the audit) only once ingest has
replaced them. A C-FIND is audited by its level and the tags of its matching keys, never their
values; a C-MOVE or C-GET by the catalogue UIDs of the studies or series sent.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import StoragePresentationContexts, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from biobank.catalog import Catalog, InstanceSummary, ItemOutcome, ItemResult
from biobank.catalog.search import QueryLevel
from biobank.dimse.query import (
    MODELS,
    VERIFICATION,
    FindRequest,
    RetrieveRequest,
    parse_find,
    parse_retrieve,
    retrieve_instances,
)
from biobank.dimse.settings import Destination, DimseSettings
from biobank.errors import BiobankError, InvalidQuery, StorageError
from biobank.ingest.service import IngestService
from biobank.store.blobs import BlobStore

logger = logging.getLogger(__name__)

AuditHook = Callable[[str, str, int, str, str], None]
"""``audit(action, resource, status, client, detail)``: records one DIMSE request."""

# DIMSE statuses (PS3.4 Annex B and C, PS3.7 Annex C).
SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
OUT_OF_RESOURCES = 0xA700
OUT_OF_RESOURCES_MATCHES = 0xA701
OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
IDENTIFIER_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

_FINAL_RESPONSES = {0x8020: "C-FIND", 0x8010: "C-GET", 0x8021: "C-MOVE"}
_PENDING = frozenset({0xFF00, 0xFF01})
_MAX_CONTEXTS = 128
_UNCOMPRESSED = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


def status(code: int, comment: str | None = None) -> Dataset:
    """A status dataset; ``comment`` becomes the Error Comment (LO: 64 ASCII characters)."""
    ds = Dataset()
    ds.Status = code
    if comment:
        text = "".join(c if c.isascii() and c.isprintable() and c != "\\" else "?" for c in comment)
        ds.ErrorComment = text[:64]
    return ds


def printable(text: str) -> str:
    """An AE title as sent by a peer, safe for a log line."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text.strip())[:16]


@dataclass
class _Expected:
    """A C-FIND, C-MOVE or C-GET audited when its final response is sent."""

    action: str
    resource: str
    detail: str


@dataclass
class _Peer:
    """One association: who called, its ingest batch, its requests in progress."""

    calling_ae: str
    address: str
    batch_id: str | None = None
    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    expected: dict[int, _Expected] = field(default_factory=dict)

    @property
    def client(self) -> str:
        """``AE@address``, for logs and the audit."""
        return f"{self.calling_ae}@{self.address}"

    @property
    def channel(self) -> str:
        """The ingest batch's source."""
        return f"C-STORE from {self.calling_ae}"


def _store_status(result: ItemResult) -> tuple[int, str | None]:
    if result.outcome in (ItemOutcome.STORED, ItemOutcome.DUPLICATE):
        return SUCCESS, None
    if result.outcome is ItemOutcome.REJECTED:
        return CANNOT_UNDERSTAND, result.reason
    return CANNOT_UNDERSTAND, f"{result.outcome.value}: {result.reason}"


def _sent_resource(instances: Sequence[InstanceSummary], level: QueryLevel) -> str:
    """The catalogue UIDs of the studies (PATIENT, STUDY) or series sent."""
    if level in (QueryLevel.PATIENT, QueryLevel.STUDY):
        uids = dict.fromkeys(i.study_instance_uid for i in instances)
    else:
        uids = dict.fromkeys(i.series_instance_uid for i in instances)
    return ",".join(uids) or "-"


def move_contexts(instances: Sequence[InstanceSummary]) -> list[PresentationContext]:
    """Presentation contexts to send ``instances`` as stored (one per class and syntax).

    An uncompressed instance may also go in the other uncompressed syntax (pynetdicom
    converts it); a compressed one only as stored, never transcoded. At most 128 contexts
    (PS3.8): instances beyond them fail their sub-operation, with a warning in the log.
    """
    pairs: dict[tuple[str, str], None] = {}
    for instance in instances:
        syntax = instance.transfer_syntax_uid or ExplicitVRLittleEndian
        pairs.setdefault((instance.sop_class_uid, syntax), None)
    contexts: list[PresentationContext] = []
    for sop_class, syntax in pairs:
        if syntax in _UNCOMPRESSED:
            syntaxes = dict.fromkeys([syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            contexts.append(build_context(sop_class, list(syntaxes)))
        else:
            contexts.append(build_context(sop_class, [syntax]))
    if len(contexts) > _MAX_CONTEXTS:
        logger.warning(
            "C-MOVE: %d SOP class and transfer syntax pairs, more than the %d presentation "
            "contexts of an association; the instances of the others fail",
            len(contexts),
            _MAX_CONTEXTS,
        )
        contexts = contexts[:_MAX_CONTEXTS]
    return contexts


def refusal_contexts() -> list[PresentationContext]:
    """Contexts any storage SCP accepts some of: a refused C-MOVE still associates first.

    pynetdicom associates with the destination before it takes the handler's failure status;
    proposing the common storage classes keeps that association from failing, so the
    requestor gets the real status (not 0xA801).
    """
    return [build_context(VERIFICATION), *StoragePresentationContexts[: _MAX_CONTEXTS - 1]]


def set_nodelay(event: Event) -> None:
    """EVT_CONN_OPEN: send small PDUs at once (no Nagle delay on request/response)."""
    try:
        sock = event.assoc.dul.socket.socket  # type: ignore[union-attr]
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):  # not a TCP socket: nothing to tune
        pass


class ServiceHandlers:
    """The handlers of one DIMSE server; see the module docstring.

    Parameters
    ----------
    settings
        The service's settings (AE title, C-MOVE destinations, limits).
    ingest
        Where received instances go.
    catalog
        What C-FIND searches and C-MOVE/C-GET resolve against.
    store
        Where the instances' bytes are read for C-MOVE/C-GET.
    audit
        Called once per C-STORE, C-FIND, C-MOVE and C-GET (see :data:`AuditHook`).
    """

    def __init__(
        self,
        *,
        settings: DimseSettings,
        ingest: IngestService,
        catalog: Catalog,
        store: BlobStore,
        audit: AuditHook | None = None,
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.catalog = catalog
        self.store = store
        self._audit_hook = audit
        self._lock = threading.Lock()
        self._peers: dict[Association, _Peer] = {}

    # -- associations --------------------------------------------------------------------

    def _peer(self, assoc: Association) -> _Peer:
        with self._lock:
            peer = self._peers.get(assoc)
            if peer is None:
                peer = _Peer(printable(assoc.requestor.ae_title), assoc.requestor.address)
                self._peers[assoc] = peer
            return peer

    def on_accepted(self, event: Event) -> None:
        """EVT_ACCEPTED."""
        self._sweep()
        logger.info("DIMSE association from %s accepted", self._peer(event.assoc).client)

    def on_rejected(self, event: Event) -> None:
        """EVT_REJECTED: say why, and what to change to let the caller in."""
        requestor = event.assoc.requestor
        calling = printable(requestor.ae_title or "")
        primitive = requestor.primitive
        called = printable(getattr(primitive, "called_ae_title", "") or "")
        client = f"{calling}@{requestor.address}"
        if not self.settings.allowed_callers:
            logger.warning(
                "DIMSE association from %s refused: dimse.allowed_callers is empty, so every "
                "caller is refused; list the calling AE titles there in node.yaml",
                client,
            )
        elif calling not in self.settings.allowed_callers:
            logger.warning(
                "DIMSE association from %s refused: calling AE title %s is not in "
                "dimse.allowed_callers; add it there in node.yaml to let it in",
                client,
                calling,
            )
        elif called != self.settings.ae_title:
            logger.warning(
                "DIMSE association from %s refused: it called AE title %s, this node is %s; "
                "configure the caller to call %s",
                client,
                called,
                self.settings.ae_title,
                self.settings.ae_title,
            )
        else:
            logger.warning(
                "DIMSE association from %s refused: %d associations are already open "
                "(dimse.max_associations); the caller may retry",
                client,
                self.settings.max_associations,
            )

    def on_released(self, event: Event) -> None:
        """EVT_RELEASED: the association ended normally; its batch is complete."""
        self._finish(event.assoc, interrupted=False, how="released")

    def on_aborted(self, event: Event) -> None:
        """EVT_ABORTED: aborted by either side, or the connection dropped: interrupted."""
        self._finish(event.assoc, interrupted=True, how="aborted")

    def on_conn_close(self, event: Event) -> None:
        """EVT_CONN_CLOSE: finish the associations whose thread ended without a word.

        The connection of a released association may close (in pynetdicom's network thread)
        just before EVT_RELEASED fires (in the association's thread): this one is left to
        its own events.
        """
        self._sweep()

    def _sweep(self) -> None:
        with self._lock:
            ended = [assoc for assoc in self._peers if not assoc.is_alive()]
        for assoc in ended:
            self._finish(assoc, interrupted=True, how="ended")

    def _finish(self, assoc: Association, *, interrupted: bool, how: str) -> None:
        with self._lock:
            peer = self._peers.pop(assoc, None)
        if peer is None:
            return
        for item in peer.expected.values():
            self._audit(
                item.action,
                item.resource,
                CANNOT_UNDERSTAND,
                peer.client,
                f"{item.detail}; the association ended before the final response",
            )
        if peer.batch_id is None:
            logger.info("DIMSE association from %s %s", peer.client, how)
            return
        self.ingest.end(peer.batch_id, interrupted=interrupted)
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(peer.outcomes.items()))
        logger.info(
            "DIMSE association from %s %s: %d instances received (%s)",
            peer.client,
            how,
            peer.received,
            counts or "none processed",
        )

    def close_all(self) -> None:
        """Finish every association still known; open batches end interrupted."""
        with self._lock:
            assocs = list(self._peers)
        for assoc in assocs:
            self._finish(assoc, interrupted=True, how="stopped")

    # -- audit ---------------------------------------------------------------------------

    def _audit(self, action: str, resource: str, code: int, client: str, detail: str) -> None:
        if self._audit_hook is None:
            return
        try:
            self._audit_hook(action, resource, code, client, detail)
        except Exception as exc:  # noqa: BLE001 - the request's outcome stands
            logger.error(
                "DIMSE %s from %s: the audit callback failed (%s)",
                action,
                client,
                type(exc).__name__,
            )

    def _expect(self, event: Event, peer: _Peer, action: str, resource: str, detail: str) -> None:
        message_id = int(event.request.MessageID or 0)
        with self._lock:
            peer.expected[message_id] = _Expected(action, resource, detail)

    def on_dimse_sent(self, event: Event) -> None:
        """EVT_DIMSE_SENT: audit a C-FIND, C-MOVE or C-GET once its final status is sent."""
        command = event.message.command_set
        operation = _FINAL_RESPONSES.get(int(command.get("CommandField", 0)))
        code = int(command.get("Status", 0))
        if operation is None or code in _PENDING:
            return
        message_id = int(command.get("MessageIDBeingRespondedTo", 0))
        with self._lock:
            peer = self._peers.get(event.assoc)
            expected = peer.expected.pop(message_id, None) if peer is not None else None
        if peer is None or expected is None:
            return
        detail = expected.detail
        if operation != "C-FIND":
            counts = [
                f"{int(command.get(f'NumberOf{kind}Suboperations') or 0)} {kind.lower()}"
                for kind in ("Completed", "Failed", "Warning")
            ]
            detail = f"{detail}; {', '.join(counts)}"
        self._audit(expected.action, expected.resource, code, peer.client, detail)

    # -- C-STORE -------------------------------------------------------------------------

    def on_store(self, event: Event) -> Dataset:
        """EVT_C_STORE: ingest the dataset as sent (no decoding, no transcoding)."""
        peer = self._peer(event.assoc)
        with self._lock:
            peer.received += 1
            number = peer.received
        code, comment, resource = self._store(event, peer, number)
        if code != SUCCESS:
            logger.warning(
                "C-STORE from %s #%d: status 0x%04X (%s)", peer.client, number, code, comment
            )
        self._audit("dimse.c-store", resource, code, peer.client, comment or "stored")
        return status(code, comment)

    def _store(self, event: Event, peer: _Peer, number: int) -> tuple[int, str | None, str]:
        try:
            data = event.encoded_dataset()
            if peer.batch_id is None:
                peer.batch_id = self.ingest.begin(peer.channel)
            results = self.ingest.store(
                [(f"C-STORE {peer.calling_ae} #{number}", data)],
                channel=peer.channel,
                batch_id=peer.batch_id,
            )
        except StorageError as exc:
            logger.error("C-STORE from %s #%d: not stored: %s", peer.client, number, exc)
            peer.outcomes["failed"] += 1
            return OUT_OF_RESOURCES, "out of resources: not stored; retry later", "-"
        except Exception as exc:  # noqa: BLE001 - the sender gets a status, never a crash
            logger.error(
                "C-STORE from %s #%d: not stored: unexpected %s",
                peer.client,
                number,
                type(exc).__name__,
            )
            peer.outcomes["failed"] += 1
            return CANNOT_UNDERSTAND, "not stored: internal error", "-"
        result = results[0]
        peer.outcomes[result.outcome.value] += 1
        code, comment = _store_status(result)
        resource = result.sop_instance_uid if code == SUCCESS and result.sop_instance_uid else "-"
        return code, comment, resource

    # -- C-FIND --------------------------------------------------------------------------

    def on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """EVT_C_FIND: search the catalogue; one pending response per match."""
        peer = self._peer(event.assoc)
        model = MODELS.get(str(event.request.AffectedSOPClassUID), "")
        try:
            request = parse_find(event.identifier, model)
        except InvalidQuery as exc:
            self._expect(event, peer, "dimse.c-find", "-", "identifier refused")
            yield status(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        except Exception:  # noqa: BLE001 - an identifier that cannot be decoded
            self._expect(event, peer, "dimse.c-find", "-", "identifier not decodable")
            yield status(IDENTIFIER_DOES_NOT_MATCH, "the identifier cannot be decoded"), None
            return
        resource = f"{request.level.value} {request.matching_tags}"
        try:
            matches = self._find(request)
        except InvalidQuery as exc:
            self._expect(event, peer, "dimse.c-find", resource, "invalid query")
            yield status(CANNOT_UNDERSTAND, str(exc)), None
            return
        except StorageError:
            self._expect(event, peer, "dimse.c-find", resource, "catalogue unavailable")
            yield status(OUT_OF_RESOURCES, "the catalogue is unavailable; retry later"), None
            return
        if matches is None:
            limit = self.settings.find_limit
            logger.info("C-FIND from %s: more than %d matches, refused", peer.client, limit)
            self._expect(event, peer, "dimse.c-find", resource, f"more than {limit} matches")
            yield status(OUT_OF_RESOURCES, f"more than {limit} matches; narrow the query"), None
            return
        self._expect(event, peer, "dimse.c-find", resource, f"{len(matches)} matches")
        for match in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            try:
                response = request.response(match, self.settings.ae_title)
            except Exception as exc:  # noqa: BLE001 - one bad header must not end the query
                logger.error("C-FIND from %s: a match cannot be encoded (%s)", peer.client,
                             type(exc).__name__)  # fmt: skip
                continue
            yield PENDING, response

    def _find(self, request: FindRequest) -> list[dict[str, Any]] | None:
        """The matches, or None when there are more than ``find_limit``."""
        limit = self.settings.find_limit
        result = self.catalog.search(request.query(limit))
        if len(result.matches) == limit and self.catalog.search(request.query(1, limit)).matches:
            return None
        return result.matches

    # -- C-GET and C-MOVE ----------------------------------------------------------------

    def _resolve(
        self, event: Event, operation: str
    ) -> tuple[RetrieveRequest, list[InstanceSummary]] | Dataset:
        """The instances to send, or the failure status to answer with."""
        model = MODELS.get(str(event.request.AffectedSOPClassUID), "")
        try:
            request = parse_retrieve(event.identifier, model, operation)
        except InvalidQuery as exc:
            return status(IDENTIFIER_DOES_NOT_MATCH, str(exc))
        except Exception:  # noqa: BLE001 - an identifier that cannot be decoded
            return status(IDENTIFIER_DOES_NOT_MATCH, "the identifier cannot be decoded")
        try:
            return request, retrieve_instances(self.catalog, request)
        except InvalidQuery as exc:
            return status(OUT_OF_RESOURCES_MATCHES, str(exc))
        except StorageError:
            return status(OUT_OF_RESOURCES_MATCHES, "the catalogue is unavailable; retry later")

    def _send(
        self, event: Event, operation: str, instances: list[InstanceSummary]
    ) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """Pending (dataset) yields, stopping on a cancel or an unreadable blob."""
        for n, instance in enumerate(instances):
            if event.is_cancelled:
                yield CANCEL, None
                return
            try:
                dataset = dcmread(BytesIO(self.store.get(instance.blob_digest)))
            except (BiobankError, OSError, ValueError) as exc:
                logger.error(
                    "%s: blob %s of instance %s cannot be read (%s); run biobank verify",
                    operation,
                    instance.blob_digest,
                    instance.sop_instance_uid,
                    type(exc).__name__,
                )
                failed = Dataset()
                failed.FailedSOPInstanceUIDList = [i.sop_instance_uid for i in instances[n:]]
                comment = "a stored instance cannot be read"
                yield status(OUT_OF_RESOURCES_SUBOPERATIONS, comment), failed
                return
            yield PENDING, dataset

    def on_get(self, event: Event) -> Iterator[int | tuple[int | Dataset, Dataset | None]]:
        """EVT_C_GET: send the named instances back over the requestor's association."""
        peer = self._peer(event.assoc)
        resolved = self._resolve(event, "C-GET")
        if isinstance(resolved, Dataset):
            self._expect(event, peer, "dimse.c-get", "-", "refused")
            yield 1
            yield resolved, None
            return
        request, instances = resolved
        resource = _sent_resource(instances, request.level)
        detail = f"{request.level.value} level, {len(instances)} instances"
        self._expect(event, peer, "dimse.c-get", resource, detail)
        logger.info("C-GET from %s: %d instances", peer.client, len(instances))
        yield len(instances)
        yield from self._send(event, "C-GET", instances)

    def on_move(
        self, event: Event
    ) -> Iterator[tuple[Any, ...] | int | tuple[int | Dataset, Dataset | None]]:
        """EVT_C_MOVE: send the named instances to a configured destination AE."""
        peer = self._peer(event.assoc)
        title = printable(event.move_destination or "")
        destination = self.settings.destination(title)
        if destination is None:
            logger.warning(
                "C-MOVE from %s: destination %s is not in dimse.destinations; refused",
                peer.client,
                title,
            )
            self._expect(event, peer, "dimse.c-move", "-", f"unknown destination {title}")
            yield None, None
            return
        resolved = self._resolve(event, "C-MOVE")
        if isinstance(resolved, Dataset):
            self._expect(event, peer, "dimse.c-move", "-", f"refused, to {title}")
            yield self._destination(destination, [])
            yield 1
            yield resolved, None
            return
        request, instances = resolved
        resource = _sent_resource(instances, request.level)
        detail = f"{request.level.value} level, {len(instances)} instances to {title}"
        self._expect(event, peer, "dimse.c-move", resource, detail)
        logger.info("C-MOVE from %s: %d instances to %s", peer.client, len(instances), title)
        yield self._destination(destination, instances)
        yield len(instances)
        yield from self._send(event, "C-MOVE", instances)

    def _destination(
        self, destination: Destination, instances: Sequence[InstanceSummary]
    ) -> tuple[str, int, dict[str, Any]]:
        options: dict[str, Any] = {
            "contexts": move_contexts(instances) if instances else refusal_contexts(),
            "max_pdu": self.settings.max_pdu,
            "evt_handlers": [(evt.EVT_CONN_OPEN, set_nodelay)],
        }
        return destination.host, destination.port, options


__all__ = [
    "AuditHook",
    "ServiceHandlers",
    "move_contexts",
    "printable",
    "set_nodelay",
    "status",
]

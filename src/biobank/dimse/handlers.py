"""The DIMSE services' handlers: C-STORE into ingest, C-FIND, C-MOVE and C-GET.

:class:`ServiceHandlers` is bound to pynetdicom's events by :class:`~biobank.dimse.DimseServer`
(pynetdicom's design: behaviour plugged in through typed event handlers); the associations'
bookkeeping and the audit are :class:`~biobank.dimse.associations.Associations`'.

Nothing of a received instance is logged — not even its UIDs: on a site node it is not
de-identified yet. The log names the AE title, the address and counts; SOP Instance UIDs
appear (in the audit) only once ingest has replaced them. A C-FIND is audited by its level and
the tags of its matching keys, never their values; a C-MOVE or C-GET by the catalogue UIDs of
the studies or series sent.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from io import BytesIO
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import StoragePresentationContexts, build_context, evt
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from biobank.catalog import Catalog, InstanceSummary, ItemOutcome, ItemResult
from biobank.catalog.search import QueryLevel
from biobank.dimse.associations import Associations, Peer, printable
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
from biobank.dimse.status import (
    CANCEL,
    CANNOT_UNDERSTAND,
    IDENTIFIER_DOES_NOT_MATCH,
    OUT_OF_RESOURCES,
    OUT_OF_RESOURCES_MATCHES,
    OUT_OF_RESOURCES_SUBOPERATIONS,
    PENDING,
    SUCCESS,
    status,
)
from biobank.errors import BiobankError, InvalidQuery, StorageError
from biobank.ingest.service import IngestService
from biobank.store.blobs import BlobStore

logger = logging.getLogger(__name__)

_MAX_CONTEXTS = 128
_UNCOMPRESSED = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


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
    with contextlib.suppress(AttributeError, OSError):  # not a TCP socket: nothing to tune
        sock = event.assoc.dul.socket.socket  # type: ignore[union-attr]
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ServiceHandlers:
    """The service handlers of one DIMSE server; see the module docstring.

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
    associations
        The associations' records, batches and audit.
    """

    def __init__(
        self,
        *,
        settings: DimseSettings,
        ingest: IngestService,
        catalog: Catalog,
        store: BlobStore,
        associations: Associations,
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.catalog = catalog
        self.store = store
        self.associations = associations

    # -- C-STORE -------------------------------------------------------------------------

    def on_store(self, event: Event) -> Dataset:
        """EVT_C_STORE: ingest the dataset as sent (no decoding, no transcoding)."""
        peer = self.associations.peer(event.assoc)
        number = self.associations.count(peer)
        code, comment, resource, detail = self._store(event, peer, number)
        if code != SUCCESS:
            logger.warning(
                "C-STORE from %s #%d: status 0x%04X (%s)", peer.client, number, code, comment
            )
        self.associations.audit("dimse.c-store", resource, code, peer.client, detail)
        return status(code, comment)

    def _store(self, event: Event, peer: Peer, number: int) -> tuple[int, str | None, str, str]:
        """The status, error comment, audited resource and detail of one C-STORE."""
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
            comment = "out of resources: not stored; retry later"
            return OUT_OF_RESOURCES, comment, "-", comment
        except Exception as exc:  # noqa: BLE001 - the sender gets a status, never a crash
            logger.error(
                "C-STORE from %s #%d: not stored: unexpected %s",
                peer.client,
                number,
                type(exc).__name__,
            )
            peer.outcomes["failed"] += 1
            comment = "not stored: internal error"
            return CANNOT_UNDERSTAND, comment, "-", comment
        result = results[0]
        peer.outcomes[result.outcome.value] += 1
        code, problem = _store_status(result)
        if code == SUCCESS and result.sop_instance_uid:
            return code, None, result.sop_instance_uid, result.outcome.value
        return code, problem, "-", problem or result.outcome.value

    # -- C-FIND --------------------------------------------------------------------------

    def on_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        """EVT_C_FIND: search the catalogue; one pending response per match."""
        peer = self.associations.peer(event.assoc)
        model = MODELS.get(str(event.request.AffectedSOPClassUID), "")
        try:
            request = parse_find(event.identifier, model)
        except InvalidQuery as exc:
            self.associations.expect(event, peer, "dimse.c-find", "-", "identifier refused")
            yield status(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        except Exception:  # noqa: BLE001 - an identifier that cannot be decoded
            self.associations.expect(event, peer, "dimse.c-find", "-", "identifier not decodable")
            yield status(IDENTIFIER_DOES_NOT_MATCH, "the identifier cannot be decoded"), None
            return
        resource = f"{request.level.value} {request.matching_tags}"
        try:
            matches = self._find(request)
        except InvalidQuery as exc:
            self.associations.expect(event, peer, "dimse.c-find", resource, "invalid query")
            yield status(CANNOT_UNDERSTAND, str(exc)), None
            return
        except StorageError:
            self.associations.expect(event, peer, "dimse.c-find", resource, "catalogue unavailable")
            yield status(OUT_OF_RESOURCES, "the catalogue is unavailable; retry later"), None
            return
        if matches is None:
            limit = self.settings.find_limit
            logger.info("C-FIND from %s: more than %d matches, refused", peer.client, limit)
            self.associations.expect(
                event, peer, "dimse.c-find", resource, f"more than {limit} matches"
            )
            yield status(OUT_OF_RESOURCES, f"more than {limit} matches; narrow the query"), None
            return
        self.associations.expect(event, peer, "dimse.c-find", resource, f"{len(matches)} matches")
        for match in matches:
            if event.is_cancelled:
                yield CANCEL, None
                return
            try:
                response = request.response(match, self.settings.ae_title)
            except Exception as exc:  # noqa: BLE001 - one bad header must not end the query
                logger.error(
                    "C-FIND from %s: a match cannot be encoded (%s)",
                    peer.client,
                    type(exc).__name__,
                )
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
        peer = self.associations.peer(event.assoc)
        resolved = self._resolve(event, "C-GET")
        if isinstance(resolved, Dataset):
            self.associations.expect(event, peer, "dimse.c-get", "-", "refused")
            yield 1
            yield resolved, None
            return
        request, instances = resolved
        resource = _sent_resource(instances, request.level)
        detail = f"{request.level.value} level, {len(instances)} instances"
        self.associations.expect(event, peer, "dimse.c-get", resource, detail)
        logger.info("C-GET from %s: %d instances", peer.client, len(instances))
        yield len(instances)
        yield from self._send(event, "C-GET", instances)

    def on_move(
        self, event: Event
    ) -> Iterator[tuple[Any, ...] | int | tuple[int | Dataset, Dataset | None]]:
        """EVT_C_MOVE: send the named instances to a configured destination AE."""
        peer = self.associations.peer(event.assoc)
        title = printable(event.move_destination or "")
        destination = self.settings.destination(title)
        if destination is None:
            logger.warning(
                "C-MOVE from %s: destination %s is not in dimse.destinations; refused",
                peer.client,
                title,
            )
            self.associations.expect(
                event, peer, "dimse.c-move", "-", f"unknown destination {title}"
            )
            yield None, None
            return
        resolved = self._resolve(event, "C-MOVE")
        if isinstance(resolved, Dataset):
            self.associations.expect(event, peer, "dimse.c-move", "-", f"refused, to {title}")
            yield self._destination(destination, [])
            yield 1
            yield resolved, None
            return
        request, instances = resolved
        resource = _sent_resource(instances, request.level)
        detail = f"{request.level.value} level, {len(instances)} instances to {title}"
        self.associations.expect(event, peer, "dimse.c-move", resource, detail)
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


__all__ = ["ServiceHandlers", "move_contexts", "refusal_contexts", "set_nodelay"]

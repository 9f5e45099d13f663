"""The associations of a DIMSE server: who called, their ingest batch, the audit.

:class:`Associations` keeps one :class:`Peer` per association: the calling AE title and
address, the ingest batch its C-STOREs go to (opened on the first C-STORE by the handlers,
closed when the association is released — or marked interrupted when it is aborted, the
connection drops or the server stops), and the requests waiting for their final response,
audited once it is sent (:meth:`Associations.on_dimse_sent`). It also says, in the log, why an
association was refused and what to change to let the caller in.

What is logged and audited carries no PHI: AE titles, addresses, counts, tags, and UIDs of the
catalogue (de-identified).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pynetdicom.association import Association
from pynetdicom.events import Event

from biobank.dimse.settings import DimseSettings
from biobank.dimse.status import CANNOT_UNDERSTAND, PENDING, PENDING_WARNING
from biobank.ingest.service import IngestService

logger = logging.getLogger(__name__)

AuditHook = Callable[[str, str, int, str, str], None]
"""``audit(action, resource, status, client, detail)``: records one DIMSE request."""

_FINAL_RESPONSES = {0x8020: "C-FIND", 0x8010: "C-GET", 0x8021: "C-MOVE"}


def printable(text: str) -> str:
    """An AE title as a peer sent it, safe for a log line (printable ASCII, 16 at most)."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text.strip())[:16]


@dataclass
class Expected:
    """A C-FIND, C-MOVE or C-GET, audited when its final response is sent."""

    action: str
    resource: str
    detail: str


@dataclass
class Peer:
    """One association: who called, its ingest batch, its requests in progress."""

    calling_ae: str
    address: str
    batch_id: str | None = None
    received: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    expected: dict[int, Expected] = field(default_factory=dict)

    @property
    def client(self) -> str:
        """``AE@address``, for logs and the audit."""
        return f"{self.calling_ae}@{self.address}"

    @property
    def channel(self) -> str:
        """The ingest batch's source."""
        return f"C-STORE from {self.calling_ae}"


class Associations:
    """The associations of one server; see the module docstring.

    Parameters
    ----------
    settings
        The service's settings (to explain refusals).
    ingest
        Whose batches are closed when an association ends.
    audit
        Called once per audited request; an exception in it is logged and ignored.
    """

    def __init__(
        self, *, settings: DimseSettings, ingest: IngestService, audit: AuditHook | None
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self._audit_hook = audit
        self._lock = threading.Lock()
        self._peers: dict[Association, Peer] = {}

    def peer(self, assoc: Association) -> Peer:
        """The record of ``assoc`` (created on first use)."""
        with self._lock:
            peer = self._peers.get(assoc)
            if peer is None:
                peer = Peer(printable(assoc.requestor.ae_title), assoc.requestor.address)
                self._peers[assoc] = peer
            return peer

    def count(self, peer: Peer) -> int:
        """Count one more instance received from ``peer``; its number in the association."""
        with self._lock:
            peer.received += 1
            return peer.received

    def on_accepted(self, event: Event) -> None:
        """EVT_ACCEPTED."""
        self._sweep()
        logger.info("DIMSE association from %s accepted", self.peer(event.assoc).client)

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
            self.audit(
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

    def audit(self, action: str, resource: str, code: int, client: str, detail: str) -> None:
        """Call the audit hook (if any); a failure of it is logged, not raised."""
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

    def expect(self, event: Event, peer: Peer, action: str, resource: str, detail: str) -> None:
        """Audit the request of ``event`` once its final response is sent."""
        message_id = int(event.request.MessageID or 0)
        with self._lock:
            peer.expected[message_id] = Expected(action, resource, detail)

    def on_dimse_sent(self, event: Event) -> None:
        """EVT_DIMSE_SENT: audit a C-FIND, C-MOVE or C-GET once its final status is sent."""
        command = event.message.command_set
        operation = _FINAL_RESPONSES.get(int(command.get("CommandField", 0)))
        code = int(command.get("Status", 0))
        if operation is None or code in (PENDING, PENDING_WARNING):
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
        self.audit(expected.action, expected.resource, code, peer.client, detail)


__all__ = ["AuditHook", "Associations", "Expected", "Peer", "printable"]

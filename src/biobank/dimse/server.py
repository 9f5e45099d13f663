"""The node's DIMSE server: Verification, Storage, and Query/Retrieve (FIND, MOVE, GET).

:class:`DimseServer` runs a pynetdicom association server in background threads, bound to the
``dimse:`` settings' host and port; ``biobank serve`` starts it next to the HTTP API. It
accepts an association only when the called AE title is the node's and the calling AE title is
in ``allowed_callers`` (an empty list refuses everyone), and then offers:

* C-ECHO;
* C-STORE of every Storage SOP class pynetdicom knows, in every transfer syntax whose pixel
  data are in the dataset (uncompressed, deflated, JPEG, JPEG-LS, JPEG 2000, HTJ2K, JPEG XL,
  RLE, MPEG/H.264/HEVC video), accepted as sent: the instance goes to ingest as it arrived,
  never transcoded;
* C-FIND, C-MOVE and C-GET in the Patient Root and Study Root information models.

The handlers are in :mod:`biobank.dimse.handlers`, the associations' bookkeeping and audit in
:mod:`biobank.dimse.associations`, the identifiers' reading in :mod:`biobank.dimse.query`.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any

from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    DEFAULT_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    _config,
    evt,
)
from pynetdicom.transport import ThreadedAssociationServer

from biobank.catalog import Catalog
from biobank.dimse.associations import Associations, AuditHook
from biobank.dimse.handlers import ServiceHandlers, set_nodelay
from biobank.dimse.query import MODELS, VERIFICATION
from biobank.dimse.settings import DimseSettings
from biobank.errors import InvalidInput
from biobank.ingest.node import Node
from biobank.ingest.service import IngestService

logger = logging.getLogger(__name__)

_UNCOMPRESSED = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
#: JPIP: the pixel data are elsewhere, behind a URL; nothing a node could hold or de-identify.
_REFERENCED = frozenset(
    {"1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.204",
     "1.2.840.10008.1.2.4.205"}
)  # fmt: skip
STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *_UNCOMPRESSED,
            *(ts for ts in ALL_TRANSFER_SYNTAXES if UID(ts) not in _REFERENCED),
        ]
    )
)
"""The transfer syntaxes offered for storage, uncompressed first: when a peer proposes both
in one presentation context, the data travel uncompressed; a peer that proposes only its
compressed syntax has it accepted as is."""

QUERY_TRANSFER_SYNTAXES: tuple[str, ...] = tuple(DEFAULT_TRANSFER_SYNTAXES)

_NOBODY = "<allowed_callers is empty>"
"""Longer than 16 characters: no calling AE title can equal it."""

_JOIN_SECONDS = 10.0


class _NodeAE(AE):
    """pynetdicom's AE whose calling-AE check refuses everyone when the allow-list is empty.

    pynetdicom reads an empty ``require_calling_aet`` as "anyone may call"; the node reads an
    empty ``allowed_callers`` as "no one may" (secure by default).
    """

    def __init__(self, ae_title: str, allowed_callers: tuple[str, ...]) -> None:
        super().__init__(ae_title)
        self._allowed = list(allowed_callers)

    @property
    def require_calling_aet(self) -> list[str]:
        """The calling AE titles accepted (a title no peer can send if none is)."""
        return list(self._allowed) or [_NOBODY]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        self._allowed = [title.strip() for title in ae_titles]


def silence_identifier_logging() -> None:
    """Keep pynetdicom from logging DIMSE messages and identifiers (PHI on a site node).

    pynetdicom's standard handlers log each message's UIDs and every C-FIND, C-MOVE and C-GET
    identifier; on a site node those are a hospital's, not yet de-identified. The switches are
    pynetdicom's process-wide configuration, so this is called when a server starts, never at
    import; association and status lines are still logged.
    """
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


def make_ae(settings: DimseSettings) -> AE:
    """The application entity: our AE title, the callers' check, limits and contexts."""
    ae = _NodeAE(settings.ae_title, settings.allowed_callers)
    ae.require_called_aet = True
    ae.maximum_pdu_size = settings.max_pdu
    ae.maximum_associations = settings.max_associations
    ae.network_timeout = settings.network_timeout
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.add_supported_context(VERIFICATION, list(QUERY_TRANSFER_SYNTAXES))
    for sop_class in MODELS:
        ae.add_supported_context(sop_class, list(QUERY_TRANSFER_SYNTAXES))
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        # SCP role for C-STORE; SCU role offered too, for a C-GET requestor that asks to be
        # the storage SCP (role selection, PS3.7 D.3.3.4).
        ae.add_supported_context(
            context.abstract_syntax,
            list(STORAGE_TRANSFER_SYNTAXES),
            scu_role=True,
            scp_role=True,
        )
    return ae


class DimseServer:
    """The node's DIMSE service (see the module docstring).

    Parameters
    ----------
    node
        The node; its blob store is read for C-MOVE and C-GET.
    settings
        The ``dimse:`` settings (:meth:`DimseSettings.from_node`).
    ingest
        Where C-STOREd instances go, one ingest batch per association. Not closed here.
    catalog
        What C-FIND, C-MOVE and C-GET search. Not closed here.
    audit
        ``audit(action, resource, status, client, detail)``, called once per C-STORE
        (``dimse.c-store``), C-FIND, C-MOVE and C-GET with the final DIMSE status; ``client``
        is ``AE@address``. It carries no PHI. An exception in it is logged and ignored.

    Examples
    --------
    >>> with DimseServer(node, settings=settings, ingest=ingest, catalog=catalog) as server:
    ...     print(server.port)  # doctest: +SKIP
    """

    def __init__(
        self,
        node: Node,
        *,
        settings: DimseSettings,
        ingest: IngestService,
        catalog: Catalog,
        audit: AuditHook | None = None,
    ) -> None:
        self.node = node
        self.settings = settings
        self.associations = Associations(settings=settings, ingest=ingest, audit=audit)
        self.handlers = ServiceHandlers(
            settings=settings,
            ingest=ingest,
            catalog=catalog,
            store=node.open_store(fsync=False),
            associations=self.associations,
        )
        self._lock = threading.Lock()
        self._ae: AE | None = None
        self._server: ThreadedAssociationServer | None = None
        self._port = settings.port

    @property
    def port(self) -> int:
        """The TCP port listened on (the ephemeral one chosen when ``port`` is 0)."""
        return self._port

    @property
    def host(self) -> str:
        """The address listened on."""
        return self.settings.host

    @property
    def ae_title(self) -> str:
        """The node's AE title."""
        return self.settings.ae_title

    @property
    def running(self) -> bool:
        """Whether the server accepts associations."""
        return self._server is not None

    def _event_handlers(self) -> list[Any]:
        a, h = self.associations, self.handlers
        return [
            (evt.EVT_CONN_OPEN, set_nodelay),
            (evt.EVT_ACCEPTED, a.on_accepted),
            (evt.EVT_REJECTED, a.on_rejected),
            (evt.EVT_RELEASED, a.on_released),
            (evt.EVT_ABORTED, a.on_aborted),
            (evt.EVT_CONN_CLOSE, a.on_conn_close),
            (evt.EVT_DIMSE_SENT, a.on_dimse_sent),
            (evt.EVT_C_STORE, h.on_store),
            (evt.EVT_C_FIND, h.on_find),
            (evt.EVT_C_GET, h.on_get),
            (evt.EVT_C_MOVE, h.on_move),
        ]

    def start(self) -> None:
        """Listen on ``host:port`` in background threads and return at once.

        Raises
        ------
        InvalidInput
            If the address cannot be bound (in use, or not an address of this machine).
        """
        with self._lock:
            if self._server is not None:
                return
            silence_identifier_logging()
            ae = make_ae(self.settings)
            host, port = self.settings.host, self.settings.port
            try:
                server = ae.start_server(
                    (host, port), block=False, evt_handlers=self._event_handlers()
                )
            except OSError as exc:
                raise InvalidInput(
                    f"dimse: cannot listen on {host}:{port} ({exc.strerror or exc}); choose "
                    "another dimse.port or dimse.host in node.yaml, or stop what uses it"
                ) from None
            assert server is not None  # block=False returns the server
            self._ae, self._server = ae, server
            self._port = int(server.server_address[1])
        if not self.settings.allowed_callers:
            logger.warning(
                "DIMSE: dimse.allowed_callers is empty: every association will be refused"
            )
        logger.info(
            "DIMSE service %s listening on %s:%d (%d allowed callers, %d move destinations)",
            self.settings.ae_title,
            self.settings.host,
            self._port,
            len(self.settings.allowed_callers),
            len(self.settings.destinations),
        )

    def stop(self) -> None:
        """Stop listening, abort the open associations and end their batches (interrupted)."""
        with self._lock:
            server, self._server, self._ae = self._server, None, None
        if server is None:
            return
        associations = server.active_associations
        for assoc in associations:
            # One being refused or closed is left to finish: pynetdicom's state machine
            # does not take an A-ABORT while it waits for the transport to close.
            if assoc.is_established:
                assoc.abort()
        deadline = time.monotonic() + _JOIN_SECONDS
        for assoc in associations:
            assoc.join(max(0.0, deadline - time.monotonic()))
        server.shutdown()
        self.associations.close_all()
        logger.info("DIMSE service %s stopped", self.settings.ae_title)

    def __enter__(self) -> DimseServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = [
    "QUERY_TRANSFER_SYNTAXES",
    "STORAGE_TRANSFER_SYNTAXES",
    "DimseServer",
    "make_ae",
    "silence_identifier_logging",
]

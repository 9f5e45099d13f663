"""Fixtures: a site node per test with its DIMSE server on an ephemeral loopback port.

Each test gets its own node home, catalogue and ingest service (inline: ``jobs=1``), and
starts servers through :class:`Biobank`, which stops them at teardown. The synthetic
instances carry planted PHI; the helpers below give the strings that must never come out.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.association import Association
from pynetdicom.transport import ThreadedAssociationServer

from biobank.catalog import Catalog
from biobank.dicom.synthetic import PlantedPHI, make_ct_series, make_mr_series, make_patient_phi
from biobank.dimse import DimseServer, DimseSettings
from biobank.ingest.node import Node, NodeRole, init_node
from biobank.ingest.service import IngestService

SCU = "TESTSCU"
OURS = "BIOBANK"
#: Generous: a 2-core machine running the whole suite in parallel is slow.
TIMEOUT = 120.0
LOOPBACK = "127.0.0.1"

Audit = tuple[str, str, int, str, str]


def encode(ds: Dataset) -> bytes:
    """A dataset as a DICOM file (explicit VR little endian, with file meta)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def as_sent(ds: Dataset) -> Dataset:
    """The dataset as a sender reads it from its file (encoding known, as on disk)."""
    return dcmread(io.BytesIO(encode(ds)))


@dataclass(frozen=True)
class Patient:
    """A synthetic patient: the planted values and a CT and an MR series (as sent)."""

    phi: PlantedPHI
    ct: list[Dataset]
    mr: list[Dataset]

    @property
    def instances(self) -> list[Dataset]:
        return self.ct + self.mr

    def forbidden(self, *, everything: bool = True) -> list[str]:
        """Planted identifying strings, and the source UIDs (they embed the MRN).

        ``everything=False`` leaves out the device identity (station name, serial number),
        which the research profile keeps on purpose (Retain Device Identity Option).
        """
        categories = self.phi.categories()
        if not everything:
            del categories["equipment"]
        values = list(dict.fromkeys(v for group in categories.values() for v in group))
        values = [v for v in values if len(v) >= 4]
        uids = {str(ds.SOPInstanceUID) for ds in self.instances}
        uids |= {str(ds.StudyInstanceUID) for ds in self.instances}
        uids |= {str(ds.SeriesInstanceUID) for ds in self.instances}
        return values + sorted(uids)


def make_patient(index: int, ct: int = 3, mr: int = 2) -> Patient:
    phi = make_patient_phi(index, seed=7)
    return Patient(
        phi,
        [as_sent(ds) for ds in make_ct_series(phi, ct, rows=32, cols=32)] if ct else [],
        [as_sent(ds) for ds in make_mr_series(phi, mr, rows=32, cols=32)] if mr else [],
    )


@pytest.fixture(scope="session")
def patient() -> Patient:
    return make_patient(0)


@pytest.fixture(scope="session")
def other_patient() -> Patient:
    return make_patient(1, ct=2, mr=0)


def assert_no_phi(text: str, patients: list[Patient], *, everything: bool = True) -> None:
    for p in patients:
        leaked = [value for value in p.forbidden(everything=everything) if value in text]
        assert not leaked, f"PHI leaked: {leaked[:3]}"


def scu(title: str = SCU) -> AE:
    """A requestor AE with generous timeouts."""
    ae = AE(title)
    ae.acse_timeout = TIMEOUT
    ae.dimse_timeout = TIMEOUT
    ae.network_timeout = TIMEOUT
    return ae


@contextmanager
def associated(ae: AE, port: int, *, called: str = OURS, **kwargs: Any) -> Iterator[Association]:
    """An established association, released at the end."""
    assoc = ae.associate(LOOPBACK, port, ae_title=called, **kwargs)
    assert assoc.is_established, "the association was not accepted"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


@dataclass
class StorageSCP:
    """A plain pynetdicom storage SCP (a C-MOVE destination) that keeps what it receives."""

    server: ThreadedAssociationServer
    received: list[bytes] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


@dataclass
class Biobank:
    """One test's node, its services, the audit calls and the servers started."""

    node: Node
    catalog: Catalog
    ingest: IngestService
    audits: list[Audit] = field(default_factory=list)
    servers: list[DimseServer] = field(default_factory=list)
    peers: list[ThreadedAssociationServer] = field(default_factory=list)

    def settings(self, **overrides: Any) -> DimseSettings:
        values: dict[str, Any] = {
            "ae_title": OURS,
            "host": LOOPBACK,
            "port": 0,
            "allowed_callers": (SCU,),
            "network_timeout": TIMEOUT,
            "acse_timeout": TIMEOUT,
            "dimse_timeout": TIMEOUT,
        }
        values.update(overrides)
        return DimseSettings(**values)

    def serve(self, **overrides: Any) -> DimseServer:
        server = DimseServer(
            self.node,
            settings=self.settings(**overrides),
            ingest=self.ingest,
            catalog=self.catalog,
            audit=self.record,
        )
        self.servers.append(server)
        server.start()
        return server

    def record(self, action: str, resource: str, status: int, client: str, detail: str) -> None:
        self.audits.append((action, resource, status, client, detail))

    def storage_scp(self, title: str) -> StorageSCP:
        ae = AE(title)
        for context in StoragePresentationContexts:  # explicit VR first, as dcmtk's storescp
            assert context.abstract_syntax is not None
            ae.add_supported_context(
                context.abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
            )
        ae.network_timeout = TIMEOUT
        ae.acse_timeout = TIMEOUT
        ae.dimse_timeout = TIMEOUT
        received: list[bytes] = []

        def on_store(event: evt.Event) -> int:
            received.append(event.encoded_dataset())
            return 0x0000

        server = ae.start_server(
            (LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
        )
        assert server is not None
        self.peers.append(server)
        return StorageSCP(server, received)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        for peer in self.peers:
            peer.shutdown()
        self.ingest.close()
        self.catalog.close()


@pytest.fixture
def biobank(tmp_path: Path) -> Iterator[Biobank]:
    node = init_node(tmp_path / "home", site="test", role=NodeRole.SITE)
    catalog = node.open_catalog()
    ingest = IngestService(node, jobs=1, catalog=catalog)
    env = Biobank(node, catalog, ingest)
    try:
        yield env
    finally:
        env.close()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """Capture everything biobank and pynetdicom log, down to DEBUG; returns a reader."""
    caplog.set_level(logging.DEBUG, logger="biobank")
    caplog.set_level(logging.DEBUG, logger="pynetdicom")
    return lambda: caplog.text

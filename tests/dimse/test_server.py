"""The DIMSE service against pynetdicom as the peer, on real loopback associations."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import pytest
from pydicom import Dataset, config
from pydicom.dataelem import DataElement
from pydicom.uid import RLELossless
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from biobank.catalog import BatchState, BatchSummary, StudySummary
from biobank.catalog.search import DicomQuery, QueryLevel
from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from biobank.dimse import Destination, DimseServer, DimseSettings
from biobank.errors import InvalidInput
from tests.dimse.conftest import (
    OURS,
    SCU,
    TIMEOUT,
    Biobank,
    Patient,
    as_sent,
    assert_no_phi,
    associated,
    scu,
)

STORE_CONTEXTS = (CTImageStorage, MRImageStorage)


def store_all(biobank: Biobank, port: int, instances: list[Dataset]) -> list[Dataset]:
    ae = scu()
    for sop_class in STORE_CONTEXTS:
        ae.add_requested_context(sop_class)
    with associated(ae, port) as assoc:
        return [assoc.send_c_store(ds) for ds in instances]


def finished_batch(biobank: Biobank) -> BatchSummary:
    """The latest batch once it is closed (the server closes it just after the release)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        batch = biobank.catalog.batches(limit=1)[0]
        if batch.state is not BatchState.RUNNING or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


def find(port: int, query: Dataset, model: str) -> tuple[list[Dataset], Dataset]:
    """The pending identifiers and the final status of a C-FIND."""
    ae = scu()
    ae.add_requested_context(model)
    matches: list[Dataset] = []
    final = Dataset()
    with associated(ae, port) as assoc:
        for status, identifier in assoc.send_c_find(query, model):
            assert status, "no response to the C-FIND"
            if status.Status in (0xFF00, 0xFF01):
                matches.append(identifier)
            else:
                final = status
    return matches, final


def query(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def keywords(ds: Dataset) -> set[str]:
    return {elem.keyword for elem in ds}


def dataset_bytes(blob: bytes) -> bytes:
    """The data set of a DICOM file: what follows the preamble and the file meta group."""
    assert blob[128:132] == b"DICM"
    group_length = struct.unpack("<I", blob[140:144])[0]
    return blob[144 + group_length :]


@pytest.fixture
def stored(biobank: Biobank, patient: Patient, other_patient: Patient) -> tuple[int, str, str]:
    """A server holding both patients; the port and the first patient's CT and MR study UIDs."""
    server = biobank.serve()
    statuses = store_all(biobank, server.port, patient.instances + other_patient.instances)
    assert [s.Status for s in statuses] == [0] * len(statuses)
    by_patient: dict[str, list[StudySummary]] = {}
    for study in biobank.catalog.find_studies(limit=10):
        by_patient.setdefault(study.patient_pseudonym, []).append(study)
    assert sorted(len(studies) for studies in by_patient.values()) == [1, 2]
    first = next(studies for studies in by_patient.values() if len(studies) == 2)
    ct = next(s.study_instance_uid for s in first if "CT" in s.modalities_in_study)
    mr = next(s.study_instance_uid for s in first if "MR" in s.modalities_in_study)
    return server.port, ct, mr


# --- settings -----------------------------------------------------------------------------


def test_settings_defaults_are_secure() -> None:
    settings = DimseSettings.from_mapping({}, "node.yaml")
    assert settings.ae_title == "BIOBANK"
    assert settings.host == "127.0.0.1"
    assert settings.port == 11112
    assert settings.allowed_callers == ()


def test_settings_read_every_key() -> None:
    settings = DimseSettings.from_mapping(
        {
            "ae_title": " NODE1 ",
            "host": "0.0.0.0",
            "port": 104,
            "allowed_callers": ["CT1", "PACS", "CT1"],
            "destinations": {"PACS": {"host": "10.0.0.5", "port": 104}},
            "max_pdu": 0,
            "max_associations": 4,
            "find_limit": 50,
            "network_timeout": 5,
            "acse_timeout": 2.5,
            "dimse_timeout": 30,
        },
        "node.yaml",
    )
    assert settings.ae_title == "NODE1"
    assert settings.allowed_callers == ("CT1", "PACS")
    assert settings.destination("PACS") == Destination("PACS", "10.0.0.5", 104)
    assert settings.destination("OTHER") is None
    assert (settings.max_pdu, settings.find_limit, settings.acse_timeout) == (0, 50, 2.5)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"ae_title": "A" * 17}, "dimse.ae_title"),
        ({"ae_title": "BAD\\AE"}, "dimse.ae_title"),
        ({"ae_title": "  "}, "dimse.ae_title"),
        ({"port": 70000}, "dimse.port"),
        ({"port": "104"}, "dimse.port"),
        ({"allowed_callers": "CT1"}, "dimse.allowed_callers"),
        ({"allowed_callers": ["CT1", 5]}, "dimse.allowed_callers[1]"),
        ({"destinations": {"PACS": {"host": "x"}}}, "dimse.destinations.PACS"),
        ({"destinations": {"PACS": {"host": "x", "port": 1, "tls": True}}}, "PACS.tls"),
        ({"destinations": ["PACS"]}, "dimse.destinations"),
        ({"max_pdu": 100}, "dimse.max_pdu"),
        ({"find_limit": 20000}, "dimse.find_limit"),
        ({"network_timeout": 0}, "dimse.network_timeout"),
        ({"acse_timeout": True}, "dimse.acse_timeout"),
        ({"portt": 104}, "dimse.portt"),
    ],
)
def test_settings_errors_name_the_key(data: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidInput, match="node.yaml") as info:
        DimseSettings.from_mapping(data, "node.yaml")
    assert named in str(info.value)


def test_settings_from_node(biobank: Biobank) -> None:
    assert DimseSettings.from_node(biobank.node) == DimseSettings()


# --- associations -------------------------------------------------------------------------


def test_echo(biobank: Biobank) -> None:
    server = biobank.serve()
    assert server.port > 0
    ae = scu()
    ae.add_requested_context(Verification)
    with associated(ae, server.port) as assoc:
        assert assoc.send_c_echo().Status == 0x0000


def test_caller_not_allowed_is_rejected(biobank: Biobank, caplog: pytest.LogCaptureFixture) -> None:
    server = biobank.serve()
    ae = scu("INTRUDER")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=OURS)
    assert assoc.is_rejected
    line = next(r.getMessage() for r in caplog.records if "refused" in r.getMessage())
    assert "INTRUDER" in line and "dimse.allowed_callers" in line


def test_empty_allow_list_refuses_everyone(
    biobank: Biobank, caplog: pytest.LogCaptureFixture
) -> None:
    server = biobank.serve(allowed_callers=())
    ae = scu()
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=OURS)
    assert assoc.is_rejected
    assert any("allowed_callers is empty" in r.getMessage() for r in caplog.records)


def test_called_ae_title_must_be_ours(biobank: Biobank, caplog: pytest.LogCaptureFixture) -> None:
    server = biobank.serve()
    ae = scu()
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="SOMEONE")
    assert assoc.is_rejected
    assert any("called AE title SOMEONE" in r.getMessage() for r in caplog.records)


def test_port_in_use_is_a_clear_error(biobank: Biobank) -> None:
    first = biobank.serve()
    with pytest.raises(InvalidInput, match="dimse.port"):
        biobank.serve(port=first.port)


# --- C-STORE ------------------------------------------------------------------------------


def test_store_a_series_deidentified(
    biobank: Biobank, patient: Patient, debug_logs: Callable[[], str]
) -> None:
    server = biobank.serve()
    statuses = store_all(biobank, server.port, patient.ct)
    assert [s.Status for s in statuses] == [0, 0, 0]
    assert biobank.catalog.stats().instances == 3
    studies = biobank.catalog.search(
        DicomQuery(level=QueryLevel.STUDY, include=frozenset({0x00100010, 0x00100020, 0x00081030}))
    ).matches
    assert len(studies) == 1
    name = studies[0]["00100010"]["Value"][0]["Alphabetic"]
    assert name != patient.phi.patient_name
    assert patient.phi.family_name not in str(studies[0])
    assert studies[0]["00100020"]["Value"][0] != patient.phi.patient_id
    sent_uids = {str(ds.SOPInstanceUID) for ds in patient.ct}
    stored_uids = {i.sop_instance_uid for i in biobank.catalog.find_instances()}
    assert len(stored_uids) == 3 and not stored_uids & sent_uids
    # One batch for the association, named after the caller, complete.
    batch = finished_batch(biobank)
    assert batch.sources == (f"C-STORE from {SCU}",)
    assert (batch.state, batch.stored) == (BatchState.COMPLETE, 3)
    # The audit names the stored (de-identified) UIDs.
    stores = [a for a in biobank.audits if a[0] == "dimse.c-store"]
    assert {a[1] for a in stores} == stored_uids
    assert {(a[2], a[3]) for a in stores} == {(0, f"{SCU}@127.0.0.1")}
    assert_no_phi(repr(biobank.audits) + debug_logs(), [patient])


def test_resending_is_success(biobank: Biobank, patient: Patient) -> None:
    server = biobank.serve()
    store_all(biobank, server.port, patient.ct)
    again = store_all(biobank, server.port, patient.ct)
    assert [s.Status for s in again] == [0, 0, 0]
    assert biobank.catalog.stats().instances == 3
    assert finished_batch(biobank).duplicate == 3


def test_a_bad_instance_fails_alone(biobank: Biobank, patient: Patient) -> None:
    server = biobank.serve()
    broken = Dataset()
    broken.update(patient.ct[1])
    broken.file_meta = patient.ct[1].file_meta
    del broken.StudyInstanceUID
    del broken.SeriesInstanceUID
    statuses = store_all(biobank, server.port, [patient.ct[0], broken, patient.ct[2]])
    assert [s.Status for s in statuses] == [0, 0xC000, 0]
    comment = str(statuses[1].ErrorComment)
    assert comment and len(comment) <= 64
    assert biobank.catalog.stats().instances == 2
    failed = [a for a in biobank.audits if a[2] == 0xC000]
    assert len(failed) == 1 and failed[0][1] == "-"
    assert finished_batch(biobank).rejected == 1


def test_stop_interrupts_the_open_batch(biobank: Biobank, patient: Patient) -> None:
    server = biobank.serve()
    ae = scu()
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", server.port, ae_title=OURS)
    assert assoc.is_established
    assert assoc.send_c_store(patient.ct[0]).Status == 0
    server.stop()
    assoc.abort()
    batch = finished_batch(biobank)
    assert (batch.state, batch.stored) == (BatchState.INTERRUPTED, 1)
    assert not server.running


# --- C-FIND -------------------------------------------------------------------------------


def test_find_patients(
    biobank: Biobank, stored: tuple[int, str, str], patient: Patient, other_patient: Patient
) -> None:
    port, _, _ = stored
    matches, final = find(
        port,
        query("PATIENT", PatientName="*", PatientID=""),
        PatientRootQueryRetrieveInformationModelFind,
    )
    assert final.Status == 0
    assert len(matches) == 2
    for match in matches:
        assert keywords(match) == {
            "SpecificCharacterSet",
            "QueryRetrieveLevel",
            "PatientName",
            "PatientID",
        }
        assert match.PatientID and match.PatientID not in (
            patient.phi.patient_id,
            other_patient.phi.patient_id,
        )
    assert_no_phi(str(matches), [patient, other_patient])


def test_find_studies_with_wildcards(
    biobank: Biobank, stored: tuple[int, str, str], patient: Patient, other_patient: Patient
) -> None:
    port, ct, mr = stored
    everything, _ = find(
        port,
        query("STUDY", PatientID="*", StudyInstanceUID="", ModalitiesInStudy="", StudyDate=""),
        StudyRootQueryRetrieveInformationModelFind,
    )
    assert len(everything) == 3
    assert keywords(everything[0]) == {
        "SpecificCharacterSet",
        "QueryRetrieveLevel",
        "PatientID",
        "StudyInstanceUID",
        "ModalitiesInStudy",
        "StudyDate",
    }
    pseudonym = next(m.PatientID for m in everything if m.StudyInstanceUID == ct)
    mine, final = find(
        port,
        query("STUDY", PatientID=pseudonym[:4] + "*", StudyInstanceUID="", ModalitiesInStudy="MR"),
        StudyRootQueryRetrieveInformationModelFind,
    )
    assert final.Status == 0
    assert [m.StudyInstanceUID for m in mine] == [mr]
    assert mine[0].ModalitiesInStudy == "MR"
    assert_no_phi(str(everything), [patient, other_patient])
    finds = [a for a in biobank.audits if a[0] == "dimse.c-find"]
    assert [a[1] for a in finds] == ["STUDY 00100020", "STUDY 00080061,00100020"]
    assert [a[2] for a in finds] == [0, 0]


def test_find_series_and_images(biobank: Biobank, stored: tuple[int, str, str]) -> None:
    port, ct, _ = stored
    series, _ = find(
        port,
        query("SERIES", StudyInstanceUID=ct, SeriesInstanceUID="", Modality="", SeriesNumber=""),
        StudyRootQueryRetrieveInformationModelFind,
    )
    assert len(series) == 1 and series[0].Modality == "CT"
    assert keywords(series[0]) == {
        "SpecificCharacterSet",
        "QueryRetrieveLevel",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
    }
    images, final = find(
        port,
        query(
            "IMAGE",
            PatientID="",
            StudyInstanceUID=ct,
            SeriesInstanceUID=series[0].SeriesInstanceUID,
            SOPInstanceUID="",
            InstanceNumber="",
        ),
        PatientRootQueryRetrieveInformationModelFind,
    )
    assert final.Status == 0
    assert sorted(int(i.InstanceNumber) for i in images) == [1, 2, 3]
    assert all(i.PatientID and i.QueryRetrieveLevel == "IMAGE" for i in images)
    assert "InstanceAvailability" not in keywords(images[0])  # not asked for


def test_find_refusals(biobank: Biobank, stored: tuple[int, str, str]) -> None:
    port, _, _ = stored
    _, final = find(
        port, query("PATIENT", PatientName="*"), StudyRootQueryRetrieveInformationModelFind
    )
    assert final.Status == 0xA900
    assert "QueryRetrieveLevel" in str(final.ErrorComment)
    bad_date = query("STUDY", StudyInstanceUID="")
    bad_date.add(DataElement(0x00080020, "DA", "2024", validation_mode=config.IGNORE))
    _, final = find(port, bad_date, StudyRootQueryRetrieveInformationModelFind)
    assert final.Status == 0xC000
    assert "date" in str(final.ErrorComment)


def test_find_reads_character_sets_and_sequences(
    biobank: Biobank, stored: tuple[int, str, str]
) -> None:
    port, ct, _ = stored
    identifier = query("STUDY", PatientName="Mü*", StudyInstanceUID="", ProcedureCodeSequence=[])
    identifier.SpecificCharacterSet = "ISO_IR 100"
    none, final = find(port, identifier, StudyRootQueryRetrieveInformationModelFind)
    assert (none, final.Status) == ([], 0)
    identifier = query("STUDY", StudyInstanceUID=ct, ProcedureCodeSequence=[], SeriesNumber="")
    (match,), final = find(port, identifier, StudyRootQueryRetrieveInformationModelFind)
    assert final.Status == 0
    assert keywords(match) == {
        "SpecificCharacterSet",
        "QueryRetrieveLevel",
        "StudyInstanceUID",
        "ProcedureCodeSequence",
        "SeriesNumber",
    }
    assert match.SeriesNumber is None  # a key of a level below: returned empty


def test_find_limit(biobank: Biobank, stored: tuple[int, str, str]) -> None:
    server = biobank.serve(find_limit=2)
    matches, final = find(
        server.port,
        query("STUDY", StudyInstanceUID=""),
        StudyRootQueryRetrieveInformationModelFind,
    )
    assert matches == []
    assert final.Status == 0xA700
    assert "narrow" in str(final.ErrorComment)
    two, final = find(
        server.port,
        query("PATIENT", PatientID=""),
        PatientRootQueryRetrieveInformationModelFind,
    )
    assert (len(two), final.Status) == (2, 0)


# --- C-GET --------------------------------------------------------------------------------


def _get(
    port: int, identifier: Dataset, model: str, syntaxes: list[str] | None = None
) -> tuple[list[bytes], Dataset]:
    received: list[bytes] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.request.DataSet.getvalue())  # type: ignore[union-attr]
        return 0x0000

    ae = scu()
    ae.add_requested_context(model)
    roles = []
    for sop_class in STORE_CONTEXTS:
        if syntaxes:
            ae.add_requested_context(sop_class, syntaxes)
        else:
            ae.add_requested_context(sop_class)
        roles.append(build_role(sop_class, scp_role=True))
    final = Dataset()
    with associated(ae, port, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
        for status, _ in assoc.send_c_get(identifier, model):
            assert status, "no response to the C-GET"
            if status.Status != 0xFF00:
                final = status
    return received, final


def test_get_sends_the_stored_bytes(
    biobank: Biobank, stored: tuple[int, str, str], patient: Patient
) -> None:
    port, ct, _ = stored
    received, final = _get(
        port, query("STUDY", StudyInstanceUID=ct), StudyRootQueryRetrieveInformationModelGet
    )
    assert (final.Status, final.NumberOfCompletedSuboperations) == (0, 3)
    store = biobank.node.open_store()
    blobs = [
        dataset_bytes(store.get(i.blob_digest))
        for i in biobank.catalog.find_instances(study_instance_uid=ct)
    ]
    assert sorted(received) == sorted(blobs)
    get = next(a for a in biobank.audits if a[0] == "dimse.c-get")
    assert (get[1], get[2]) == (ct, 0)
    assert "3 completed" in get[4]
    assert_no_phi(b"".join(received).decode("latin-1"), [patient], everything=False)


def test_compressed_instances_travel_as_sent(biobank: Biobank) -> None:
    server = biobank.serve()
    phi = make_patient_phi(5, seed=7)
    instances = []
    for ds in make_ct_series(phi, 2, rows=32, cols=32):
        ds.compress(RLELossless)
        instances.append(as_sent(ds))
    ae = scu()
    ae.add_requested_context(CTImageStorage, [RLELossless])  # no uncompressed fallback
    with associated(ae, server.port) as assoc:
        assert [assoc.send_c_store(ds).Status for ds in instances] == [0, 0]
    stored = biobank.catalog.find_instances()
    assert {i.transfer_syntax_uid for i in stored} == {RLELossless}
    study = stored[0].study_instance_uid
    received, final = _get(
        server.port,
        query("STUDY", StudyInstanceUID=study),
        StudyRootQueryRetrieveInformationModelGet,
        syntaxes=[RLELossless],
    )
    assert (final.Status, len(received)) == (0, 2)
    store = biobank.node.open_store()
    assert sorted(received) == sorted(dataset_bytes(store.get(i.blob_digest)) for i in stored)


def test_get_patient_level(biobank: Biobank, stored: tuple[int, str, str]) -> None:
    port, ct, mr = stored
    pseudonym = biobank.catalog.find_studies(study_instance_uid=ct)[0].patient_pseudonym
    received, final = _get(
        port,
        query("PATIENT", PatientID=pseudonym),
        PatientRootQueryRetrieveInformationModelGet,
    )
    assert (final.Status, len(received)) == (0, 5)
    get = next(a for a in biobank.audits if a[0] == "dimse.c-get")
    assert set(get[1].split(",")) == {ct, mr}


def test_get_needs_the_unique_key(biobank: Biobank, stored: tuple[int, str, str]) -> None:
    port, _, _ = stored
    received, final = _get(
        port, query("STUDY", StudyInstanceUID=""), StudyRootQueryRetrieveInformationModelGet
    )
    assert received == []
    assert final.Status == 0xA900
    assert "StudyInstanceUID" in str(final.ErrorComment)


# --- C-MOVE -------------------------------------------------------------------------------


def _move(port: int, identifier: Dataset, destination: str, model: str) -> Dataset:
    ae = scu()
    ae.add_requested_context(model)
    final = Dataset()
    with associated(ae, port) as assoc:
        for status, _ in assoc.send_c_move(identifier, destination, model):
            assert status, "no response to the C-MOVE"
            if status.Status != 0xFF00:
                final = status
    return final


def test_move_to_a_destination(
    biobank: Biobank,
    patient: Patient,
    other_patient: Patient,
    debug_logs: Callable[[], str],
) -> None:
    dest = biobank.storage_scp("DEST")
    server = biobank.serve(destinations=(Destination("DEST", "127.0.0.1", dest.port),))
    store_all(biobank, server.port, patient.instances + other_patient.instances)
    ct = next(
        s.study_instance_uid
        for s in biobank.catalog.find_studies(modality="CT", limit=10)
        if s.number_of_instances == 3
    )
    series = biobank.catalog.find_series(study_instance_uid=ct)[0].series_instance_uid
    final = _move(
        server.port,
        query("SERIES", StudyInstanceUID=ct, SeriesInstanceUID=series),
        "DEST",
        StudyRootQueryRetrieveInformationModelMove,
    )
    assert (final.Status, final.NumberOfCompletedSuboperations) == (0, 3)
    store = biobank.node.open_store()
    blobs = {
        dataset_bytes(store.get(i.blob_digest))
        for i in biobank.catalog.find_instances(series_instance_uid=series)
    }
    assert {dataset_bytes(data) for data in dest.received} == blobs
    move = next(a for a in biobank.audits if a[0] == "dimse.c-move")
    assert (move[1], move[2]) == (series, 0)
    assert "to DEST" in move[4]
    # PHI never appears in what was logged or audited, or in what was sent on.
    assert_no_phi(repr(biobank.audits) + debug_logs(), [patient, other_patient])
    sent = b"".join(dest.received).decode("latin-1")
    assert_no_phi(sent, [patient, other_patient], everything=False)


def test_move_to_an_unknown_destination(biobank: Biobank, stored: tuple[int, str, str]) -> None:
    port, ct, _ = stored
    final = _move(
        port,
        query("STUDY", StudyInstanceUID=ct),
        "NOWHERE",
        PatientRootQueryRetrieveInformationModelMove,
    )
    assert final.Status == 0xA801
    move = next(a for a in biobank.audits if a[0] == "dimse.c-move")
    assert (move[1], move[2]) == ("-", 0xA801)


def test_move_with_a_bad_identifier(biobank: Biobank, patient: Patient) -> None:
    dest = biobank.storage_scp("DEST")
    server = biobank.serve(destinations=(Destination("DEST", "127.0.0.1", dest.port),))
    final = _move(
        server.port,
        query("SERIES", StudyInstanceUID="1.2.3"),
        "DEST",
        StudyRootQueryRetrieveInformationModelMove,
    )
    assert final.Status == 0xA900
    assert "SeriesInstanceUID" in str(final.ErrorComment)
    assert dest.received == []


def test_audit_failure_does_not_fail_the_request(biobank: Biobank, patient: Patient) -> None:
    def broken(action: str, resource: str, status: int, client: str, detail: str) -> None:
        raise RuntimeError("the access log is down")

    server = DimseServer(
        biobank.node,
        settings=biobank.settings(),
        ingest=biobank.ingest,
        catalog=biobank.catalog,
        audit=broken,
    )
    biobank.servers.append(server)
    server.start()
    statuses = store_all(biobank, server.port, patient.ct[:1])
    assert statuses[0].Status == 0

"""The DIMSE service against dcmtk's command-line peers (echoscu, storescu, findscu, movescu,
getscu, storescp): a real, independent implementation of the protocol.

dcmtk is a Debian package that ``make test`` installs (Makefile ``APT_PACKAGES``); when a tool
is missing the tests fail with the command to install it, never skip — a skip would hide a
failure.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from biobank.catalog import StudySummary
from biobank.dicom.synthetic import CorpusSummary, write_corpus
from biobank.dimse import Destination, DimseServer
from tests.dimse.conftest import LOOPBACK, OURS, SCU, Biobank

pytestmark = pytest.mark.peer

TOOLS = ("echoscu", "storescu", "findscu", "movescu", "getscu", "storescp")
#: Seconds: generous, for a 2-core machine running the whole suite in parallel.
TIMEOUT = 120
NET = ["-to", "60", "-ta", "60", "-td", "120"]


@pytest.fixture(autouse=True)
def dcmtk() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"dcmtk tools missing: {', '.join(missing)}; install them with "
            "`apt-get install -y dcmtk` (make test does it through APT_PACKAGES)",
            pytrace=False,
        )


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result


def peer(port: int, *, calling: str = SCU, called: str = OURS) -> list[str]:
    return ["-aet", calling, "-aec", called, *NET, LOOPBACK, str(port)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusSummary:
    """Two patients, a CT (3 slices) and an MR (2 slices) each, written as files."""
    return write_corpus(
        tmp_path_factory.mktemp("corpus"),
        patients=2,
        ct_slices=3,
        mr_slices=2,
        ct_size=32,
        mr_size=32,
        seed=5,
    )


@pytest.fixture
def loaded(biobank: Biobank, corpus: CorpusSummary) -> tuple[DimseServer, StudySummary]:
    """A server holding the corpus, stored by storescu; a CT study of it."""
    server = biobank.serve()
    ok(run("storescu", *peer(server.port), "+sd", "+r", corpus.root))
    assert biobank.catalog.stats().instances == corpus.files
    ct = next(s for s in biobank.catalog.find_studies(modality="CT", limit=10))
    return server, ct


def planted(corpus: CorpusSummary) -> list[str]:
    """The planted patient identifiers (device identity is kept by the research profile)."""
    return [
        value
        for phi in corpus.patients
        for kind, values in phi.categories().items()
        if kind != "equipment"
        for value in values
        if len(value) >= 4
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """dcmtk's storescp as the C-MOVE destination DEST; its port and output folder."""
    out = tmp_path / "storescp"
    out.mkdir()
    for _attempt in range(5):  # the free port may be taken before storescp binds it
        port = free_port()
        process = subprocess.Popen(
            ["storescp", "-aet", "DEST", "-od", str(out), *NET[2:], str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if run("echoscu", *peer(port, called="DEST")).returncode == 0:
                break
            time.sleep(0.2)
        if process.poll() is None:
            break
    else:
        pytest.fail("storescp did not start on a free port", pytrace=False)
    try:
        yield port, out
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_echoscu(biobank: Biobank) -> None:
    server = biobank.serve()
    ok(run("echoscu", *peer(server.port)))
    refused = run("echoscu", *peer(server.port, calling="INTRUDER"))
    assert refused.returncode != 0
    wrong_called = run("echoscu", *peer(server.port, called="OTHER"))
    assert wrong_called.returncode != 0


def test_storescu_folder(biobank: Biobank, corpus: CorpusSummary) -> None:
    server = biobank.serve()
    result = ok(run("storescu", *peer(server.port), "+sd", "+r", corpus.root))
    stats = biobank.catalog.stats()
    assert (stats.patients, stats.studies, stats.instances) == (2, 4, corpus.files)
    # Again: every instance is a duplicate, and a duplicate is a success.
    ok(run("storescu", *peer(server.port), "+sd", "+r", corpus.root))
    assert biobank.catalog.stats().instances == corpus.files
    batch = biobank.catalog.batches(limit=1)[0]
    assert (batch.duplicate, batch.sources) == (corpus.files, (f"C-STORE from {SCU}",))
    said = repr(biobank.audits) + result.stdout + result.stderr
    assert not [v for v in planted(corpus) if v in said]


def test_findscu_studies(
    loaded: tuple[DimseServer, StudySummary], tmp_path: Path, corpus: CorpusSummary
) -> None:
    server, _ = loaded
    ok(
        run(
            "findscu",
            "-S",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientName=*",
            "-k",
            "StudyInstanceUID",
            "-k",
            "ModalitiesInStudy",
            "-X",
            "-od",
            tmp_path,
            *peer(server.port),
        )
    )
    responses = [dcmread(path) for path in sorted(tmp_path.glob("rsp*.dcm"))]
    assert len(responses) == 4
    for response in responses:
        assert {e.keyword for e in response} == {
            "SpecificCharacterSet",
            "QueryRetrieveLevel",
            "PatientName",
            "StudyInstanceUID",
            "ModalitiesInStudy",
        }
        assert str(response.PatientName) not in {p.patient_name for p in corpus.patients}
    assert sorted(str(r.ModalitiesInStudy) for r in responses) == ["CT", "CT", "MR", "MR"]


def test_findscu_series_of_a_study(
    loaded: tuple[DimseServer, StudySummary], tmp_path: Path
) -> None:
    server, ct = loaded
    ok(
        run(
            "findscu",
            "-P",
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            f"StudyInstanceUID={ct.study_instance_uid}",
            "-k",
            "SeriesInstanceUID",
            "-k",
            "Modality",
            "-k",
            "NumberOfSeriesRelatedInstances",
            "-X",
            "-od",
            tmp_path,
            *peer(server.port),
        )
    )
    (response,) = [dcmread(path) for path in tmp_path.glob("rsp*.dcm")]
    assert response.Modality == "CT"
    assert int(response.NumberOfSeriesRelatedInstances) == 3


def test_movescu_to_storescp(
    biobank: Biobank,
    loaded: tuple[DimseServer, StudySummary],
    storescp: tuple[int, Path],
    corpus: CorpusSummary,
) -> None:
    _, ct = loaded
    dest_port, out = storescp
    server = biobank.serve(destinations=(Destination("DEST", LOOPBACK, dest_port),))
    ok(
        run(
            "movescu",
            "-S",
            "-aem",
            "DEST",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={ct.study_instance_uid}",
            *peer(server.port),
        )
    )
    files = sorted(p for p in out.iterdir() if p.is_file())
    instances = biobank.catalog.find_instances(study_instance_uid=ct.study_instance_uid)
    expected = {i.sop_instance_uid for i in instances}
    assert {str(dcmread(p).SOPInstanceUID) for p in files} == expected
    unknown = run(
        "movescu",
        "-S",
        "-aem",
        "NOWHERE",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={ct.study_instance_uid}",
        *peer(server.port),
    )
    assert unknown.returncode != 0
    assert "MoveDestinationUnknown" in unknown.stdout + unknown.stderr


def test_getscu_into_a_folder(
    biobank: Biobank,
    loaded: tuple[DimseServer, StudySummary],
    tmp_path: Path,
    corpus: CorpusSummary,
) -> None:
    server, ct = loaded
    ok(
        run(
            "getscu",
            "-S",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={ct.study_instance_uid}",
            "-od",
            tmp_path,
            *peer(server.port),
        )
    )
    files = sorted(p for p in tmp_path.iterdir() if p.is_file())
    store = biobank.node.open_store()
    expected = {
        i.sop_instance_uid: dcmread(store.path(i.blob_digest))
        for i in biobank.catalog.find_instances(study_instance_uid=ct.study_instance_uid)
    }
    got = {str(ds.SOPInstanceUID): ds for ds in (dcmread(p) for p in files)}
    assert got.keys() == expected.keys()
    for uid, ds in got.items():
        assert ds.PixelData == expected[uid].PixelData
        assert ds.PatientID == expected[uid].PatientID
    text = b"".join(p.read_bytes() for p in files).decode("latin-1")
    assert not [v for v in planted(corpus) if v in text]

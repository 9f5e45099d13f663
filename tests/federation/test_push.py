"""``biobank push``: a local site node pushes to a CENTRAL node served by uvicorn on loopback."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from typer.testing import CliRunner

from biobank.catalog import BatchState, InstanceSummary, ItemInput, ItemOutcome
from biobank.cli.main import app
from biobank.dicom.json import header_json
from biobank.dicom.synthetic import make_ct_series, make_patient_phi, write_corpus
from biobank.errors import InvalidInput
from biobank.federation import (
    Destination,
    JournalEntry,
    PushJournal,
    PushOptions,
    StudyState,
    push,
)
from biobank.federation.push import batches
from biobank.ingest.attributes import instance_record
from biobank.ingest.node import Node, NodeRole, init_node
from biobank.ingest.pipeline import ingest
from tests.api.conftest import dicom_bytes, serve_node

EXE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "biobank"
runner = CliRunner()


# --- fixtures and helpers ------------------------------------------------------------------


def _site(root: Path, patients: int, ct: int, mr: int) -> Node:
    node = init_node(root / "site", site="A", role=NodeRole.SITE)
    write_corpus(
        root / "src", patients=patients, ct_slices=ct, mr_slices=mr, ct_size=32, mr_size=32
    )
    report = ingest(node, [root / "src"], jobs=1)
    assert report.summary()["stored"] == patients * (ct + mr)
    return node


@pytest.fixture(scope="module")
def site_node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    """Two patients, each a CT study (8 instances) and an MR study (4): 24 instances."""
    return _site(tmp_path_factory.mktemp("push-site"), patients=2, ct=8, mr=4)


@pytest.fixture
def site(site_node: Node) -> Node:
    """The site node with no push journal: each test pushes to a new central node, which
    may get the loopback port (hence the journal) of an earlier one."""
    shutil.rmtree(site_node.home / "push", ignore_errors=True)
    return site_node


def _words(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


@dataclass
class Central:
    url: str
    tokens: dict[str, str]
    node: Node

    def client(self, user: str = "admin") -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[user]}"}
        )

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicomweb"

    def destination(self, user: str = "up1") -> Destination:
        return Destination.from_url(self.dicomweb, self.tokens[user])

    def items(self, *, settle: bool = True) -> dict[str, float]:
        """``biobank_ingest_items_total`` by outcome, from /metrics (``settle``: once the
        requests in flight are done)."""
        with self.client("admin") as client:
            deadline = time.monotonic() + 20
            while True:
                text = client.get("/metrics").text
                busy = re.search(r"^biobank_http_requests_in_flight (\S+)", text, re.M)
                # The /metrics request itself is in flight.
                idle = busy is None or float(busy.group(1)) <= 1
                if not settle or idle or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        found = re.findall(
            r'^biobank_ingest_items_total\{channel="stow-rs",outcome="(\w+)"\} (\S+)', text, re.M
        )
        return {outcome: float(value) for outcome, value in found}

    def instances(self, study: str) -> list[InstanceSummary]:
        catalog = self.node.open_catalog()
        try:
            return catalog.find_instances(study_instance_uid=study, limit=10_000)
        finally:
            catalog.close()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    node = init_node(tmp_path / "central", site="hub", role=NodeRole.CENTRAL)
    thread, tokens = serve_node(node, jobs=1)  # inline checks: no worker pool to start
    with thread as port:
        yield Central(f"http://127.0.0.1:{port}", tokens, node)


def _studies(node: Node) -> list[Any]:
    catalog = node.open_catalog()
    try:
        return catalog.find_studies(limit=100)
    finally:
        catalog.close()


def _local_instances(node: Node, study: str) -> list[InstanceSummary]:
    catalog = node.open_catalog()
    try:
        return catalog.find_instances(study_instance_uid=study, limit=10_000)
    finally:
        catalog.close()


class Counting(httpx.BaseTransport):
    """The network, counting requests (and the instances of each STOW-RS request)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[tuple[str, str]] = []
        self.posted_parts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if request.method == "POST":
            self.posted_parts += request.content.count(b"Content-Type: application/dicom\r\n")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()

    @property
    def posts(self) -> int:
        return sum(1 for method, _ in self.requests if method == "POST")


class Faulty(Counting):
    """Counting, with faults injected into STOW-RS requests, one per POST, in order."""

    def __init__(self, faults: list[str]) -> None:
        super().__init__()
        self.faults = list(faults)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not self.faults:
            return super().handle_request(request)
        fault = self.faults.pop(0)
        if fault == "reset":
            self.requests.append((request.method, request.url.path))
            raise httpx.ConnectError("connection reset by the fault injector", request=request)
        if fault == "lost-answer":  # the destination stores the batch, the answer is lost
            response = super().handle_request(request)
            response.read()
            response.close()
            raise httpx.ReadTimeout("answer lost by the fault injector", request=request)
        self.requests.append((request.method, request.url.path))
        status, _, after = fault.partition(":")
        headers = {"Retry-After": after} if after else {}
        return httpx.Response(int(status), headers=headers, text="busy")


# --- pure parts ----------------------------------------------------------------------------


def test_destination_url_and_key() -> None:
    one = Destination.from_url("https://hub.example.org/dicomweb/", "bb_secret_token")
    assert one.url == "https://hub.example.org/dicomweb"
    assert one.key == Destination.from_url("https://hub.example.org/dicomweb").key
    assert "secret" not in repr(one) and "secret" not in str(one)
    for bad in ("ftp://x/dicomweb", "hub/dicomweb", "https://u:p@hub/dicomweb", "http://h/d?x=1"):
        with pytest.raises(InvalidInput):
            Destination.from_url(bad)
    with pytest.raises(InvalidInput):
        PushOptions(batch_instances=0)


def test_batches_respect_count_and_bytes() -> None:
    def inst(size: int) -> InstanceSummary:
        return InstanceSummary("1", "2", "3", "4", None, None, None, None, None, "d", size)

    sizes = [[len(g) for g in batches([inst(10)] * 7, 3, 1000)]]
    assert sizes == [[3, 3, 1]]
    groups = list(batches([inst(40), inst(40), inst(40), inst(500), inst(1)], 10, 100))
    assert [[i.blob_size for i in g] for g in groups] == [[40, 40], [40], [500], [1]]


def test_journal_ignores_a_torn_line_and_closes_it(tmp_path: Path) -> None:
    journal = PushJournal(tmp_path / "push" / "k.jsonl")
    journal.record(JournalEntry("1.2.3", 5, 500))
    with journal.path.open("a") as f:
        f.write('{"study":"9.9","instan')  # a crash in the middle of a line
    again = PushJournal(journal.path)
    assert set(again.entries()) == {"1.2.3"}
    again.record(JournalEntry("4.5.6", 1, 10))
    assert set(PushJournal(journal.path).entries()) == {"1.2.3", "4.5.6"}
    assert oct(journal.path.stat().st_mode & 0o777) == "0o600"


# --- against a central node ----------------------------------------------------------------


def test_push_two_studies_then_rerun_sends_nothing(site: Node, central: Central) -> None:
    chosen = [s.study_instance_uid for s in _studies(site)[:2]]
    expected = {uid: _local_instances(site, uid) for uid in chosen}
    total = sum(len(v) for v in expected.values())
    wire = Counting()
    report = push(
        site,
        central.destination(),
        studies=chosen,
        options=PushOptions(batch_instances=5),
        transport=wire,
    )
    assert report.ok, report.to_json()
    summary = report.summary()
    assert summary["pushed"] == 2 and summary["instances_sent"] == total == wire.posted_parts
    assert summary["already_present"] == 0 and summary["bytes_sent"] > 0
    for uid, local in expected.items():
        there = central.instances(uid)
        # The central node stores the site's bytes as they are: same digests.
        assert sorted((i.sop_instance_uid, i.blob_digest) for i in there) == sorted(
            (i.sop_instance_uid, i.blob_digest) for i in local
        )
        with central.client("up1") as client:
            (study,) = client.get("/dicomweb/studies", params={"StudyInstanceUID": uid}).json()
        assert study["00201208"]["Value"] == [len(local)]
    assert central.items() == {"stored": total}

    # Re-run: the journal says both are there and unchanged: not a single request.
    quiet = Counting()
    again = push(site, central.destination(), studies=chosen, transport=quiet)
    assert again.ok and again.summary()["skipped"] == 2 and quiet.requests == []
    # --recheck asks the destination, which holds everything: no STOW-RS request.
    asked = Counting()
    checked = push(
        site,
        central.destination(),
        studies=chosen,
        options=PushOptions(recheck=True),
        transport=asked,
    )
    assert checked.ok and checked.summary()["already_present"] == total
    assert asked.posts == 0 and asked.requests
    assert central.items() == {"stored": total}


def test_an_interrupted_push_resumes_without_duplicates(site: Node, central: Central) -> None:
    chosen = [s.study_instance_uid for s in _studies(site)]
    total = sum(s.number_of_instances for s in _studies(site))

    def crash(study: object) -> None:
        raise KeyboardInterrupt("interrupted after the first batch")

    with pytest.raises(KeyboardInterrupt):
        push(
            site,
            central.destination(),
            studies=chosen,
            options=PushOptions(batch_instances=3),
            after_batch=crash,
        )
    assert central.items() == {"stored": 3}
    journal = PushJournal.for_destination(site.home, central.destination())
    assert journal.entries() == {}
    wire = Counting()
    report = push(
        site, central.destination(), options=PushOptions(batch_instances=3), transport=wire
    )
    assert report.ok, report.to_json()
    assert report.summary()["already_present"] == 3
    assert wire.posted_parts == report.summary()["instances_sent"] == total - 3
    assert central.items() == {"stored": total}  # no duplicate was ever sent
    assert len(PushJournal(journal.path).entries()) == 4


@pytest.mark.slow
def test_a_killed_cli_push_is_completed_by_a_rerun(site: Node, central: Central) -> None:
    total = sum(s.number_of_instances for s in _studies(site))
    env = {**os.environ, "BIOBANK_PUSH_TOKEN": central.tokens["up1"]}
    env.pop("BIOBANK_DATABASE_URL", None)
    command = [
        str(EXE), "push", "--to", central.dicomweb, "--all", "--home", str(site.home),
        "--batch", "1", "--json",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if central.items(settle=False).get("stored", 0) >= 3:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the push finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    stored_at_kill = central.items().get("stored", 0)
    assert 3 <= stored_at_kill < total
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)["summary"]
    assert summary["pushed"] + summary["skipped"] == 4
    assert summary["instances_sent"] + summary["already_present"] == total
    assert summary["already_present"] >= stored_at_kill
    assert central.items() == {"stored": total}  # each instance sent once
    for study in _studies(site):
        assert len(central.instances(study.study_instance_uid)) == study.number_of_instances


def test_retries_back_off_and_never_resend_what_arrived(site: Node, central: Central) -> None:
    study = _studies(site)[0].study_instance_uid
    n = len(_local_instances(site, study))
    waits: list[float] = []
    wire = Faulty(["503:0", "reset", "429:7", "lost-answer"])
    report = push(site, central.destination(), studies=[study], transport=wire, sleep=waits.append)
    assert report.ok, report.to_json()
    # Backoff 0.5, 1, then Retry-After 7 (more than the backoff of 2), then 4.
    assert waits == [0.5, 1.0, 7.0, 4.0]
    # The last answer was lost after the destination stored the batch: it was asked again
    # and nothing was resent.
    assert wire.posts == 4 and central.items() == {"stored": n}
    assert report.studies[0].already_present == n and report.studies[0].sent == 0


def test_an_unreachable_destination_stops_with_what_to_do(site: Node, central: Central) -> None:
    study = _studies(site)[0].study_instance_uid
    waits: list[float] = []
    report = push(
        site, central.destination(), studies=[study], transport=Faulty(["502"] * 3),
        options=PushOptions(attempts=3, backoff_seconds=1, max_backoff_seconds=1.5),
        sleep=waits.append,
    )  # fmt: skip
    assert waits == [1.0, 1.5]
    assert report.stopped is not None and not report.ok
    assert study in report.stopped and "3 times" in report.stopped
    assert "run biobank push again" in report.stopped
    assert report.studies[0].state is StudyState.FAILED


def test_a_refused_request_fails_its_study_and_the_push_goes_on(
    site: Node, central: Central
) -> None:
    first, second = (s.study_instance_uid for s in _studies(site)[:2])
    report = push(site, central.destination(), studies=[first, second], transport=Faulty(["413"]))
    one, two = report.studies
    assert report.stopped is None and not report.ok
    assert one.state is StudyState.FAILED and len(one.failed) == one.instances
    assert "HTTP 413" in one.failed[0].reason and "--batch" in one.failed[0].reason
    assert "does not list the study" in one.problems[0]  # nothing of it arrived
    assert two.state is StudyState.PUSHED and two.sent == two.instances
    assert central.items() == {"stored": two.instances}


def test_a_wrong_token_is_a_clear_error(site: Node, central: Central, tmp_path: Path) -> None:
    base = ["push", "--to", central.dicomweb, "--all", "--home", str(site.home), "--json"]
    bad = runner.invoke(app, [*base, "--token", "bb_nope_nope"])
    assert bad.exit_code == 2
    assert "refused the token (HTTP 401" in _words(bad.stderr) and "--token" in bad.stderr
    assert json.loads(bad.stdout)["summary"]["not_attempted"] == 3
    researcher = runner.invoke(app, [*base, "--token", central.tokens["res"]])
    assert researcher.exit_code == 2 and "HTTP 403" in _words(researcher.stderr)
    assert "uploader, curator or admin" in _words(researcher.stderr)
    assert central.items() == {}


def test_cli_json_and_table(site: Node, central: Central) -> None:
    chosen = _studies(site)[0].study_instance_uid
    args = ["push", "--to", central.dicomweb, "--home", str(site.home), "--study", chosen]
    result = runner.invoke(
        app, [*args, "--json"], env={"BIOBANK_PUSH_TOKEN": central.tokens["cur"]}
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["summary"]["pushed"] == 1 and document["summary"]["failed"] == 0
    assert document["studies"][0]["study_instance_uid"] == chosen
    table = runner.invoke(app, [*args, "--token", central.tokens["cur"]])
    assert table.exit_code == 0 and "skipped (journal)" in _words(table.stdout)
    neither = runner.invoke(app, ["push", "--to", central.dicomweb, "--home", str(site.home)])
    assert neither.exit_code == 2 and "--study UID" in _words(neither.stderr)
    unknown = runner.invoke(
        app, [*args, "--study", "1.2.3.4", "--token", central.tokens["cur"], "--json"]
    )
    assert unknown.exit_code == 1
    states = {s["study_instance_uid"]: s for s in json.loads(unknown.stdout)["studies"]}
    assert states["1.2.3.4"]["state"] == "failed" and states[chosen]["state"] == "skipped"
    assert "not in this node's catalogue" in states["1.2.3.4"]["problems"][0]


# --- an instance the destination refuses ---------------------------------------------------


@pytest.fixture
def dirty(tmp_path: Path) -> tuple[Node, str, str]:
    """A site node whose CT study also holds one instance that was never de-identified."""
    node = _site(tmp_path / "dirty", patients=1, ct=4, mr=3)
    catalog = node.open_catalog()
    try:
        ct = next(s for s in catalog.find_studies() if "CT" in s.modalities_in_study)
        (series,) = catalog.find_series(study_instance_uid=ct.study_instance_uid)
        raw = make_ct_series(make_patient_phi(0, seed=0), 6, rows=32, cols=32)[5]
        raw.StudyInstanceUID = ct.study_instance_uid
        raw.SeriesInstanceUID = series.series_instance_uid
        raw.PatientID = ct.patient_pseudonym  # the patient's pseudonym, but the real name
        data = dicom_bytes(raw)
        blob = node.open_store().put(data)
        ds = pydicom.dcmread(io.BytesIO(data))
        record = instance_record(
            ds,
            transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
            blob_digest=blob.digest,
            blob_size=blob.size,
            header_json=header_json(ds),
            deid_record_json=None,
        )
        batch = catalog.start_batch(role="site", sources=["test"], profile=None, key_id=None)
        (result,) = catalog.record_items(
            batch, [ItemInput("raw", ItemOutcome.STORED, "", record, len(data))]
        )
        catalog.finish_batch(batch, state=BatchState.COMPLETE)
        assert result.outcome is ItemOutcome.STORED
    finally:
        catalog.close()
    return node, ct.study_instance_uid, str(raw.SOPInstanceUID)


def test_a_blob_missing_here_is_reported_and_the_rest_sent(
    dirty: tuple[Node, str, str], central: Central
) -> None:
    node, ct_study, _ = dirty
    mr_study = next(
        s.study_instance_uid for s in _studies(node) if s.study_instance_uid != ct_study
    )
    lost, *kept = _local_instances(node, mr_study)
    node.open_store().path(lost.blob_digest).unlink()
    report = push(node, central.destination(), studies=[mr_study])
    (study,) = report.studies
    assert study.state is StudyState.FAILED and study.sent == len(kept)
    (failed,) = study.failed
    assert failed.sop_instance_uid == lost.sop_instance_uid
    assert "biobank verify" in failed.reason


def test_a_refused_instance_is_reported_and_other_studies_pushed(
    dirty: tuple[Node, str, str], central: Central
) -> None:
    node, ct_study, raw_uid = dirty
    args = ["push", "--to", central.dicomweb, "--all", "--home", str(node.home), "--json"]
    result = runner.invoke(app, [*args, "--token", central.tokens["up1"], "--batch", "2"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    studies = {s["study_instance_uid"]: s for s in document["studies"]}
    ct, (mr,) = studies.pop(ct_study), studies.values()
    assert mr["state"] == "pushed" and mr["sent"] == 3
    assert ct["state"] == "failed" and ct["sent"] == 4
    (refused,) = ct["failed"]
    assert refused["sop_instance_uid"] == raw_uid and refused["code"] == 0xC000
    assert "not de-identified, a central node refuses it" in refused["reason"]
    assert "counts disagree" in ct["problems"][0] and "5 instances here, 4 at" in ct["problems"][0]
    journal = PushJournal.for_destination(node.home, central.destination())
    assert set(journal.entries()) == {mr["study_instance_uid"]}  # never the failed study
    table = runner.invoke(app, [*args[:-1], "--token", central.tokens["up1"]])
    assert table.exit_code == 1
    assert "not de-identified" in _words(table.stdout) and raw_uid in _words(table.stdout)
    # The refused instance's PHI never reached the central node.
    phi = make_patient_phi(0, seed=0)
    with central.client("cur") as client:
        text = client.get("/dicomweb/studies", params={"includefield": "all"}).text
    assert phi.family_name not in text

"""The file runner behind ``biobank deid``: accounting, bad input, idempotency, determinism."""

from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from biobank.deid import Outcome, Profile, SiteKey, builtin_profile
from biobank.dicom.synthetic import PlantedPHI, make_ct_series, make_mr_series, make_patient_phi
from biobank.ingest import pool
from biobank.ingest.deid_run import DeidRunReport, run_deid, write_report
from biobank.store.keyring import PseudonymMap, create_key_file, pseudonym_map_path
from tests.conftest import testdata


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PlantedPHI]]:
    """Two patients (CT + MR each) in folders named after them, plus bad inputs."""
    root = tmp_path_factory.mktemp("corpus")
    patients = [make_patient_phi(i, seed=7) for i in range(2)]
    for phi in patients:
        folder = root / f"{phi.family_name}_{phi.patient_id}"
        folder.mkdir(parents=True)
        series = make_ct_series(phi, 3, rows=32, cols=32) + make_mr_series(phi, 3, rows=32, cols=32)
        for n, ds in enumerate(series):
            ds.save_as(folder / f"{phi.family_name}_{n:03d}.dcm", enforce_file_format=True)
    bad = root / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_text("not a dicom file at all\n")
    (bad / "empty.dcm").write_bytes(b"")
    good = next((root / f"{patients[0].family_name}_{patients[0].patient_id}").iterdir())
    (bad / "truncated.dcm").write_bytes(good.read_bytes()[:400])
    shutil.copy(testdata("DICOMDIR"), bad / "DICOMDIR")
    no_uid = dcmread(good)
    del no_uid.SOPInstanceUID
    no_uid.save_as(bad / "no_uid.dcm")
    os.symlink(bad / "gone.dcm", bad / "dangling.dcm")
    return root, patients


@pytest.fixture
def key(tmp_path: Path) -> tuple[SiteKey, Path]:
    path = tmp_path / "keys" / "site.key"
    return create_key_file(path), path


def run(
    corpus_root: Path,
    out: Path,
    key: tuple[SiteKey, Path],
    jobs: int,
    profile: Profile | None = None,
) -> DeidRunReport:
    return run_deid(
        [corpus_root], out, key[0], key[1], profile or builtin_profile("research"), jobs=jobs
    )


def identifying(patients: list[PlantedPHI]) -> set[str]:
    """Planted values that must not survive the research profile (it keeps device identity)."""
    return {
        value
        for phi in patients
        for category, values in phi.categories().items()
        if category != "equipment"
        for value in values
        if len(value) >= 4
    }


def test_every_input_is_accounted_for(
    corpus: tuple[Path, list[PlantedPHI]], key: tuple[SiteKey, Path], tmp_path: Path
) -> None:
    root, patients = corpus
    report = run(root, tmp_path / "out", key, jobs=2)
    inputs = sorted(str(p) for p in root.rglob("*") if p.is_file() or p.is_symlink())
    assert sorted(i.source_path for i in report.items) == inputs
    counts = report.counts()
    assert counts["written"] == 12
    by_name = {Path(i.source_path).name: i for i in report.items}
    for name in ("notes.txt", "empty.dcm", "truncated.dcm", "no_uid.dcm", "dangling.dcm"):
        assert by_name[name].outcome is Outcome.REJECTED, name
        assert by_name[name].reason
    assert "SOP Instance UID" in by_name["no_uid.dcm"].reason
    assert "unreadable" in by_name["dangling.dcm"].reason
    assert by_name["DICOMDIR"].outcome is Outcome.QUARANTINED
    assert "DICOMDIR" in by_name["DICOMDIR"].reason


def test_outputs_are_named_by_new_uids_and_hold_no_phi(
    corpus: tuple[Path, list[PlantedPHI]], key: tuple[SiteKey, Path], tmp_path: Path
) -> None:
    root, patients = corpus
    out = tmp_path / "out"
    report = run(root, out, key, jobs=2)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) == 12
    phi_values = identifying(patients)
    for path in files:
        study, series, sop = path.relative_to(out).parts
        ds = dcmread(path)
        assert (study, series, sop) == (
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            f"{ds.SOPInstanceUID}.dcm",
        )
        data = path.read_bytes().upper()
        for value in phi_values:
            for encoding in ("utf-8", "latin-1"):
                needle = value.upper().encode(encoding)
                assert needle not in data, f"{value!r} leaked into {path.name}"
            assert value.upper() not in str(path.relative_to(out)).upper()
    # The report names inputs only in source_path.
    report_path = tmp_path / "report.json"
    write_report(report, report_path)
    document = json.loads(report_path.read_text())
    for item in document["items"]:
        item.pop("source_path")
    text = json.dumps(document).upper()
    for value in phi_values:
        assert value.upper() not in text, value
    assert document["summary"]["written"] == 12 and document["summary"]["patients"] == 2


def test_pseudonym_map_next_to_key_not_in_output(
    corpus: tuple[Path, list[PlantedPHI]], key: tuple[SiteKey, Path], tmp_path: Path
) -> None:
    root, patients = corpus
    out = tmp_path / "out"
    report = run(root, out, key, jobs=1)
    assert report.new_pseudonyms == 2
    map_path = pseudonym_map_path(key[1])
    assert map_path.exists()
    assert not any("pseudonym" in p.name for p in out.rglob("*"))
    pseudonyms = {i.record["patient_pseudonym"] for i in report.items if i.record}
    with PseudonymMap(map_path, key[0]) as pmap:
        found = {pmap.lookup(p).patient_id for p in pseudonyms}
    assert found == {phi.patient_id for phi in patients}


def test_rerun_is_idempotent(
    corpus: tuple[Path, list[PlantedPHI]], key: tuple[SiteKey, Path], tmp_path: Path
) -> None:
    root, _ = corpus
    out = tmp_path / "out"
    first = run(root, out, key, jobs=2)
    before = {p: p.read_bytes() for p in out.rglob("*.dcm")}
    second = run(root, out, key, jobs=2)
    assert first.counts()["written"] == 12
    assert second.counts()["written"] == 0 and second.counts()["duplicate"] == 12
    assert {p: p.read_bytes() for p in out.rglob("*.dcm")} == before
    assert second.new_pseudonyms == 0
    assert not list(out.rglob("*.tmp"))


def test_same_uid_different_content_is_never_overwritten(
    key: tuple[SiteKey, Path], tmp_path: Path
) -> None:
    phi = make_patient_phi(5)
    ds = make_ct_series(phi, 1, rows=16, cols=16)[0]
    src = tmp_path / "src"
    src.mkdir()
    ds.save_as(src / "a.dcm", enforce_file_format=True)
    ds.SliceThickness = "9.0"  # same SOP Instance UID, different content
    ds.save_as(src / "b.dcm", enforce_file_format=True)
    report = run(src, tmp_path / "out", key, jobs=1)
    outcomes = sorted(i.outcome.value for i in report.items)
    assert outcomes == ["rejected", "written"]
    rejected = next(i for i in report.items if i.outcome is Outcome.REJECTED)
    assert "different content" in rejected.reason
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1


def test_output_identical_across_jobs(
    corpus: tuple[Path, list[PlantedPHI]], key: tuple[SiteKey, Path], tmp_path: Path
) -> None:
    root, _ = corpus
    run(root, tmp_path / "one", key, jobs=1)
    run(root, tmp_path / "two", key, jobs=2)
    comparison = filecmp.dircmp(tmp_path / "one", tmp_path / "two")

    def same(cmp: filecmp.dircmp[str]) -> bool:
        _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files, shallow=False)
        if cmp.left_only or cmp.right_only or mismatch or errors:
            return False
        return all(same(sub) for sub in cmp.subdirs.values())

    assert same(comparison)
    assert len(list((tmp_path / "one").rglob("*.dcm"))) == 12


def test_output_inside_key_folder_refused(
    corpus: tuple[Path, list[PlantedPHI]], key: tuple[SiteKey, Path]
) -> None:
    root, _ = corpus
    with pytest.raises(Exception, match="output folder"):
        run(root, key[1].parent, key, jobs=1)


def test_logs_carry_no_phi(
    corpus: tuple[Path, list[PlantedPHI]],
    key: tuple[SiteKey, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root, patients = corpus
    with caplog.at_level(logging.DEBUG):
        run(root, tmp_path / "out", key, jobs=1)
    text = caplog.text.upper()
    for value in {v for phi in patients for v in phi.values() if len(v) >= 4}:
        assert value.upper() not in text


def test_report_is_valid_json_even_when_empty(key: tuple[SiteKey, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    report = run(empty, tmp_path / "out", key, jobs=1)
    path = tmp_path / "report.json"
    write_report(report, path)
    document = json.loads(path.read_text())
    assert document["items"] == [] and document["summary"]["inputs"] == 0


@pytest.mark.slow
def test_killed_run_leaves_no_partial_output_and_rerun_completes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    src = tmp_path / "src"
    src.mkdir()
    count = 0
    for index in range(4):
        phi = make_patient_phi(index, seed=9)
        for ds in make_ct_series(phi, 100, rows=64, cols=64) + make_mr_series(
            phi, 100, rows=64, cols=64
        ):
            ds.save_as(src / f"{count:05d}.dcm", enforce_file_format=True)
            count += 1
    exe = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "biobank"
    key = tmp_path / "site.key"
    subprocess.run([str(exe), "keygen", str(key)], check=True, capture_output=True)
    out = tmp_path / "out"
    command = [str(exe), "deid", str(src), "--out", str(out), "-k", str(key), "-j", "2", "--json"]
    # A session of its own, so that the kill takes the worker processes too (killing only the
    # parent left them orphaned, asleep for ever).
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.rglob("*.dcm"))) < 20:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; enlarge the corpus"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Some output exists, none of it partial, nothing temporary left behind.
    written = list(out.rglob("*"))
    files = [p for p in written if p.is_file()]
    assert 20 <= len(files) < count
    assert not [p for p in written if p.name.endswith(".tmp")]
    for path in files:
        dcmread(path).PixelData  # noqa: B018 - parses to the end: not truncated
    # A re-run finishes the job: every input accounted for, each output exactly once.
    rerun = subprocess.run(command, capture_output=True, text=True, check=True)
    summary = json.loads(rerun.stdout)["summary"]
    assert summary["inputs"] == count
    assert summary["written"] + summary["duplicate"] == count
    assert summary["duplicate"] >= len(files)
    assert len(list(out.rglob("*.dcm"))) == count


def test_output_folder_inside_the_source_is_not_taken_as_input(
    key: tuple[SiteKey, Path], tmp_path: Path
) -> None:
    src = tmp_path / "export"
    src.mkdir()
    for n, ds in enumerate(make_ct_series(make_patient_phi(1), 3, rows=16, cols=16)):
        ds.save_as(src / f"{n}.dcm", enforce_file_format=True)
    out = src / "deid"
    first = run(src, out, key, jobs=1)
    second = run(src, out, key, jobs=1)
    assert first.counts()["written"] == 3
    assert len(second.items) == 3 and second.counts()["duplicate"] == 3
    assert len(list(out.rglob("*.dcm"))) == 3


def test_a_worker_crash_costs_only_the_item_that_caused_it(
    key: tuple[SiteKey, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import biobank.ingest.deid_run as deid_run

    src = tmp_path / "src"
    src.mkdir()
    for n, ds in enumerate(make_ct_series(make_patient_phi(2), 40, rows=16, cols=16)):
        ds.save_as(src / f"{n:03d}.dcm", enforce_file_format=True)
    (src / "crash.dcm").write_bytes(b"makes the decoder die")
    original = deid_run._process_item

    def process(item):  # type: ignore[no-untyped-def]
        if item.source_path.endswith("crash.dcm"):
            os._exit(1)  # what a segfaulting decoder does to a worker
        return original(item)

    monkeypatch.setattr(deid_run, "_process_item", process)  # inherited by forked workers
    monkeypatch.setattr(pool, "CHUNK_ITEMS", 4)
    report = run(src, tmp_path / "out", key, jobs=2)
    sources = sorted(i.source_path for i in report.items)
    assert sources == sorted(str(p) for p in src.iterdir())  # each input exactly once
    crashed = next(i for i in report.items if i.source_path.endswith("crash.dcm"))
    assert crashed.outcome is Outcome.REJECTED and "worker process died" in crashed.reason
    # Items of chunks lost with the pool may have been written before it died: their re-run
    # finds the identical output. Nothing lost, nothing twice.
    assert report.counts()["written"] + report.counts()["duplicate"] == 40
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 40


def test_archives_are_inputs_too(key: tuple[SiteKey, Path], tmp_path: Path) -> None:
    import io
    import zipfile

    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for n, ds in enumerate(make_ct_series(make_patient_phi(6), 3, rows=16, cols=16)):
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            z.writestr(f"DOE_JOHN/{n}.dcm", buffer.getvalue())
        z.writestr("../escape.dcm", b"x")
    for jobs in (1, 2):
        report = run(archive, tmp_path / f"out{jobs}", key, jobs=jobs)
        assert report.counts()["written"] == 3 and report.counts()["rejected"] == 1
        rejected = next(i for i in report.items if i.outcome is Outcome.REJECTED)
        assert rejected.source_path.endswith("!../escape.dcm") and ".." in rejected.reason

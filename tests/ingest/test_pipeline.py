"""The ingest pipeline on real nodes: accounting, idempotency, conflicts, roles, bad input."""

from __future__ import annotations

import io
import logging
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from biobank.catalog import ItemOutcome
from biobank.dicom.synthetic import PlantedPHI, make_ct_series, make_mr_series, make_patient_phi
from biobank.ingest.fixity import verify_node
from biobank.ingest.node import Node, NodeRole, init_node
from biobank.ingest.pipeline import IngestReport, ingest
from tests.catalog.conftest import BACKENDS, new_database_url
from tests.conftest import testdata

N_GOOD = 2 * (3 + 3)


def _write(folder: Path, phi: PlantedPHI, prefix: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    series = make_ct_series(phi, 3, rows=32, cols=32) + make_mr_series(phi, 3, rows=32, cols=32)
    for n, ds in enumerate(series):
        path = folder / f"{prefix}_{n:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[PlantedPHI]]:
    """Two patients (CT + MR each) in folders named after them (PHI in paths) + bad inputs."""
    root = tmp_path_factory.mktemp("corpus")
    patients = [make_patient_phi(i, seed=11) for i in range(2)]
    for phi in patients:
        _write(root / f"{phi.family_name}_{phi.patient_id}", phi, phi.family_name)
    bad = root / "bad"
    bad.mkdir()
    (bad / "notes.txt").write_text("not a dicom file at all\n")
    (bad / "empty.dcm").write_bytes(b"")
    good = sorted((root / f"{patients[0].family_name}_{patients[0].patient_id}").iterdir())[0]
    (bad / "truncated-header.dcm").write_bytes(good.read_bytes()[:400])
    (bad / "truncated-pixels.dcm").write_bytes(good.read_bytes()[:-600])
    no_uid = dcmread(good)
    del no_uid.SOPInstanceUID
    no_uid.save_as(bad / "no_uid.dcm")
    return root, patients


def _site(tmp_path: Path, name: str = "site", database_url: str | None = None) -> Node:
    return init_node(
        tmp_path / name, site="Hospital A", role=NodeRole.SITE, database_url=database_url
    )


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None (the node's own SQLite file) or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
    else:
        yield from new_database_url("postgresql", tmp_path)


def _problems(report: IngestReport) -> dict[str, str]:
    return {Path(p.source_path).name: p.reason for p in report.problems}


def test_site_ingest_accounts_for_every_input(
    corpus: tuple[Path, list[PlantedPHI]], tmp_path: Path
) -> None:
    root, patients = corpus
    node = _site(tmp_path)
    report = ingest(node, [root], jobs=2)
    assert report.inputs == N_GOOD + 5
    assert report.counts["stored"] == N_GOOD
    assert report.counts["rejected"] == 5
    problems = _problems(report)
    assert set(problems) == {
        "notes.txt",
        "empty.dcm",
        "truncated-header.dcm",
        "truncated-pixels.dcm",
        "no_uid.dcm",
    }
    assert "truncated" in problems["truncated-pixels.dcm"]
    assert "export" in problems["truncated-pixels.dcm"]
    assert "(0008,0018)" in problems["no_uid.dcm"]
    with node.open_catalog() as catalog:
        stats = catalog.stats()
        assert (stats.patients, stats.studies, stats.series, stats.instances) == (2, 4, 4, 12)
        # Problems are kept in the catalogue with their reasons.
        kept = {Path(p.source_path).name for p in catalog.problems()}
        assert kept == set(problems)
        # Patients are known by pseudonym only; every blob is de-identified.
        pseudonyms = {p.patient_pseudonym for p in catalog.find_patients()}
        assert not pseudonyms & {phi.patient_id for phi in patients}
        store = node.open_store()
        for study in catalog.find_studies():
            for instance in catalog.find_instances(study_instance_uid=study.study_instance_uid):
                data = store.get(instance.blob_digest)
                ds = dcmread(io.BytesIO(data))
                assert ds.PatientIdentityRemoved == "YES"
                assert ds.PatientID == study.patient_pseudonym
                for phi in patients:
                    for value in (phi.patient_id, phi.family_name):
                        assert value.encode() not in data
                header = catalog.instance_header(instance.sop_instance_uid)
                assert header["00080018"]["Value"] == [instance.sop_instance_uid]
                assert "BulkDataURI" in header["7FE00010"]
    # The site-local pseudonym map re-identifies: only the site can go back.
    from biobank.store.keyring import PseudonymMap

    with PseudonymMap(node.map_path, node.site_key()) as pmap:
        sources = {pmap.lookup(p).patient_id for p in pseudonyms}
    assert sources == {phi.patient_id for phi in patients}


def test_reingest_changes_nothing(
    corpus: tuple[Path, list[PlantedPHI]], tmp_path: Path, database_url: str | None
) -> None:
    root, _ = corpus
    node = _site(tmp_path, database_url=database_url)
    ingest(node, [root], jobs=2)
    with node.open_catalog() as catalog:
        before = [
            i.to_json()
            for s in catalog.find_series()
            for i in catalog.find_instances(series_instance_uid=s.series_instance_uid)
        ]
        studies_before = [s.to_json() for s in catalog.find_studies()]
    digests_before = set(node.open_store().digests())
    again = ingest(node, [root], jobs=1)
    assert again.counts["stored"] == 0
    assert again.counts["duplicate"] == N_GOOD
    assert again.counts["conflict"] == 0
    with node.open_catalog() as catalog:
        after = [
            i.to_json()
            for s in catalog.find_series()
            for i in catalog.find_instances(series_instance_uid=s.series_instance_uid)
        ]
        assert after == before
        assert [s.to_json() for s in catalog.find_studies()] == studies_before
        assert catalog.stats().instances == N_GOOD
        assert len(catalog.batches()) == 2
    assert set(node.open_store().digests()) == digests_before
    assert verify_node(node).ok


def test_same_uid_other_content_is_a_conflict_never_an_overwrite(
    tmp_path: Path, database_url: str | None
) -> None:
    phi = make_patient_phi(3, seed=11)
    first = tmp_path / "first"
    paths = _write(first, phi, "x")
    changed = tmp_path / "changed"
    changed.mkdir()
    ds = dcmread(paths[0])
    ds.SeriesDescription = "re-exported with another description"
    ds.save_as(changed / "again.dcm")
    node = _site(tmp_path, database_url=database_url)
    ingest(node, [first], jobs=1)
    with node.open_catalog() as catalog:
        kept = {
            i.sop_instance_uid: i.blob_digest
            for s in catalog.find_series()
            for i in catalog.find_instances(series_instance_uid=s.series_instance_uid)
        }
    report = ingest(node, [changed], jobs=1)
    assert report.counts["conflict"] == 1
    reason = report.problems[0].reason
    assert "different content" in reason or "disagree" in reason
    with node.open_catalog() as catalog:
        now = {
            i.sop_instance_uid: i.blob_digest
            for s in catalog.find_series()
            for i in catalog.find_instances(series_instance_uid=s.series_instance_uid)
        }
        assert now == kept  # the first content stays
        conflicts = catalog.problems(outcomes=[ItemOutcome.CONFLICT])
        assert len(conflicts) == 1 and conflicts[0].blob_digest not in kept.values()
        # The conflicting content is kept aside, not lost, and verify counts it as referenced.
        assert node.open_store().exists(conflicts[0].blob_digest)
    assert verify_node(node).ok


def test_central_node_accepts_only_deidentified_data(
    corpus: tuple[Path, list[PlantedPHI]], tmp_path: Path
) -> None:
    root, _ = corpus
    central = init_node(tmp_path / "central", site="Central", role=NodeRole.CENTRAL)
    raw = ingest(central, [root / next(p.name for p in root.iterdir() if p.name != "bad")])
    assert raw.counts["stored"] == 0 and raw.counts["rejected"] == 6
    assert all("not de-identified" in p.reason for p in raw.problems)
    assert all("PatientIdentityRemoved" in p.reason for p in raw.problems)
    site = _site(tmp_path)
    ingest(site, [root], jobs=2)
    site_digests = set(site.open_store().digests())
    report = ingest(central, [site.blob_root / "sha256"], jobs=2)
    assert report.counts["stored"] == N_GOOD and not report.problems
    # Stored byte for byte: the same blobs on both nodes.
    assert set(central.open_store().digests()) == site_digests
    assert not (central.home / "keys").exists()


def test_archives_are_streamed_and_unsafe_members_reported(tmp_path: Path) -> None:
    phi = make_patient_phi(4, seed=11)
    files = _write(tmp_path / "src", phi, "a")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in files[:3]:
            z.write(path, f"DOE_JOHN/{path.name}")
        z.writestr("../escape.dcm", b"x")
    tgz = tmp_path / "export.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        for path in files[3:]:
            t.add(path, f"more/{path.name}")
    node = _site(tmp_path)
    report = ingest(node, [archive, tgz], jobs=2)
    assert report.counts["stored"] == 6 and report.counts["rejected"] == 1
    assert report.problems[0].source_path.endswith("!../escape.dcm")
    assert ".." in report.problems[0].reason


def test_node_home_inside_a_source_is_not_ingested(tmp_path: Path) -> None:
    src = tmp_path / "export"
    _write(src, make_patient_phi(5, seed=11), "b")
    node = init_node(src / "node", site="A", role=NodeRole.SITE)
    first = ingest(node, [src], jobs=1)
    second = ingest(node, [src], jobs=1)
    assert first.inputs == second.inputs == 6
    assert second.counts["duplicate"] == 6


def test_verify_finds_and_repairs(corpus: tuple[Path, list[PlantedPHI]], tmp_path: Path) -> None:
    root, _ = corpus
    node = _site(tmp_path)
    ingest(node, [root], jobs=2)
    store = node.open_store()
    digests = sorted(store.digests())
    corrupt, gone = digests[0], digests[1]
    path = store.path(corrupt)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")
    store.path(gone).unlink()
    orphan = store.put(b"left by a killed ingest").digest
    report = verify_node(node)
    assert not report.ok
    assert report.corrupt == [corrupt] and corrupt in report.corrupt_referenced
    assert list(report.missing) == [gone]
    assert report.orphans == [orphan]
    repaired = verify_node(node, repair=True)
    assert repaired.orphans_removed == 1 and repaired.moved_aside == 1
    assert repaired.unfixable == 2
    assert not store.exists(orphan)
    assert (node.blob_root / "corrupt" / corrupt).exists()
    # Ingesting the sources again restores both blobs (same bytes, same digests).
    again = ingest(node, [root], jobs=2)
    assert again.counts["stored"] == 0 and again.counts["duplicate"] == N_GOOD
    final = verify_node(node)
    assert final.ok and not final.orphans and not final.missing


def test_no_phi_in_logs(
    corpus: tuple[Path, list[PlantedPHI]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, patients = corpus
    node = _site(tmp_path)
    with caplog.at_level(logging.DEBUG):
        ingest(node, [root], jobs=1)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "ingest batch" in text  # the run is logged...
    for phi in patients:
        for value in phi.values():
            if len(value) >= 4:
                assert value not in text  # ...without a single identifying value


def test_same_result_in_process_and_on_a_pool(
    corpus: tuple[Path, list[PlantedPHI]], tmp_path: Path
) -> None:
    root, _ = corpus
    one, two = _site(tmp_path, "one"), _site(tmp_path, "two")
    shutil.copy(one.key_path, tmp_path / "shared.key")
    two_home = tmp_path / "two-shared"
    two = init_node(two_home, site="B", role=NodeRole.SITE, key_file=tmp_path / "shared.key")
    a, b = ingest(one, [root], jobs=1), ingest(two, [root], jobs=2)
    assert a.counts == b.counts
    # The same key gives the same pseudonyms, UIDs and bytes on another node.
    assert set(one.open_store().digests()) == set(two.open_store().digests())


def test_dicomdir_is_not_stored(tmp_path: Path) -> None:
    src = tmp_path / "media"
    src.mkdir()
    shutil.copy(testdata("DICOMDIR"), src / "DICOMDIR")
    for role in (NodeRole.SITE, NodeRole.CENTRAL):
        node = init_node(tmp_path / role.value, site="A", role=role)
        report = ingest(node, [src], jobs=1)
        assert report.counts["stored"] == 0 and len(report.problems) == 1
        assert "DICOMDIR" in report.problems[0].reason


def test_a_failing_commit_stops_the_run_and_a_rerun_completes_it(
    corpus: tuple[Path, list[PlantedPHI]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from biobank.catalog import BatchState, Catalog
    from biobank.errors import StorageError
    from biobank.ingest import pipeline

    root, _ = corpus
    node = _site(tmp_path)
    monkeypatch.setattr(pipeline, "COMMIT_ITEMS", 4)
    original = Catalog.record_items
    calls = {"n": 0}

    def flaky(self: Catalog, batch_id: str, items: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise StorageError("the database went away (simulated)")
        return original(self, batch_id, items)  # type: ignore[arg-type]

    monkeypatch.setattr(Catalog, "record_items", flaky)
    with pytest.raises(StorageError, match="went away"):
        ingest(node, [root], jobs=1)
    monkeypatch.setattr(Catalog, "record_items", original)
    with node.open_catalog() as catalog:
        assert catalog.batches()[0].state is BatchState.INTERRUPTED
        assert 0 < catalog.stats().instances < N_GOOD
    report = ingest(node, [root], jobs=2)
    assert report.counts["stored"] + report.counts["duplicate"] == N_GOOD
    final = verify_node(node)
    assert final.ok and not final.orphans

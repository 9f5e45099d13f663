"""The job runner on a local process pool and on a real Dask LocalCluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biobank.catalog.jobs import JobRecords, JobState
from biobank.cli.main import app
from biobank.dicom.synthetic import write_corpus
from biobank.errors import InvalidInput
from biobank.ingest.node import Node, NodeRole, init_node
from biobank.ingest.pipeline import ingest
from biobank.jobs import DaskExecutor, JobContext, JobRunner, LocalExecutor, verify_series


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    root = tmp_path_factory.mktemp("jobs")
    write_corpus(root / "corpus", patients=2, ct_slices=3, mr_slices=2, ct_size=32, mr_size=32)
    made = init_node(root / "home", site="t", role=NodeRole.SITE)
    ingest(made, [root / "corpus"], jobs=1)
    return made


def _series(node: Node) -> list[str]:
    with node.open_catalog() as catalog:
        return [s.series_instance_uid for s in catalog.find_series()]


def _run(node: Node, executor: LocalExecutor | DaskExecutor) -> tuple[JobRecords, object]:
    catalog = node.open_catalog()
    records = JobRecords(catalog)
    context = JobContext(catalog.url, str(node.blob_root.resolve()))
    runner = JobRunner(records, executor, {"verify-series": verify_series}, context)
    return records, runner.run_pending()


def test_verify_series_on_a_local_pool_finds_a_corrupt_blob(node: Node) -> None:
    series = _series(node)
    with node.open_catalog() as catalog:
        (victim, *_) = catalog.find_instances(series_instance_uid=series[0])
        JobRecords(catalog).enqueue("verify-series", [*series, "1.2.3.404"], max_attempts=1)
    path = node.open_store().path(victim.blob_digest)
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    executor = LocalExecutor(2)
    try:
        records, summary = _run(node, executor)
    finally:
        executor.close()
        path.write_bytes(original)
    assert summary.done == len(series) and summary.failed == 1  # type: ignore[attr-defined]
    results = {j.subject: j for j in records.find(kind="verify-series")}
    assert results[series[0]].result["corrupt"] == [victim.sop_instance_uid]  # type: ignore[index]
    assert all(results[s].result["intact"] > 0 for s in series[1:])  # type: ignore[index]
    missing = results["1.2.3.404"]
    assert missing.state is JobState.FAILED
    assert missing.error == "NotFound: no series 1.2.3.404 in the catalogue"


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


@pytest.mark.slow
def test_the_same_jobs_on_a_dask_local_cluster(node: Node, dask_cluster: str) -> None:
    series = _series(node)
    with node.open_catalog() as catalog:
        JobRecords(catalog).enqueue("verify-series", series)
    executor = DaskExecutor(dask_cluster)
    try:
        assert executor.parallelism == 2 and "Dask" in executor.name
        records, summary = _run(node, executor)
    finally:
        executor.close()
    assert summary.done == len(series) and summary.failed == 0  # type: ignore[attr-defined]
    states = {j.subject: j.state for j in records.find(kind="verify-series")}
    assert all(states[s] is JobState.DONE for s in series)


def test_the_jobs_command(node: Node, tmp_path: Path) -> None:
    runner = CliRunner()
    home = str(node.home)
    queued = runner.invoke(app, ["jobs", "enqueue", "verify-series", "--all", "--home", home])
    assert queued.exit_code == 0, queued.output
    ran = runner.invoke(app, ["jobs", "run", "--home", home, "--jobs", "1", "--json"])
    assert ran.exit_code == 0, ran.output
    assert '"done"' in ran.output
    listed = runner.invoke(app, ["jobs", "--home", home, "--json"])
    assert listed.exit_code == 0 and '"verify-series"' in listed.output
    unknown = runner.invoke(app, ["jobs", "enqueue", "classify-toasters", "--all", "--home", home])
    assert unknown.exit_code != 0 and "unknown job kind" in unknown.output


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    with pytest.raises(InvalidInput, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor("tcp://127.0.0.1:9", timeout=1)


def test_ingest_queues_classification_and_qc_for_new_series(node: Node) -> None:
    series = sorted(_series(node))
    with node.open_catalog() as catalog:
        records = JobRecords(catalog)
        for kind in ("classify-series", "qc-series", "conformance-series"):
            queued = sorted(j.subject for j in records.find(kind=kind))
            assert queued == series, kind

"""The curation jobs end to end: ingest queues them, the runner runs them, results recorded."""

from __future__ import annotations

from pathlib import Path

from biobank.catalog.curation import CurationRecords, Decision
from biobank.catalog.jobs import JobRecords, JobState
from biobank.curation.conformance import conformance_series_job
from biobank.curation.jobs import classify_series_job, qc_series_job
from biobank.dicom.synthetic import write_corpus
from biobank.ingest.node import NodeRole, init_node
from biobank.ingest.pipeline import ingest
from biobank.jobs import JobContext, JobRunner, LocalExecutor


def test_ingested_series_are_classified_and_measured(tmp_path: Path) -> None:
    write_corpus(tmp_path / "in", patients=1, ct_slices=6, mr_slices=6, ct_size=48, mr_size=48)
    node = init_node(tmp_path / "home", site="t", role=NodeRole.SITE)
    ingest(node, [tmp_path / "in"], jobs=1)
    executor = LocalExecutor(1)
    try:
        with node.open_catalog() as catalog:
            records = JobRecords(catalog)
            context = JobContext(catalog.url, str(node.blob_root.resolve()))
            handlers = {
                "classify-series": classify_series_job,
                "qc-series": qc_series_job,
                "conformance-series": conformance_series_job,
            }
            summary = JobRunner(records, executor, handlers, context).run_pending()
            assert summary.failed == 0 and summary.done == 6
            assert all(j.state is JobState.DONE for j in records.find())
            curation = CurationRecords(catalog)
            by_modality = {}
            for series in catalog.find_series():
                by_modality[series.modality] = curation.get(series.series_instance_uid)
    finally:
        executor.close()
    mr, ct = by_modality["MR"], by_modality["CT"]
    assert mr.label is not None and mr.classification is not None
    assert mr.classification["evidence"]  # says which tags and rules decided
    assert ct.label == "other"  # the classifier labels MR series only
    for record in (mr, ct):
        assert record.qc is not None and record.qc["snr"] is not None
        assert record.decision in (Decision.APPROVE, Decision.QUARANTINE, Decision.EXCLUDE)
        assert record.decision_source == "rules"


def test_qc_jobs_apply_the_thresholds_of_node_yaml(tmp_path: Path) -> None:
    write_corpus(tmp_path / "in", patients=1, ct_slices=6, mr_slices=6, ct_size=48, mr_size=48)
    node = init_node(tmp_path / "home", site="t", role=NodeRole.SITE)
    ingest(node, [tmp_path / "in"], jobs=1)
    strict = {"min_slices": 50}  # more slices than the series have: a hard failure
    with node.open_catalog() as catalog:
        context = JobContext(catalog.url, str(node.blob_root.resolve()), curation=strict)
        curation = CurationRecords(catalog)
        for series in catalog.find_series():
            result = qc_series_job(context, series.series_instance_uid)
            assert result["decision"] == "exclude", result
            record = curation.get(series.series_instance_uid)
            assert record.decision is Decision.EXCLUDE
            assert any("slice" in reason for reason in record.decision_reasons)

"""Curation records on SQLite and PostgreSQL: labels, QC, decisions, history, queue, facets."""

from __future__ import annotations

import pytest

from biobank.catalog import Catalog
from biobank.catalog.curation import CURATOR, RULES, CurationRecords, Decision
from biobank.errors import InvalidInput, NotFound
from tests.catalog.factories import record, stored, uid


def _load(catalog: Catalog) -> None:
    items = [stored(record(uid(1, s, 1), series=uid(1, s), study=uid(1))) for s in (1, 2, 3)]
    batch = catalog.start_batch(role="site", sources=["x"], profile=None, key_id=None)
    catalog.record_items(batch, items)


T2 = {"label": "T2W", "orientation": "axial", "is3d": False, "derived": False,
      "contrast": False, "confidence": 0.95, "needs_review": False,
      "evidence": ["EchoTime=98 ms → T2W (physics)"]}  # fmt: skip


class TestCuration:
    def test_a_classification_is_stored_with_its_evidence(self, catalog: Catalog) -> None:
        _load(catalog)
        records = CurationRecords(catalog)
        records.record_classification(uid(1, 1), T2)
        got = records.get(uid(1, 1))
        assert (got.label, got.orientation, got.confidence, got.decision) == (
            "T2W", "axial", 0.95, Decision.PENDING,
        )  # fmt: skip
        assert got.classification is not None and got.classification["evidence"] == T2["evidence"]
        assert got.study_instance_uid == uid(1)
        with pytest.raises(NotFound):
            records.get(uid(1, 2))
        with pytest.raises(NotFound):
            records.record_classification("9.9.9", T2)

    def test_disagreement_quarantines_and_a_curator_decides(self, catalog: Catalog) -> None:
        _load(catalog)
        records = CurationRecords(catalog)
        records.record_classification(uid(1, 2), {**T2, "needs_review": True, "label": "T1W"})
        (queued,) = records.queue()
        assert queued.series_instance_uid == uid(1, 2) and queued.decision_source == RULES
        records.relabel(uid(1, 2), "T2W", actor="cur", comment="TE 98 ms: it is T2")
        records.decide(uid(1, 2), Decision.APPROVE, actor="cur", comment="checked the sheet")
        assert records.queue() == []
        got = records.get(uid(1, 2))
        assert (got.label, got.decision, got.decision_source, got.decided_by) == (
            "T2W", Decision.APPROVE, CURATOR, "cur",
        )  # fmt: skip
        # A later automatic measurement never overrides the curator.
        records.record_qc(uid(1, 2), {"snr": 3.0}, Decision.EXCLUDE, ["SNR below 5"])
        got = records.get(uid(1, 2))
        assert got.decision is Decision.APPROVE and got.qc == {"snr": 3.0}
        actions = [(e.actor, e.action) for e in records.history(uid(1, 2))]
        assert actions == [
            (RULES, "classify"), ("cur", "relabel"), ("cur", "approve"), (RULES, "qc"),
        ]  # fmt: skip
        assert records.history(uid(1, 2))[1].detail == {
            "from": "T1W", "to": "T2W", "comment": "TE 98 ms: it is T2",
        }  # fmt: skip

    def test_the_stricter_automatic_decision_stands(self, catalog: Catalog) -> None:
        _load(catalog)
        records = CurationRecords(catalog)
        records.record_qc(uid(1, 3), {"snr": 20.0}, Decision.APPROVE, [])
        assert records.get(uid(1, 3)).decision is Decision.APPROVE
        records.record_qc(uid(1, 3), {"snr": 2.0}, Decision.QUARANTINE, ["SNR below 5"])
        records.record_qc(uid(1, 3), {"snr": 20.0}, Decision.APPROVE, [])
        got = records.get(uid(1, 3))
        assert got.decision is Decision.QUARANTINE and got.decision_reasons == ["SNR below 5"]
        assert got.qc == {"snr": 20.0}  # the newest measures are kept all the same

    def test_facets_and_bad_input(self, catalog: Catalog) -> None:
        _load(catalog)
        records = CurationRecords(catalog)
        records.record_classification(uid(1, 1), T2)
        records.record_classification(uid(1, 2), {**T2, "label": "DWI"})
        records.record_qc(uid(1, 2), {}, Decision.EXCLUDE, ["empty foreground"])
        assert records.facets() == {
            "decision": {"pending": 1, "exclude": 1},
            "label": {"T2W": 1, "DWI": 1},
            "manufacturer": {"UNKNOWN": 2},
        }
        with pytest.raises(InvalidInput, match="comment"):
            records.decide(uid(1, 1), Decision.APPROVE, actor="cur", comment=" ")
        with pytest.raises(InvalidInput):
            records.record_qc(uid(1, 1), {}, Decision.PENDING, [])

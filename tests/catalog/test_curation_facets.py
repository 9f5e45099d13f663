"""Curation records on SQLite and PostgreSQL: cohort rows, cohort judgements, studies, facets."""

from __future__ import annotations

import pytest

from biobank.catalog import Catalog
from biobank.catalog.curation import (
    CURATOR,
    RULES,
    UNKNOWN_MANUFACTURER,
    CurationFilter,
    CurationRecords,
    Decision,
    StudyState,
    study_state_of,
)
from biobank.errors import InvalidInput, NotFound
from tests.catalog.factories import record, stored, uid

# (study, series, modality, manufacturer)
SERIES = [
    (1, 1, "MR", "SIEMENS"),
    (1, 2, "MR", " Siemens "),
    (1, 3, "MR", "GE MEDICAL SYSTEMS"),
    (2, 1, "MR", None),
    (2, 2, "CT", "SIEMENS"),
]


def _load(catalog: Catalog) -> CurationRecords:
    items = [
        stored(
            record(
                uid(st, se, 1),
                series=uid(st, se),
                study=uid(st),
                patient=f"PSN-{st}",
                modality=modality,
                manufacturer=manufacturer,
            )
        )
        for st, se, modality, manufacturer in SERIES
    ]
    batch = catalog.start_batch(role="site", sources=["x"], profile=None, key_id=None)
    catalog.record_items(batch, items)
    return CurationRecords(catalog)


def _label(records: CurationRecords, series: str, label: str, review: bool = False) -> None:
    records.record_classification(
        series, {"label": label, "confidence": 0.9, "needs_review": review}
    )


class TestCohortRows:
    def test_groups_are_the_mr_label_or_the_modality_and_the_normalised_vendor(
        self, catalog: Catalog
    ) -> None:
        records = _load(catalog)
        for st, se, _, _ in SERIES:
            if (st, se) != (1, 3):
                _label(records, uid(st, se), "T2W" if (st, se) != (2, 2) else "other")
        for st, se, _, _ in SERIES[:-1]:
            records.record_qc(
                uid(st, se), {"snr_dietrich": 30.0 + se, "efc": 0.4, "fber": None,
                              "decision": "approve", "masks": {"air": 3}},
                Decision.APPROVE, [],
            )  # fmt: skip
        rows = records.cohort_metrics()
        got = {r.series_instance_uid: (r.group_label, r.manufacturer) for r in rows}
        assert got == {
            uid(1, 1): ("T2W", "SIEMENS"),
            uid(1, 2): ("T2W", "SIEMENS"),
            uid(1, 3): ("MR", "GE MEDICAL SYSTEMS"),  # measured, never labelled
            uid(2, 1): ("T2W", UNKNOWN_MANUFACTURER),
        }  # the CT series has no QC: not in any cohort
        assert rows[0].metrics == {"snr_dietrich": 31.0, "efc": 0.4}  # numbers only
        records.record_qc(uid(2, 2), {"efc": 0.2}, Decision.APPROVE, [])
        assert [r.group_label for r in records.cohort_metrics("ct", "siemens")] == ["CT"]
        one = records.cohort_metrics("t2w", "siemens")
        assert [r.series_instance_uid for r in one] == [uid(1, 1), uid(1, 2)]
        assert [r.series_instance_uid for r in records.cohort_metrics("T2W", "unknown")] == [
            uid(2, 1)
        ]


class TestRecordCohort:
    def test_a_cohort_quarantine_is_lifted_when_the_cohort_no_longer_flags(
        self, catalog: Catalog
    ) -> None:
        records = _load(catalog)
        series = uid(1, 1)
        records.record_qc(series, {"snr_dietrich": 3.0}, Decision.APPROVE, [])
        flag = ["cohort_low_snr_dietrich: snr_dietrich 3 is 5.0 MADs below the median"]
        assert records.record_cohort(series, {"size": 12}, Decision.QUARANTINE, flag)
        got = records.get(series)
        assert (got.decision, got.decision_source, got.decision_reasons) == (
            Decision.QUARANTINE, RULES, flag,
        )  # fmt: skip
        assert got.qc == {"snr_dietrich": 3.0, "cohort": {"size": 12}}
        # The same judgement again changes nothing and records no event.
        assert not records.record_cohort(series, {"size": 12}, Decision.QUARANTINE, flag)
        ok = ["cohort_ok: snr_dietrich within 3.5 MADs"]
        assert records.record_cohort(series, {"size": 40}, Decision.APPROVE, ok)
        got = records.get(series)
        assert (got.decision, got.decision_reasons) == (Decision.APPROVE, ok)
        assert [e.action for e in records.history(series)] == ["qc", "cohort", "cohort"]
        assert records.history(series)[1].detail == {"decision": "quarantine", "reasons": flag}

    def test_other_rules_reasons_stay_and_curators_win(self, catalog: Catalog) -> None:
        records = _load(catalog)
        series = uid(1, 2)
        records.record_qc(series, {}, Decision.QUARANTINE, ["high_efc: 0.95 > 0.9"])
        records.record_cohort(series, {}, Decision.APPROVE, ["cohort_ok: fine"])
        got = records.get(series)
        assert got.decision is Decision.QUARANTINE
        assert got.decision_reasons == ["high_efc: 0.95 > 0.9", "cohort_ok: fine"]
        records.decide(series, Decision.APPROVE, actor="ana", comment="efc is the coil")
        flag = ["cohort_high_efc: efc 0.95 is 6 MADs above"]
        assert not records.record_cohort(series, {"n": 1}, Decision.QUARANTINE, flag)
        got = records.get(series)
        assert (got.decision, got.decision_source, got.decided_by) == (
            Decision.APPROVE, CURATOR, "ana",
        )  # fmt: skip
        assert got.qc is not None and got.qc["cohort"] == {"n": 1}  # still stored
        records.record_qc(uid(1, 3), {}, Decision.EXCLUDE, ["empty_foreground: none"])
        records.record_cohort(uid(1, 3), {}, Decision.APPROVE, ["cohort_ok: fine"])
        assert records.get(uid(1, 3)).decision is Decision.EXCLUDE
        with pytest.raises(InvalidInput, match="cohort_"):
            records.record_cohort(series, {}, Decision.QUARANTINE, ["low snr"])
        with pytest.raises(InvalidInput, match="approve or quarantine"):
            records.record_cohort(series, {}, Decision.EXCLUDE, [])
        with pytest.raises(NotFound):
            records.record_cohort("9.9.9", {}, Decision.APPROVE, [])


class TestStudies:
    def test_a_study_decision_reaches_every_series_with_history(self, catalog: Catalog) -> None:
        records = _load(catalog)
        _label(records, uid(1, 1), "T2W")
        records.record_qc(uid(1, 2), {}, Decision.QUARANTINE, ["low_snr_dietrich: 3 < 5"])
        state = records.study_state(uid(1))
        assert state.state is StudyState.QUARANTINE
        assert state.counts == {"pending": 2, "approve": 0, "quarantine": 1, "exclude": 0}
        assert state.uncurated == [uid(1, 3)]
        count = records.decide_study(uid(1), Decision.APPROVE, actor="ana", comment="all fine")
        assert count == 3
        state = records.study_state(uid(1))
        assert state.state is StudyState.APPROVE and state.uncurated == []
        assert [s.decided_by for s in state.series] == ["ana"] * 3
        last = records.history(uid(1, 3))[-1]
        assert (last.actor, last.action) == ("ana", "approve")
        assert last.detail == {"comment": "all fine", "study": uid(1)}
        assert records.study_state(uid(2)).state is StudyState.PENDING  # nothing curated
        records.decide(uid(1, 1), Decision.EXCLUDE, actor="ana", comment="wrong body part")
        assert records.study_state(uid(1)).state is StudyState.MIXED
        with pytest.raises(NotFound, match="no study"):
            records.decide_study("9.9", Decision.APPROVE, actor="a", comment="x")
        with pytest.raises(NotFound, match="no study"):
            records.study_state("9.9")
        with pytest.raises(InvalidInput, match="comment"):
            records.decide_study(uid(1), Decision.EXCLUDE, actor="a", comment=" ")
        with pytest.raises(InvalidInput):
            records.decide_study(uid(1), Decision.PENDING, actor="a", comment="x")


@pytest.mark.parametrize(
    ("decisions", "state"),
    [
        ([], StudyState.PENDING),
        ([Decision.APPROVE, Decision.APPROVE], StudyState.APPROVE),
        ([Decision.APPROVE, Decision.QUARANTINE, Decision.EXCLUDE], StudyState.QUARANTINE),
        ([Decision.EXCLUDE], StudyState.EXCLUDE),
        ([Decision.APPROVE, Decision.PENDING], StudyState.PENDING),
        ([Decision.APPROVE, Decision.EXCLUDE], StudyState.MIXED),
    ],
)
def test_study_state_rules(decisions: list[Decision], state: StudyState) -> None:
    assert study_state_of(decisions) is state


class TestFacets:
    def test_filters_and_counts_by_label_decision_manufacturer(self, catalog: Catalog) -> None:
        records = _load(catalog)
        _label(records, uid(1, 1), "T2W")
        _label(records, uid(1, 2), "T2W", review=True)
        _label(records, uid(1, 3), "DWI")
        _label(records, uid(2, 1), "T2W")
        records.record_qc(uid(1, 1), {}, Decision.APPROVE, [])
        records.record_qc(uid(2, 1), {}, Decision.EXCLUDE, ["too_few_slices: 1 < 3"])

        def found(**where: object) -> list[str]:
            matching = records.find(CurationFilter(**where))  # type: ignore[arg-type]
            return [r.series_instance_uid for r in matching]

        assert set(found(label="t2w")) == {uid(1, 1), uid(1, 2), uid(2, 1)}
        assert found(label="T2W", decision=Decision.APPROVE) == [uid(1, 1)]
        assert set(found(manufacturer="siemens")) == {uid(1, 1), uid(1, 2)}
        assert found(manufacturer="unknown") == [uid(2, 1)]
        assert found(needs_review=True) == [uid(1, 2)]
        assert set(found(needs_review=False)) == {uid(1, 1), uid(1, 3), uid(2, 1)}
        assert found(study_instance_uid=uid(2)) == [uid(2, 1)]
        assert found(label="FLAIR") == []
        assert records.count(CurationFilter(label="T2W")) == 3
        assert records.count() == 4
        assert records.get(uid(1, 2)).manufacturer == "SIEMENS"
        assert records.get(uid(1, 2)).to_json()["modality"] == "MR"
        assert records.facets() == {
            "decision": {"approve": 1, "quarantine": 1, "pending": 1, "exclude": 1},
            "label": {"T2W": 3, "DWI": 1},
            "manufacturer": {"SIEMENS": 2, "GE MEDICAL SYSTEMS": 1, UNKNOWN_MANUFACTURER: 1},
        }
        assert records.facets(CurationFilter(label="T2W")) == {
            "decision": {"approve": 1, "quarantine": 1, "exclude": 1},
            "label": {"T2W": 3},
            "manufacturer": {"SIEMENS": 2, UNKNOWN_MANUFACTURER: 1},
        }
        queued = records.queue(where=CurationFilter(manufacturer="SIEMENS"))
        assert [r.series_instance_uid for r in queued] == [uid(1, 2)]
        assert records.queue(where=CurationFilter(manufacturer="GE")) == []

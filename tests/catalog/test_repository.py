"""The catalogue repository, one test class run on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime
import json
import os
import threading
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from biobank.catalog import (
    BatchState,
    Catalog,
    InstanceRecord,
    ItemInput,
    ItemOutcome,
    ItemResult,
)
from biobank.catalog import repository as repository_module
from biobank.errors import InvalidInput, InvalidQuery, NotFound, StorageError
from tests.catalog.factories import (
    day,
    digest,
    dump,
    execute,
    problem,
    record,
    series_of,
    stored,
    uid,
)


def start(catalog: Catalog, **kwargs: Any) -> str:
    kwargs.setdefault("role", "site")
    kwargs.setdefault("sources", ["exports/a"])
    kwargs.setdefault("profile", "research")
    kwargs.setdefault("key_id", "key-1")
    return catalog.start_batch(**kwargs)


def ingest(catalog: Catalog, instances: list[InstanceRecord]) -> list[ItemResult]:
    return catalog.record_items(start(catalog), [stored(i) for i in instances])


def outcomes(results: list[ItemResult]) -> list[ItemOutcome]:
    return [result.outcome for result in results]


def counters(catalog: Catalog) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "patient": execute(
            catalog, "SELECT patient_pseudonym, number_of_studies FROM patient ORDER BY id"
        ),
        "study": execute(
            catalog,
            "SELECT study_instance_uid, number_of_series, number_of_instances, stored_bytes, "
            "modalities_in_study FROM study ORDER BY id",
        ),
        "series": execute(
            catalog, "SELECT series_instance_uid, number_of_instances FROM series ORDER BY id"
        ),
    }


class TestRecording:
    def test_new_instances_are_stored_with_their_parents(self, catalog: Catalog) -> None:
        ct = series_of(1, 1, 3, modality="CT", study_date=day(3))
        mr = series_of(1, 2, 2, modality="MR")
        other = series_of(2, 1, 1, patient="PSN-B", modality="US")

        results = ingest(catalog, ct + mr + other)

        assert outcomes(results) == [ItemOutcome.STORED] * 6
        assert all(result.reason == "" for result in results)
        assert [r.sop_instance_uid for r in results] == [
            i.sop_instance_uid for i in ct + mr + other
        ]
        assert [r.blob_digest for r in results] == [i.blob_digest for i in ct + mr + other]
        patients = {p.patient_pseudonym: p.number_of_studies for p in catalog.find_patients()}
        assert patients == {"PSN-A": 1, "PSN-B": 1}
        (study,) = catalog.find_studies(study_instance_uid=uid(1))
        assert study.patient_pseudonym == "PSN-A"
        assert study.study_date == day(3)
        assert study.modalities_in_study == ("CT", "MR")
        assert (study.number_of_series, study.number_of_instances) == (2, 5)
        assert study.stored_bytes == 5 * 1000
        series = {s.series_instance_uid: s.number_of_instances for s in catalog.find_series()}
        assert series == {uid(1, 1): 3, uid(1, 2): 2, uid(2, 1): 1}

    def test_the_header_and_the_deid_record_are_kept(self, catalog: Catalog) -> None:
        evidence = json.dumps({"profile": "research", "actions": [["00100010", "Z"]]})
        instance = record(uid(1, 1, 1), instance_number=3, deid_record_json=evidence)
        batch_id = start(catalog)
        catalog.record_items(batch_id, [stored(instance)])

        rows = execute(catalog, "SELECT header, deid_record, batch_id FROM instance")

        assert rows == [(instance.header_json, evidence, batch_id)]

    def test_counters_grow_across_calls(self, catalog: Catalog) -> None:
        ingest(catalog, series_of(1, 1, 2, modality="MR"))
        ingest(catalog, series_of(1, 1, 4, modality="MR")[2:] + series_of(1, 2, 1, modality="CT"))
        ingest(catalog, series_of(3, 1, 1))

        (study,) = catalog.find_studies(study_instance_uid=uid(1))
        assert (study.number_of_series, study.number_of_instances) == (2, 5)
        assert study.modalities_in_study == ("CT", "MR")
        assert catalog.find_series(series_instance_uid=uid(1, 1))[0].number_of_instances == 4
        assert study.stored_bytes == 5000
        assert catalog.find_patients()[0].number_of_studies == 2

    def test_same_content_again_is_a_duplicate_and_changes_no_row(self, catalog: Catalog) -> None:
        instances = series_of(1, 1, 3) + series_of(2, 1, 2, patient="PSN-B")
        ingest(catalog, instances)
        before = dump(catalog)

        results = ingest(catalog, instances)

        assert outcomes(results) == [ItemOutcome.DUPLICATE] * 5
        assert {r.reason for r in results} == {"already stored with the same content"}
        assert dump(catalog) == before

    def test_other_content_is_a_conflict_and_the_first_is_kept(self, catalog: Catalog) -> None:
        first = record(uid(1, 1, 1))
        second = record(uid(1, 1, 1), content="other pixels")
        ingest(catalog, [first])
        before = dump(catalog)

        (result,) = ingest(catalog, [second])

        assert result.outcome is ItemOutcome.CONFLICT
        assert first.blob_digest[:12] in result.reason
        assert second.blob_digest[:12] in result.reason
        assert "nothing was overwritten" in result.reason
        assert result.blob_digest == second.blob_digest
        assert dump(catalog) == before
        assert catalog.find_instances()[0].blob_digest == first.blob_digest
        (item,) = catalog.problems()
        assert (item.outcome, item.blob_digest) == (ItemOutcome.CONFLICT, second.blob_digest)

    def test_the_first_of_two_equal_uids_in_one_call_wins(self, catalog: Catalog) -> None:
        first = record(uid(1, 1, 1))
        again = record(uid(1, 1, 1))
        changed = record(uid(1, 1, 1), content="x")

        results = ingest(catalog, [first, again, changed])

        assert outcomes(results) == [
            ItemOutcome.STORED,
            ItemOutcome.DUPLICATE,
            ItemOutcome.CONFLICT,
        ]
        assert [i.blob_digest for i in catalog.find_instances()] == [first.blob_digest]
        assert catalog.find_series()[0].number_of_instances == 1

    def test_a_study_is_never_moved_to_another_patient(self, catalog: Catalog) -> None:
        ingest(catalog, [record(uid(1, 1, 1), patient="PSN-A")])
        moved = record(uid(1, 1, 2), patient="PSN-B")

        (result,) = ingest(catalog, [moved])

        assert result.outcome is ItemOutcome.CONFLICT
        assert uid(1) in result.reason
        assert "PSN" not in result.reason
        assert [p.patient_pseudonym for p in catalog.find_patients()] == ["PSN-A"]
        assert catalog.find_studies()[0].number_of_instances == 1
        assert catalog.find_instances(sop_instance_uid=uid(1, 1, 2)) == []

    def test_a_study_is_not_split_between_patients_within_one_call(self, catalog: Catalog) -> None:
        results = ingest(
            catalog,
            [record(uid(1, 1, 1), patient="PSN-A"), record(uid(1, 1, 2), patient="PSN-B")],
        )

        assert outcomes(results) == [ItemOutcome.STORED, ItemOutcome.CONFLICT]
        assert [p.patient_pseudonym for p in catalog.find_patients()] == ["PSN-A"]

    def test_a_series_is_never_moved_to_another_study(self, catalog: Catalog) -> None:
        ingest(catalog, [record(uid(1, 1, 1), series=uid(1, 1), study=uid(1))])
        moved = record(uid(1, 1, 2), series=uid(1, 1), study=uid(2))

        (result,) = ingest(catalog, [moved])

        assert result.outcome is ItemOutcome.CONFLICT
        assert uid(1) in result.reason and uid(2) in result.reason
        assert [s.study_instance_uid for s in catalog.find_studies()] == [uid(1)]
        assert catalog.find_series()[0].study_instance_uid == uid(1)

    @pytest.mark.parametrize("same_call", [True, False])
    def test_null_columns_are_filled_and_never_overwritten(
        self, catalog: Catalog, same_call: bool
    ) -> None:
        sparse = record(uid(1, 1, 1), modality=None)
        full = record(
            uid(1, 1, 2),
            modality="MR",
            patient_sex="F",
            patient_birth_date=datetime.date(1970, 5, 1),
            study_date=day(1),
            study_description="Brain",
            accession_number="ACC1",
            series_number=7,
            series_description="T1",
            manufacturer="Acme",
        )
        differing = record(
            uid(1, 1, 3),
            modality="CT",
            patient_sex="M",
            study_date=day(9),
            study_description="Other",
            series_number=8,
            body_part_examined="HEAD",
        )
        if same_call:
            ingest(catalog, [sparse, full, differing])
        else:
            for instance in (sparse, full, differing):
                ingest(catalog, [instance])

        (patient,) = catalog.find_patients()
        assert (patient.patient_sex, patient.patient_birth_date) == ("F", datetime.date(1970, 5, 1))
        (study,) = catalog.find_studies()
        assert (study.study_date, study.study_description) == (day(1), "Brain")
        assert study.accession_number == "ACC1"
        assert study.modalities_in_study == ("MR",)
        (series,) = catalog.find_series()
        assert (series.modality, series.series_number) == ("MR", 7)
        assert (series.series_description, series.manufacturer) == ("T1", "Acme")
        assert series.body_part_examined == "HEAD"
        assert series.number_of_instances == 3

    def test_problems_and_batch_counters(self, catalog: Catalog) -> None:
        batch_id = start(catalog)
        ingest(catalog, [record(uid(1, 1, 1))])
        items = [
            stored(record(uid(1, 1, 1))),
            stored(record(uid(1, 1, 1), content="x")),
            stored(record(uid(1, 1, 2))),
            problem(ItemOutcome.REJECTED, "in/notdicom.txt", "not DICOM", bytes_in=11),
            problem(ItemOutcome.QUARANTINED, "in/burned.dcm", "burned-in text", bytes_in=13),
        ]

        first = catalog.record_items(batch_id, items)
        second = catalog.record_items(batch_id, items[3:])

        assert outcomes(first) == [
            ItemOutcome.DUPLICATE,
            ItemOutcome.CONFLICT,
            ItemOutcome.STORED,
            ItemOutcome.REJECTED,
            ItemOutcome.QUARANTINED,
        ]
        assert first[3] == ItemResult(
            "in/notdicom.txt", ItemOutcome.REJECTED, "not DICOM", None, None
        )
        assert outcomes(second) == [ItemOutcome.REJECTED, ItemOutcome.QUARANTINED]
        batch = catalog.batch(batch_id)
        assert (batch.received, batch.stored, batch.duplicate, batch.conflict) == (7, 1, 1, 1)
        assert (batch.rejected, batch.quarantined) == (2, 2)
        assert batch.bytes_in == 3 * 1000 + 1 + 2 * (11 + 13)
        rows = execute(catalog, "SELECT count(*) FROM ingest_item WHERE batch_id = :b", b=batch_id)
        assert rows == [(7,)]

    def test_an_empty_call_records_nothing(self, catalog: Catalog) -> None:
        batch_id = start(catalog)
        assert catalog.record_items(batch_id, []) == []
        assert catalog.batch(batch_id).received == 0

    def test_an_unknown_batch_is_not_found_and_nothing_is_recorded(self, catalog: Catalog) -> None:
        with pytest.raises(NotFound, match="no ingest batch f+ "):
            catalog.record_items("f" * 32, [stored(record(uid(1, 1, 1)))])
        assert catalog.find_instances() == []
        assert catalog.stats().patients == 0

    @pytest.mark.parametrize(
        ("item", "message"),
        [
            (ItemInput("a", ItemOutcome.STORED), "without an instance"),
            (ItemInput("a", ItemOutcome.REJECTED, instance=record(uid(1))), "with an instance"),
            (stored(replace(record(uid(1)), blob_digest="ABC")), "not a SHA-256 digest"),
            (ItemInput("a", ItemOutcome.REJECTED, bytes_in=-1), "bytes_in is negative"),
        ],
    )
    def test_a_broken_contract_is_refused(
        self, catalog: Catalog, item: ItemInput, message: str
    ) -> None:
        batch_id = start(catalog)
        with pytest.raises(InvalidInput, match=message):
            catalog.record_items(batch_id, [stored(record(uid(9, 9, 9))), item])
        assert catalog.batch(batch_id).received == 0
        assert catalog.find_instances() == []

    def test_an_instance_the_columns_cannot_hold_is_rejected(self, catalog: Catalog) -> None:
        secret = "SECRETVALUE" * 2
        results = ingest(
            catalog,
            [
                record(uid(1, 1, 1), modality=secret),
                record(uid(1, 1, 2), patient=""),
                record(uid(1, 1, 3)),
            ],
        )

        assert outcomes(results) == [
            ItemOutcome.REJECTED,
            ItemOutcome.REJECTED,
            ItemOutcome.STORED,
        ]
        assert "modality is longer than 16 characters" in results[0].reason
        assert secret not in results[0].reason
        assert "patient_pseudonym is empty" in results[1].reason
        assert [i.sop_instance_uid for i in catalog.find_instances()] == [uid(1, 1, 3)]

    def test_a_failed_transaction_is_retried_once(
        self, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = repository_module.Recorder.record
        calls: list[int] = []

        def flaky(self: Any, items: Any) -> list[ItemResult]:
            calls.append(1)
            results = real(self, items)
            if len(calls) == 1:
                raise IntegrityError("INSERT", {}, Exception("concurrent writer"))
            return results

        monkeypatch.setattr(repository_module.Recorder, "record", flaky)
        batch_id = start(catalog)

        results = catalog.record_items(batch_id, [stored(record(uid(1, 1, 1)))])

        assert len(calls) == 2
        assert outcomes(results) == [ItemOutcome.STORED]
        assert catalog.batch(batch_id).received == 1
        assert len(catalog.find_instances()) == 1

    def test_a_transaction_failing_twice_raises_storage_error(
        self, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(self: Any, items: Any) -> list[ItemResult]:
            raise IntegrityError("INSERT", {}, Exception("PSN-A was here"))

        monkeypatch.setattr(repository_module.Recorder, "record", broken)
        batch_id = start(catalog)

        with pytest.raises(StorageError, match="failed twice") as raised:
            catalog.record_items(batch_id, [stored(record(uid(1, 1, 1)))])
        assert "PSN-A" not in str(raised.value)

    def test_concurrent_writers_store_each_instance_once(self, catalog: Catalog) -> None:
        # Two writers record the same items at the same time: SQLite queues them (BEGIN
        # IMMEDIATE); on PostgreSQL the loser of a race fails, is retried and sees duplicates.
        instances = series_of(1, 1, 30) + series_of(2, 1, 30, patient="PSN-B")
        results: list[ItemResult] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def writer() -> None:
            try:
                with Catalog(catalog.url) as other:
                    batch_id = start(other)
                    for begin in range(0, len(instances), 10):
                        chunk = [stored(i) for i in instances[begin : begin + 10]]
                        barrier.wait()
                        results.extend(other.record_items(batch_id, chunk))
            except BaseException as exc:  # reported below
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=writer) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        assert [r.outcome for r in results].count(ItemOutcome.STORED) == 60
        assert [r.outcome for r in results].count(ItemOutcome.DUPLICATE) == 60
        before = counters(catalog)
        assert sorted(before["series"]) == [(uid(1, 1), 30), (uid(2, 1), 30)]
        catalog.refresh_series([uid(1, 1), uid(2, 1)])
        assert counters(catalog) == before


class TestQueries:
    def test_pseudonym_wildcards_escape_like_characters(self, catalog: Catalog) -> None:
        names = ["PSN_1", "PSNX1", "PSN%2", "psn_1", "PSN!1"]
        ingest(
            catalog,
            [
                record(uid(n, 1, 1), series=uid(n, 1), study=uid(n), patient=p)
                for n, p in enumerate(names)
            ],
        )

        def find(pattern: str | None) -> list[str]:
            return [p.patient_pseudonym for p in catalog.find_patients(patient_pseudonym=pattern)]

        assert find("PSN_1") == ["PSN_1"]
        assert find("PSN_*") == ["PSN_1"]
        assert find("PSN%*") == ["PSN%2"]
        assert find("PSN!*") == ["PSN!1"]
        assert find("PSN?1") == ["PSN!1", "PSNX1", "PSN_1"]
        assert find("psn*") == ["psn_1"]
        assert find("*1") == ["PSN!1", "PSNX1", "PSN_1", "psn_1"]
        assert find("PSN") == []
        assert find("*") == find(None) == find("") == sorted(names)

    def test_studies_by_patient_date_range_and_modality(self, catalog: Catalog) -> None:
        ingest(catalog, series_of(1, 1, 1, study_date=day(1), modality="CT"))
        ingest(catalog, series_of(1, 2, 1, study_date=day(1), modality="MR"))
        ingest(catalog, series_of(2, 1, 1, study_date=day(5), modality="MR"))
        ingest(catalog, series_of(3, 1, 1, study_date=day(10), modality="CT", patient="PSN-B"))
        ingest(catalog, series_of(4, 1, 1, study_date=None, modality="CT"))

        def find(**filters: Any) -> list[str]:
            return [s.study_instance_uid for s in catalog.find_studies(**filters)]

        assert find() == [uid(1), uid(2), uid(3), uid(4)]
        assert find(patient_pseudonym="PSN-A") == [uid(1), uid(2), uid(4)]
        assert find(patient_pseudonym="*B") == [uid(3)]
        assert find(date_from=day(1), date_to=day(5)) == [uid(1), uid(2)]
        assert find(date_from=day(5)) == [uid(2), uid(3)]
        assert find(date_to=day(4)) == [uid(1)]
        assert find(date_from=day(6), date_to=day(9)) == []
        assert find(modality="CT") == [uid(1), uid(3), uid(4)]
        assert find(modality="MR") == [uid(1), uid(2)]
        assert find(modality="MR", date_from=day(2)) == [uid(2)]
        assert find(modality="US") == []
        assert find(study_instance_uid=uid(2)) == [uid(2)]
        assert find(patient_pseudonym="PSN-A", modality="CT", date_to=day(30)) == [uid(1)]

    def test_studies_by_accession_and_description_with_wildcards(self, catalog: Catalog) -> None:
        descriptions = ["CT 50% dose", "CT 50 dose", "MR_brain", "MRXbrain"]
        for n, description in enumerate(descriptions, start=1):
            ingest(
                catalog,
                series_of(n, 1, 1, study_description=description, accession_number=f"A{n}_X"),
            )

        def find(**filters: Any) -> list[str]:
            return [s.study_description or "" for s in catalog.find_studies(**filters)]

        assert find(study_description="CT 50%*") == ["CT 50% dose"]
        assert find(study_description="CT 50*") == ["CT 50% dose", "CT 50 dose"]
        assert find(study_description="MR_*") == ["MR_brain"]
        assert find(study_description="MR?brain") == ["MR_brain", "MRXbrain"]
        assert find(study_description="mr*") == []
        assert find(accession_number="A3_X") == ["MR_brain"]
        assert find(accession_number="A?_*") == descriptions

    def test_studies_order_and_paging(self, catalog: Catalog) -> None:
        plan = [(1, day(2)), (2, None), (3, day(1)), (4, day(2)), (5, None), (6, day(0))]
        for n, date in plan:
            ingest(catalog, series_of(n, 1, 1, study_date=date, patient=f"PSN-{n % 2}"))

        def find(**filters: Any) -> list[str]:
            return [s.study_instance_uid for s in catalog.find_studies(**filters)]

        listed = [uid(6), uid(3), uid(1), uid(4), uid(2), uid(5)]
        assert find() == listed
        # Every page, across the dated and the undated studies.
        for offset in range(8):
            for limit in range(8):
                assert find(limit=limit, offset=offset) == listed[offset : offset + limit]
        assert find(patient_pseudonym="PSN-1") == [uid(3), uid(1), uid(5)]
        assert find(patient_pseudonym="PSN-1", limit=1, offset=2) == [uid(5)]
        assert find(patient_pseudonym="PSN-?", limit=2, offset=3) == [uid(4), uid(2)]
        assert find(modality="CT", offset=4) == [uid(2), uid(5)]
        with pytest.raises(InvalidQuery, match="limit=-1"):
            catalog.find_studies(limit=-1)
        with pytest.raises(InvalidQuery, match="offset=-2"):
            catalog.find_series(offset=-2)

    def test_series_filters_order_and_paging(self, catalog: Catalog) -> None:
        plan = [
            (1, 3, "MR", "T2_ax"),
            (2, None, "CT", "scout"),
            (3, 1, "MR", "T2Xax"),
            (4, 3, "MR", None),
        ]
        for n, number, modality, description in plan:
            ingest(
                catalog,
                series_of(
                    1,
                    n,
                    1,
                    series_number=number,
                    modality=modality,
                    series_description=description,
                ),
            )
        ingest(catalog, series_of(2, 1, 2, series_number=1))

        def find(**filters: Any) -> list[str]:
            return [s.series_instance_uid for s in catalog.find_series(**filters)]

        assert find(study_instance_uid=uid(1)) == [uid(1, 3), uid(1, 1), uid(1, 4), uid(1, 2)]
        assert find(study_instance_uid=uid(1), modality="MR") == [uid(1, 3), uid(1, 1), uid(1, 4)]
        assert find(modality="CT") == [uid(2, 1), uid(1, 2)]
        assert find(series_description="T2_*") == [uid(1, 1)]
        assert find(series_description="T2?ax") == [uid(1, 3), uid(1, 1)]
        assert find(series_instance_uid=uid(2, 1)) == [uid(2, 1)]
        assert find(study_instance_uid=uid(1), limit=2, offset=1) == [uid(1, 1), uid(1, 4)]
        assert find(study_instance_uid=uid(9)) == []
        (summary,) = catalog.find_series(series_instance_uid=uid(2, 1))
        assert (summary.study_instance_uid, summary.number_of_instances) == (uid(2), 2)

    def test_instances_filters_order_and_paging(self, catalog: Catalog) -> None:
        numbers = {"5": 2, "3": None, "4": 1, "1": 2, "2": None}
        ingest(
            catalog,
            [
                record(uid(1, 1, n), series=uid(1, 1), instance_number=number, rows=512)
                for n, number in numbers.items()
            ],
        )
        ingest(catalog, series_of(1, 2, 2, series_number=1))
        ingest(catalog, series_of(2, 1, 1))

        def find(**filters: Any) -> list[str]:
            return [i.sop_instance_uid for i in catalog.find_instances(**filters)]

        in_series = [uid(1, 1, 4), uid(1, 1, 1), uid(1, 1, 5), uid(1, 1, 2), uid(1, 1, 3)]
        assert find(series_instance_uid=uid(1, 1)) == in_series
        assert find(series_instance_uid=uid(1, 1), limit=2, offset=2) == in_series[2:4]
        assert find(study_instance_uid=uid(1)) == [uid(1, 2, 1), uid(1, 2, 2), *in_series]
        assert find(sop_instance_uid=uid(2, 1, 1)) == [uid(2, 1, 1)]
        assert find(sop_instance_uid=uid(9)) == []
        assert len(find()) == 8
        (summary,) = catalog.find_instances(sop_instance_uid=uid(1, 1, 4))
        assert (summary.series_instance_uid, summary.study_instance_uid) == (uid(1, 1), uid(1))
        assert (summary.instance_number, summary.rows, summary.columns) == (1, 512, None)
        assert summary.blob_digest == digest(uid(1, 1, 4))
        assert summary.blob_size == 1000

    def test_instance_header(self, catalog: Catalog) -> None:
        instance = record(uid(1, 1, 1), instance_number=4)
        ingest(catalog, [instance])

        assert catalog.instance_header(uid(1, 1, 1)) == json.loads(instance.header_json)
        with pytest.raises(NotFound, match=uid(1, 1, 2)):
            catalog.instance_header(uid(1, 1, 2))


class TestSeriesMetadataAndRefresh:
    def test_metadata_is_in_instance_order(self, catalog: Catalog) -> None:
        numbers = {"1": 3, "2": None, "3": 1, "4": None, "5": 2}
        ingest(
            catalog,
            [record(uid(1, 1, n), series=uid(1, 1), instance_number=v) for n, v in numbers.items()],
        )

        metadata = catalog.series_metadata(uid(1, 1))

        sops = [header["00080018"]["Value"][0] for header in metadata]
        assert sops == [uid(1, 1, 3), uid(1, 1, 5), uid(1, 1, 1), uid(1, 1, 2), uid(1, 1, 4)]
        assert metadata[0] == json.loads(record(uid(1, 1, 3), instance_number=1).header_json)
        assert json.loads(catalog.series_metadata_json(uid(1, 1))) == metadata

    def test_metadata_is_cached_and_recomputed_when_stale(self, catalog: Catalog) -> None:
        ingest(catalog, series_of(1, 1, 2))
        query = "SELECT metadata_instances, metadata IS NULL FROM series"
        assert execute(catalog, query) == [(0, True)]

        assert len(catalog.series_metadata(uid(1, 1))) == 2
        assert execute(catalog, query) == [(2, False)]

        ingest(catalog, series_of(1, 1, 3)[2:])
        assert len(catalog.series_metadata(uid(1, 1))) == 3
        assert execute(catalog, query) == [(3, False)]

    def test_cached_metadata_is_served(self, catalog: Catalog) -> None:
        ingest(catalog, series_of(1, 1, 2))
        catalog.series_metadata(uid(1, 1))
        execute(catalog, "UPDATE instance SET header = '{}'")

        assert len(catalog.series_metadata(uid(1, 1))) == 2
        assert catalog.series_metadata(uid(1, 1))[0] != {}

    def test_metadata_of_an_unknown_series(self, catalog: Catalog) -> None:
        with pytest.raises(NotFound, match=uid(7, 7)):
            catalog.series_metadata(uid(7, 7))

    @pytest.mark.parametrize(("chunk", "budget"), [(256, 10_000), (1, 1), (2, 3)])
    def test_counters_equal_the_exact_recomputation(
        self, catalog: Catalog, monkeypatch: pytest.MonkeyPatch, chunk: int, budget: int
    ) -> None:
        # Small chunks and instance budgets refresh in several transactions.
        monkeypatch.setattr(repository_module, "REFRESH_CHUNK", chunk)
        monkeypatch.setattr(repository_module, "REFRESH_INSTANCES", budget)
        ingest(catalog, series_of(1, 1, 3, modality="CT") + series_of(1, 2, 1, modality="MR"))
        ingest(catalog, series_of(1, 1, 5, modality="CT")[3:] + series_of(2, 1, 2, modality=None))
        ingest(catalog, series_of(3, 1, 1, modality="US", patient="PSN-B"))
        ingest(catalog, series_of(1, 3, 2, modality="SR"))
        incremental = counters(catalog)
        all_series = [s.series_instance_uid for s in catalog.find_series()]

        execute(catalog, "UPDATE series SET number_of_instances = 99")
        execute(
            catalog,
            "UPDATE study SET number_of_series = 0, number_of_instances = 0, stored_bytes = 1",
        )
        execute(catalog, "UPDATE study SET modalities_in_study = 'XX'")
        execute(catalog, "UPDATE patient SET number_of_studies = 42")
        assert counters(catalog) != incremental

        catalog.refresh_series(all_series)

        assert counters(catalog) == incremental
        assert incremental["study"][0] == (uid(1), 3, 8, 8000, "CT\\MR\\SR")
        assert incremental["patient"] == [("PSN-A", 2), ("PSN-B", 1)]
        assert execute(catalog, "SELECT sum(metadata_instances) FROM series") == [(11,)]

    def test_refresh_of_an_unknown_series_changes_nothing(self, catalog: Catalog) -> None:
        ingest(catalog, series_of(1, 1, 1))
        execute(catalog, "UPDATE series SET number_of_instances = 5")

        with pytest.raises(NotFound, match=f"1 series .*{uid(8, 8)}"):
            catalog.refresh_series([uid(1, 1), uid(8, 8)])

        assert catalog.find_series()[0].number_of_instances == 5


class TestBatchesProblemsAndTotals:
    def test_a_batch_records_how_it_was_started(self, catalog: Catalog) -> None:
        before = datetime.datetime.now(datetime.UTC)
        batch_id = catalog.start_batch(
            role="central", sources=["a", "b/c"], profile=None, key_id=None
        )
        other = catalog.start_batch(role="site", sources=[], profile="p", key_id="k", pid=77)

        batch = catalog.batch(batch_id)
        assert len(batch_id) == 32 and int(batch_id, 16) >= 0
        assert (batch.role, batch.sources, batch.profile, batch.key_id) == (
            "central",
            ("a", "b/c"),
            None,
            None,
        )
        assert batch.pid == os.getpid()
        assert catalog.batch(other).pid == 77
        assert batch.state is BatchState.RUNNING and batch.finished_at is None
        assert batch.started_at.tzinfo is not None
        assert before - datetime.timedelta(seconds=5) <= batch.started_at
        assert batch.started_at <= datetime.datetime.now(datetime.UTC)
        assert batch.expected is None and batch.received == 0 and batch.bytes_in == 0
        assert json.loads(json.dumps(batch.to_json()))["sources"] == ["a", "b/c"]

    def test_batch_states(self, catalog: Catalog) -> None:
        done, stopped, running = (start(catalog) for _ in range(3))

        catalog.finish_batch(done, state=BatchState.COMPLETE, expected=12)
        catalog.set_batch_state(stopped, BatchState.INTERRUPTED)

        assert [b.batch_id for b in catalog.running_batches()] == [running]
        finished = catalog.batch(done)
        assert (finished.state, finished.expected) == (BatchState.COMPLETE, 12)
        assert finished.finished_at is not None
        assert finished.finished_at >= finished.started_at
        interrupted = catalog.batch(stopped)
        assert interrupted.state is BatchState.INTERRUPTED
        assert interrupted.finished_at is not None

        catalog.set_batch_state(stopped, BatchState.RUNNING)
        assert catalog.batch(stopped).finished_at is None
        assert {b.batch_id for b in catalog.running_batches()} == {stopped, running}
        with pytest.raises(InvalidInput, match="complete or interrupted"):
            catalog.finish_batch(running, state=BatchState.RUNNING)

    def test_unknown_batches_are_not_found(self, catalog: Catalog) -> None:
        missing = "0" * 32
        with pytest.raises(NotFound, match=missing):
            catalog.batch(missing)
        with pytest.raises(NotFound, match=missing):
            catalog.finish_batch(missing, state=BatchState.COMPLETE)
        with pytest.raises(NotFound, match=missing):
            catalog.set_batch_state(missing, BatchState.INTERRUPTED)

    def test_batches_newest_first(self, catalog: Catalog) -> None:
        ids = [start(catalog) for _ in range(4)]

        assert [b.batch_id for b in catalog.batches()] == ids[::-1]
        assert [b.batch_id for b in catalog.batches(limit=2)] == ids[:1:-1]

    def test_problems_newest_first_by_outcome_and_batch(self, catalog: Catalog) -> None:
        ingest(catalog, [record(uid(1, 1, 1))])
        first = start(catalog)
        catalog.record_items(
            first,
            [
                problem(ItemOutcome.REJECTED, "a", "not DICOM"),
                stored(record(uid(1, 1, 1), content="changed")),
                stored(record(uid(1, 1, 1))),
            ],
        )
        second = start(catalog)
        catalog.record_items(second, [problem(ItemOutcome.QUARANTINED, "b", "burned-in text")])

        listed = catalog.problems()
        assert [(p.batch_id, p.source_path) for p in listed] == [
            (second, "b"),
            (first, f"in/{uid(1, 1, 1)}.dcm"),
            (first, "a"),
        ]
        assert [p.outcome for p in listed] == [
            ItemOutcome.QUARANTINED,
            ItemOutcome.CONFLICT,
            ItemOutcome.REJECTED,
        ]
        assert listed[0].reason == "burned-in text"
        assert listed[0].created_at.tzinfo is not None
        assert [p.source_path for p in catalog.problems(batch_id=first)] == [
            f"in/{uid(1, 1, 1)}.dcm",
            "a",
        ]
        assert [p.source_path for p in catalog.problems(outcomes=[ItemOutcome.REJECTED])] == ["a"]
        assert len(catalog.problems(outcomes=[ItemOutcome.DUPLICATE, ItemOutcome.STORED])) == 2
        assert catalog.problems(outcomes=[]) == []
        assert [p.source_path for p in catalog.problems(limit=1, offset=2)] == ["a"]
        assert json.loads(json.dumps(listed[1].to_json()))["outcome"] == "conflict"

    def test_stats(self, catalog: Catalog) -> None:
        empty = catalog.stats()
        assert (empty.patients, empty.instances, empty.stored_bytes) == (0, 0, 0)
        assert empty.problems == {"conflict": 0, "rejected": 0, "quarantined": 0}

        ingest(catalog, series_of(1, 1, 3) + series_of(2, 1, 1, patient="PSN-B"))
        batch_id = start(catalog)
        catalog.record_items(
            batch_id,
            [
                stored(record(uid(1, 1, 1), content="zz")),
                problem(ItemOutcome.REJECTED, "x", "not DICOM"),
                problem(ItemOutcome.REJECTED, "y", "not DICOM"),
            ],
        )

        stats = catalog.stats()
        assert (stats.patients, stats.studies, stats.series, stats.instances) == (2, 2, 2, 4)
        assert stats.stored_bytes == 4000
        assert stats.problems == {"conflict": 1, "rejected": 2, "quarantined": 0}
        assert stats.batches == 2
        assert stats.to_json()["problems"]["rejected"] == 2

    def test_blob_references_cover_instances_and_conflicts(self, catalog: Catalog) -> None:
        instances = series_of(1, 1, 3)
        ingest(catalog, instances)
        changed = record(uid(1, 1, 2), content="changed")
        ingest(catalog, [changed, instances[0]])
        catalog.record_items(start(catalog), [problem(ItemOutcome.REJECTED, "x", "not DICOM")])

        references = list(catalog.blob_references())

        expected = [("instance", i.blob_digest, i.sop_instance_uid) for i in instances]
        expected.append(("conflict", changed.blob_digest, uid(1, 1, 2)))
        assert sorted((r.kind, r.digest, r.sop_instance_uid) for r in references) == sorted(
            expected
        )

    def test_summaries_are_json_ready(self, catalog: Catalog) -> None:
        ingest(
            catalog,
            series_of(
                1,
                1,
                1,
                modality="MR",
                study_date=day(0),
                patient_birth_date=datetime.date(1970, 1, 2),
            ),
        )

        (study,) = catalog.find_studies()
        (patient,) = catalog.find_patients()
        assert study.to_json()["study_date"] == "2020-01-01"
        assert study.to_json()["modalities_in_study"] == ["MR"]
        assert patient.to_json()["patient_birth_date"] == "1970-01-02"
        for summary in (study, patient, catalog.find_series()[0], catalog.find_instances()[0]):
            assert json.loads(json.dumps(summary.to_json())) == summary.to_json()


class TestCatalogObject:
    def test_url_backend_and_repr(self, catalog: Catalog) -> None:
        assert catalog.backend in ("sqlite", "postgresql")
        assert catalog.url.startswith(
            "sqlite:///" if catalog.backend == "sqlite" else "postgresql+psycopg://"
        )
        assert repr(catalog).startswith("Catalog(")

    def test_analyze_gathers_planner_statistics(self, catalog: Catalog) -> None:
        # A blob size no other test uses, so the statistics can only come from this analyze.
        ingest(catalog, [record(uid(1, 1, n), content="z" * 4321) for n in range(3)])

        catalog.analyze()

        if catalog.backend == "sqlite":
            query = "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'instance'"
            assert execute(catalog, query)[0][0] > 0
        else:
            query = (
                "SELECT most_common_vals::text FROM pg_stats "
                "WHERE tablename = 'instance' AND attname = 'blob_size'"
            )
            assert execute(catalog, query) == [("{5321}",)]
        assert len(catalog.find_instances()) == 3

    @pytest.mark.parametrize("big", [True, False])
    def test_finishing_a_big_batch_analyzes(
        self, catalog: Catalog, monkeypatch: pytest.MonkeyPatch, big: bool
    ) -> None:
        monkeypatch.setattr(repository_module, "ANALYZE_AFTER", 3 if big else 4)
        size = 6432 if big else 6433  # sizes no other test uses: stats come from this test
        batch_id = start(catalog)
        catalog.record_items(
            batch_id, [stored(record(uid(1, 1, n), content="y" * (size - 1000))) for n in range(3)]
        )

        catalog.finish_batch(batch_id, state=BatchState.COMPLETE)

        if catalog.backend == "sqlite":
            query = "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
            assert execute(catalog, query) == [(1 if big else 0,)]
        else:
            query = (
                "SELECT count(*) FROM pg_stats WHERE tablename = 'instance' "
                "AND attname = 'blob_size' AND most_common_vals::text = :expected"
            )
            assert execute(catalog, query, expected=f"{{{size}}}") == [(1 if big else 0,)]

    def test_a_closed_catalog_can_be_reopened(self, catalog: Catalog) -> None:
        ingest(catalog, series_of(1, 1, 1))
        catalog.close()
        with Catalog(catalog.url) as again:
            assert len(again.find_instances()) == 1

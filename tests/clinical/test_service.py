"""Clinical record import on a site node and on a central node."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError

import biobank.catalog.clinical as repository
import biobank.clinical.service as service_module
from biobank.catalog import Catalog, sqlite_url
from biobank.catalog.clinical import ClinicalRecords
from biobank.catalog.data_queries import DataQueries, QueryState
from biobank.catalog.omop import (
    CLINICAL_IMPORT,
    CLINICAL_RECORD,
    CLINICAL_RECORD_ROW,
    CLINICAL_RECORD_VERSION,
    CONDITION_OCCURRENCE,
    DEATH,
    EPISODE,
    EPISODE_EVENT,
    MEASUREMENT,
    OBSERVATION,
    PERSON,
    PROCEDURE_OCCURRENCE,
)
from biobank.clinical import FormRegistry, OmopTable
from biobank.clinical.service import (
    FAILED,
    SEAL_PURPOSE,
    ClinicalService,
    canonical_json,
    dicom_identity,
)
from biobank.deid import Profile, Pseudonymizer, SiteKey, builtin_profile
from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from biobank.errors import NotFound, PermissionDenied, StorageError
from tests.conftest import OTHER_KEY_BYTES, run_deid

PATIENT_ID = "MRN-0042"
ISSUER = "HOSP-A"


def prostate(**changes: Any) -> dict[str, Any]:
    """A valid prostate record as a CSV gives it (every value text)."""
    record = {
        "patient_id": PATIENT_ID,
        "issuer_of_patient_id": ISSUER,
        "sex": "male",
        "birth_date": "1955-04-02",
        "diagnosis_date": "2020-01-10",
        "histology": "acinar_adenocarcinoma",
        "psa": "7.5",
        "psa_date": "2020-01-02",
        "biopsy_date": "2019-12-20",
        "biopsy_type": "targeted",
        "gleason_primary": "3",
        "gleason_secondary": "4",
        "gleason_score": "7",
        "isup_grade": "2",
        "ct": "T2",
        "treatment_type": "radical_prostatectomy",
        "treatment_start_date": "2020-03-01",
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def followup(**changes: Any) -> dict[str, Any]:
    record = {
        "patient_id": PATIENT_ID,
        "issuer_of_patient_id": ISSUER,
        "followup_date": "2021-01-01",
        "vital_status": "alive",
        "disease_status": "no_evidence_of_disease",
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog.open(sqlite_url(tmp_path / "catalog.sqlite")) as opened:
        yield opened


@pytest.fixture(scope="module")
def forms() -> FormRegistry:
    return FormRegistry()


def site_service(
    catalog: Catalog,
    forms: FormRegistry,
    site_key: SiteKey,
    profile: Profile,
    **kwargs: Any,
) -> ClinicalService:
    return ClinicalService(
        catalog,
        forms,
        site="site-a",
        pseudonymizer=Pseudonymizer(site_key),
        profile=profile,
        seal_key=site_key.derive(SEAL_PURPOSE),
        **kwargs,
    )


@pytest.fixture
def site(
    catalog: Catalog, forms: FormRegistry, site_key: SiteKey, research: Profile
) -> ClinicalService:
    return site_service(catalog, forms, site_key, research)


@pytest.fixture
def central(catalog: Catalog, forms: FormRegistry, research: Profile) -> ClinicalService:
    return ClinicalService(catalog, forms, site="central", pseudonymizer=None, profile=research)


def count(catalog: Catalog, table: Any, *where: Any) -> int:
    engine = create_engine(catalog.url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
            )
    finally:
        engine.dispose()


def omop_counts(catalog: Catalog) -> dict[str, int]:
    tables = (
        CONDITION_OCCURRENCE,
        PROCEDURE_OCCURRENCE,
        MEASUREMENT,
        OBSERVATION,
        EPISODE,
        EPISODE_EVENT,
        DEATH,
        CLINICAL_RECORD_ROW,
    )
    return {table.name: count(catalog, table) for table in tables}


# -- identity and dates: the same as the images ----------------------------------------------


def test_pseudonym_and_date_shift_match_the_deidentified_images(
    site: ClinicalService, pseudonymizer: Pseudonymizer, research: Profile
) -> None:
    phi = make_patient_phi(3, seed=1)
    image = make_ct_series(phi, 1, rows=16, cols=16)[0]
    study_date = dt.datetime.strptime(image.StudyDate, "%Y%m%d").date()
    deidentified = run_deid(image, research, pseudonymizer)
    shifted_study_date = dt.datetime.strptime(deidentified.dataset.StudyDate, "%Y%m%d").date()
    assert shifted_study_date != study_date

    report = site.import_records(
        "prostate",
        [
            prostate(
                patient_id=f" {phi.patient_id} ",
                issuer_of_patient_id=phi.issuer_of_patient_id,
                diagnosis_date=study_date.isoformat(),
                psa_date=study_date.isoformat(),
                biopsy_date=None,
                biopsy_type=None,
                treatment_start_date=(study_date + dt.timedelta(days=30)).isoformat(),
            )
        ],
        submitter="alice",
        channel="cli",
    )

    (result,) = report.results
    assert result.outcome == "created", report.to_json()["issues"]
    assert result.patient_pseudonym == deidentified.record.patient_pseudonym
    stored = site.record(result.record_id or 0)
    assert stored.patient_pseudonym == deidentified.record.patient_pseudonym
    assert stored.values["diagnosis_date"] == shifted_study_date
    assert stored.values["treatment_start_date"] == shifted_study_date + dt.timedelta(days=30)
    assert "patient_id" not in stored.values
    assert "issuer_of_patient_id" not in stored.values
    # the OMOP person is the images' person (same person_source_value)
    assert (
        count(site.catalog, PERSON, PERSON.c.person_source_value == stored.patient_pseudonym) == 1
    )
    conditions = select(CONDITION_OCCURRENCE.c.condition_start_date)
    assert scalar_rows(site, conditions) == [shifted_study_date]


def scalar_rows(service: ClinicalService, stmt: Any) -> list[Any]:
    engine = create_engine(service.catalog.url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(stmt).scalars())
    finally:
        engine.dispose()


def test_dicom_identity_is_read_as_the_deidentifier_reads_it() -> None:
    assert dicom_identity(None, " MRN-1 ") == ("", "MRN-1")
    assert dicom_identity(" HOSP ", "MRN-1\\OTHER") == ("HOSP", "MRN-1")
    assert dicom_identity("", "MRN-1\x00") == ("", "MRN-1")
    assert dicom_identity(None, 1234) == ("", "1234")


@pytest.mark.parametrize(
    ("profile_name", "shifted"),
    [
        ("research", True),  # retain longitudinal modified dates: shifted like the images
        ("research-full-dates", False),  # retain longitudinal full dates: kept
        ("basic", True),  # images lose their dates; OMOP needs dates: shifted, never kept
    ],
)
def test_date_policy_follows_the_profile(
    catalog: Catalog,
    forms: FormRegistry,
    site_key: SiteKey,
    pseudonymizer: Pseudonymizer,
    profile_name: str,
    shifted: bool,
) -> None:
    profile = builtin_profile(profile_name)
    service = site_service(catalog, forms, site_key, profile)
    report = service.import_records("prostate", [prostate()], submitter="alice", channel="cli")

    offset = pseudonymizer.date_offset_days(ISSUER, PATIENT_ID, profile.date_offset_max_days)
    stored = service.record(report.results[0].record_id or 0)
    diagnosis = dt.date(2020, 1, 10)
    expected = diagnosis + dt.timedelta(days=offset) if shifted else diagnosis
    assert stored.values["diagnosis_date"] == expected
    assert stored.values["birth_date"] == dt.date(1955, 4, 2) + (expected - diagnosis)


# -- updates: unchanged, corrected ------------------------------------------------------------


def test_reupload_unchanged_then_corrected(site: ClinicalService, site_key: SiteKey) -> None:
    first = site.import_records("prostate", [prostate()], submitter="alice", channel="cli")
    record_id = first.results[0].record_id
    assert first.created == 1 and record_id is not None
    before = omop_counts(site.catalog)
    rows_before = ClinicalRecords(site.catalog).rows(record_id)

    again = site.import_records("prostate", [prostate()], submitter="bob", channel="api")
    assert [(r.outcome, r.record_id, r.version) for r in again.results] == [
        ("unchanged", record_id, 1)
    ]
    assert omop_counts(site.catalog) == before

    corrected = site.import_records(
        "prostate",
        [prostate(psa="12.5", ct="T3a")],
        submitter="bob",
        channel="api",
    )
    (result,) = corrected.results
    assert (result.outcome, result.record_id, result.version) == ("updated", record_id, 2)
    assert set(result.changed_fields) == {"psa", "ct"}
    history = site.history(record_id)
    assert [(v.version, v.submitter, v.changed_fields) for v in history] == [
        (1, "alice", []),
        (2, "bob", ["ct", "psa"]),
    ]
    # keyed on a site node: the record holds the patient ID, a plain hash could confirm a guess
    canonical = canonical_json(prostate(psa="12.5", ct="T3a"))
    assert history[1].raw_digest != hashlib.sha256(canonical).hexdigest()
    digest_key = hmac.new(
        site_key.derive(SEAL_PURPOSE), b"submitted-record-digest", hashlib.sha256
    ).digest()
    assert history[1].raw_digest == hmac.new(digest_key, canonical, hashlib.sha256).hexdigest()
    assert history[0].raw_digest != history[1].raw_digest
    # the OMOP rows were replaced: same shape, none of the old ids left, the new values in
    assert omop_counts(site.catalog) == before
    rows_after = ClinicalRecords(site.catalog).rows(record_id)
    assert {k: len(v) for k, v in rows_after.items()} == {k: len(v) for k, v in rows_before.items()}
    assert 12.5 in scalar_rows(site, select(MEASUREMENT.c.value_as_number))
    assert 7.5 not in scalar_rows(site, select(MEASUREMENT.c.value_as_number))
    assert site.record(record_id).values["psa"] == 12.5
    assert count(site.catalog, CLINICAL_RECORD) == 1
    assert count(site.catalog, CLINICAL_RECORD_VERSION) == 2


def test_same_record_twice_in_one_import(site: ClinicalService) -> None:
    report = site.import_records(
        "prostate",
        [prostate(), prostate(), prostate(psa="8")],
        submitter="alice",
        channel="cli",
    )
    assert [(r.outcome, r.version) for r in report.results] == [
        ("created", 1),
        ("unchanged", 1),
        ("updated", 2),
    ]


# -- invalid records -------------------------------------------------------------------------


def test_invalid_record_is_rejected_and_the_others_stored(site: ClinicalService) -> None:
    records = [
        prostate(patient_id="P-1"),
        prostate(patient_id="P-2", psa="-3", sex="robot"),
        prostate(patient_id="P-3"),
        {"sex": "male"},
    ]
    report = site.import_records("prostate", records, submitter="alice", channel="api")

    assert len(report.results) == len(records)
    assert [r.index for r in report.results] == [0, 1, 2, 3]
    assert [r.outcome for r in report.results] == ["created", "rejected", "created", "rejected"]
    assert (report.received, report.created, report.rejected) == (4, 2, 2)
    assert report.results[1].record_id is None
    problems = {(i.record, i.field, i.rule) for i in report.issues}
    assert (1, "psa", "range") in problems
    assert (1, "sex", "code") in problems
    assert (3, "patient_id", "required") in problems
    bad = next(i for i in report.issues if i.field == "psa")
    assert bad.value == "-3" and bad.hint
    assert count(site.catalog, CLINICAL_RECORD) == 2
    (summary,) = ClinicalRecords(site.catalog).imports()
    assert summary.counts["rejected"] == 2 and summary.counts["created"] == 2
    assert {(p["record"], p["field"], p["rule"]) for p in summary.problems} == problems
    assert "-3" not in str(summary.problems)
    data = report.to_json()
    assert data["received"] == 4 and len(data["results"]) == 4 and data["issues"]


def test_a_record_that_is_not_an_object_is_rejected(site: ClinicalService) -> None:
    report = site.import_records(
        "prostate",
        [prostate(), "not a record"],  # type: ignore[list-item]
        submitter="alice",
        channel="api",
    )
    assert [r.outcome for r in report.results] == ["created", "rejected"]
    assert report.issues[-1].record == 1 and report.issues[-1].rule == "type"


def test_unknown_form(site: ClinicalService) -> None:
    with pytest.raises(NotFound, match="no clinical form 'nope'"):
        site.import_records("nope", [prostate()], submitter="alice", channel="api")


def test_cross_form_rules_see_stored_records_on_the_submitted_date_scale(
    site: ClinicalService,
) -> None:
    site.import_records("prostate", [prostate()], submitter="alice", channel="cli")

    report = site.import_records(
        "prostate_followup",
        [
            followup(followup_date="2020-01-10"),  # the day of diagnosis: allowed
            followup(followup_date="2020-01-09"),  # the day before: refused
            followup(patient_id="SOMEONE-ELSE", followup_date="2000-01-01"),  # no diagnosis
        ],
        submitter="alice",
        channel="cli",
    )

    assert [r.outcome for r in report.results] == ["created", "rejected", "created"]
    (issue,) = report.issues
    assert (issue.record, issue.field, issue.rule) == (
        1,
        "followup_date",
        "followup-after-diagnosis",
    )
    # the message quotes the dates as submitted, not as shifted
    assert "2020-01-09" in issue.message and "2020-01-10" in issue.message
    assert issue.record_key == "followup_date=2020-01-09"
    assert report.results[0].record_key == "followup_date=2020-01-10"


VISIT_FORM = """
name: visit
version: 1
title: Visit
key: [visit_number]
date: visit_date
variables:
  - {name: visit_number, type: integer, required: true, minimum: 1, maximum: 100}
  - {name: visit_date, type: date, required: true}
rules:
  - name: visits-in-order
    left: visit_date
    op: ">="
    right: visit.visit_date
"""


def test_cross_form_rules_see_earlier_records_of_the_same_import(
    catalog: Catalog, tmp_path: Path, site_key: SiteKey, research: Profile
) -> None:
    (tmp_path / "visit.yaml").write_text(VISIT_FORM, encoding="utf-8")
    forms = FormRegistry([tmp_path / "visit.yaml"], builtin=False)
    service = site_service(catalog, forms, site_key, research)

    def visit(number: int, day: str) -> dict[str, Any]:
        return {"patient_id": PATIENT_ID, "visit_number": str(number), "visit_date": day}

    report = service.import_records(
        "visit",
        [visit(1, "2020-02-01"), visit(2, "2020-01-01"), visit(3, "2020-03-01")],
        submitter="alice",
        channel="cli",
    )

    assert [r.outcome for r in report.results] == ["created", "rejected", "created"]
    (issue,) = report.issues
    assert (issue.record, issue.rule) == (1, "visits-in-order")
    assert "2020-02-01" in issue.message  # the earlier record, on the submitted date scale
    # a later import sees the stored ones
    later = service.import_records(
        "visit", [visit(4, "2020-02-15")], submitter="alice", channel="cli"
    )
    assert later.results[0].outcome == "rejected"
    assert "2020-03-01" in later.issues[0].message


# -- identity rules per node role ------------------------------------------------------------


def test_site_node_refuses_a_pseudonym(site: ClinicalService) -> None:
    report = site.import_records(
        "prostate",
        [prostate(patient_id=None, issuer_of_patient_id=None, patient_pseudonym="PABC")],
        submitter="alice",
        channel="api",
    )
    assert report.results[0].outcome == "rejected"
    assert any(
        i.field == "patient_pseudonym" and "site node computes" in i.message for i in report.issues
    )


def test_central_node_accepts_only_pseudonymised_records(central: ClinicalService) -> None:
    report = central.import_records(
        "prostate",
        [
            prostate(),
            prostate(patient_id=None, issuer_of_patient_id=None, patient_pseudonym="PXYZ123"),
            prostate(patient_id=None, issuer_of_patient_id=None, patient_pseudonym="bad name!"),
        ],
        submitter="pusher",
        channel="api",
    )

    assert [r.outcome for r in report.results] == ["rejected", "created", "rejected"]
    refused = [i for i in report.issues if i.record == 0]
    assert {i.field for i in refused} == {"patient_id", "issuer_of_patient_id"}
    assert all(
        "a central node accepts only pseudonymised records; pseudonymise at the site" in i.message
        for i in refused
    )
    assert report.issues[-1].field == "patient_pseudonym" and report.issues[-1].record == 2
    stored = central.record(report.results[1].record_id or 0)
    assert stored.patient_pseudonym == "PXYZ123"
    assert stored.values["diagnosis_date"] == dt.date(2020, 1, 10)  # shifted at the site
    with pytest.raises(PermissionDenied, match="only the site node"):
        central.unseal(stored.id)
    assert central.history(stored.id)[0].sealed is False
    # a central node keeps the plain SHA-256 (the record arrived pseudonymised)
    record = prostate(patient_id=None, issuer_of_patient_id=None, patient_pseudonym="PXYZ123")
    assert (
        central.history(stored.id)[0].raw_digest
        == hashlib.sha256(canonical_json(record)).hexdigest()
    )


# -- provenance ------------------------------------------------------------------------------


def test_unseal_returns_the_record_as_submitted(
    site: ClinicalService, catalog: Catalog, forms: FormRegistry, research: Profile
) -> None:
    original = prostate(psa=7.5)  # a JSON number, kept as submitted
    first = site.import_records("prostate", [original], submitter="alice", channel="api")
    record_id = first.results[0].record_id or 0
    site.import_records("prostate", [prostate(psa="9")], submitter="alice", channel="api")

    assert site.unseal(record_id, version=1) == original
    assert site.unseal(record_id) == prostate(psa="9")
    with pytest.raises(NotFound):
        site.unseal(record_id, version=5)
    # the sealed bytes do not contain the identifier
    _pseudonym, sealed = ClinicalRecords(catalog).sealed(record_id, 1)
    assert sealed is not None and PATIENT_ID.encode() not in sealed
    other = site_service(catalog, forms, SiteKey(OTHER_KEY_BYTES), research)
    with pytest.raises(PermissionDenied, match="another site key"):
        other.unseal(record_id)


def test_no_phi_in_the_logs_or_the_database(
    site: ClinicalService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    site.import_records(
        "prostate",
        [prostate(), prostate(patient_id="MRN-0043", psa="-1")],
        submitter="alice",
        channel="cli",
    )
    site.import_records("prostate", [prostate(psa="8")], submitter="alice", channel="cli")

    text = caplog.text
    assert "clinical import" in text
    for phi in (PATIENT_ID, "MRN-0043", ISSUER, "2020-01-10", "1955-04-02", "2020-03-01", "-1"):
        assert phi not in text, phi
    dump = "\n".join(
        str(row)
        for table in (CLINICAL_RECORD, CLINICAL_RECORD_VERSION, CLINICAL_IMPORT)
        for row in scalar_rows_all(site, select(table))
    )
    for phi in (PATIENT_ID, "MRN-0043", ISSUER, "2020-01-10", "1955-04-02"):
        assert phi not in dump, phi


def scalar_rows_all(service: ClinicalService, stmt: Any) -> list[Any]:
    engine = create_engine(service.catalog.url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(stmt).all())
    finally:
        engine.dispose()


# -- storage failures ------------------------------------------------------------------------


def test_storage_failure_mid_batch_stores_whole_records_and_says_which(
    catalog: Catalog,
    forms: FormRegistry,
    site_key: SiteKey,
    research: Profile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_insert_rows = repository.insert_record_rows

    def failing(conn: Any, pending: Any) -> None:
        # fail after the batch's rows were written: the transaction must undo them all
        real_insert_rows(conn, pending)
        ids = [item.record_id for item in pending]
        pseudonyms = conn.execute(
            select(CLINICAL_RECORD.c.patient_pseudonym).where(CLINICAL_RECORD.c.id.in_(ids))
        ).scalars()
        if poisoned in set(pseudonyms):
            raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    service = site_service(catalog, forms, site_key, research, batch_size=2)
    poisoned = Pseudonymizer(site_key).patient_pseudonym(ISSUER, "P-3")
    monkeypatch.setattr(repository, "insert_record_rows", failing)

    report = service.import_records(
        "prostate",
        [prostate(patient_id=f"P-{n}") for n in range(1, 6)],
        submitter="alice",
        channel="cli",
    )

    assert [r.outcome for r in report.results] == [
        "created",
        "created",
        FAILED,
        "created",
        "created",
    ]
    assert report.failed == 1 and not report.ok
    assert report.results[2].patient_pseudonym == poisoned
    assert count(catalog, CLINICAL_RECORD) == 4
    assert count(catalog, CLINICAL_RECORD, CLINICAL_RECORD.c.patient_pseudonym == poisoned) == 0
    assert count(catalog, PERSON, PERSON.c.person_source_value == poisoned) == 0
    # every OMOP row left belongs to a stored record: nothing of the failed one remains
    records = ClinicalRecords(catalog)
    listed = [records.rows(r.record_id or 0) for r in report.results if r.stored]
    assert count(catalog, MEASUREMENT) == sum(len(rows.get("measurement", [])) for rows in listed)
    assert count(catalog, CLINICAL_RECORD_ROW) == sum(
        len(i) for rows in listed for i in rows.values()
    )
    (issue,) = report.issues
    assert (issue.record, issue.rule) == (2, "storage")
    assert "could not be stored" in issue.message and "again" in issue.hint
    (summary,) = ClinicalRecords(catalog).imports()
    assert summary.counts["created"] == 4 and summary.counts["rejected"] == 1
    assert {"record": 2, "field": None, "rule": "storage", "severity": "error"} in summary.problems


def test_malformed_omop_rows_fail_the_record_not_the_import(
    site: ClinicalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_map = service_module.map_record

    def broken(form: Any, values: Any, **kwargs: Any) -> Any:
        rows = real_map(form, values, **kwargs)
        if values["psa"] == 33.3:
            rows.rows[OmopTable.MEASUREMENT][0]["no_such_column"] = 1
        return rows

    monkeypatch.setattr(service_module, "map_record", broken)
    report = site.import_records(
        "prostate",
        [prostate(patient_id="P-1"), prostate(patient_id="P-2", psa="33.3")],
        submitter="alice",
        channel="cli",
    )

    assert [r.outcome for r in report.results] == ["created", FAILED]
    (issue,) = report.issues
    assert issue.rule == "storage" and "no_such_column" in issue.message
    assert "operator" in issue.hint
    assert count(site.catalog, CLINICAL_RECORD) == 1


def test_import_cannot_start_without_a_database(
    tmp_path: Path, forms: FormRegistry, site_key: SiteKey, research: Profile
) -> None:
    catalog = Catalog(sqlite_url(tmp_path / "never-migrated.sqlite"))
    try:
        with pytest.raises(StorageError):
            site_service(catalog, forms, site_key, research).import_records(
                "prostate", [prostate()], submitter="alice", channel="cli"
            )
    finally:
        catalog.close()


def test_warnings_are_stored_without_values(
    catalog: Catalog, tmp_path: Path, site_key: SiteKey, research: Profile
) -> None:
    form = (
        VISIT_FORM
        + """
  - name: late-visit
    left: visit_number
    op: "<="
    right: "10"
    severity: warning
"""
    )
    (tmp_path / "visit.yaml").write_text(form, encoding="utf-8")
    service = site_service(
        catalog, FormRegistry([tmp_path / "visit.yaml"], builtin=False), site_key, research
    )
    report = service.import_records(
        "visit",
        [{"patient_id": PATIENT_ID, "visit_number": "12", "visit_date": "2020-01-01"}],
        submitter="alice",
        channel="cli",
    )

    assert report.results[0].outcome == "created"
    (warning,) = report.issues
    assert (warning.rule, warning.severity.value, warning.value) == ("late-visit", "warning", "12")
    stored = service.record(report.results[0].record_id or 0)
    assert stored.warnings == [
        {"field": "visit_number", "rule": "late-visit", "severity": "warning"}
    ]
    (summary,) = ClinicalRecords(catalog).imports()
    assert summary.problems == [
        {"record": 0, "field": "visit_number", "rule": "late-visit", "severity": "warning"}
    ]


# -- data queries ----------------------------------------------------------------------------


def test_a_correction_answers_the_queries_on_what_changed(site: ClinicalService) -> None:
    first = site.import_records("prostate", [prostate()], submitter="alice", channel="api")
    record_id = first.results[0].record_id or 0
    queries = DataQueries(site.catalog)
    on_psa = queries.raise_query(record_id, "psa", "PSA looks high", "curator")
    on_ct = queries.raise_query(record_id, "ct", "cT?", "curator")
    on_record = queries.raise_query(record_id, None, "check the whole record", "curator")

    reformatted = site.import_records(
        "prostate", [prostate(psa="7.50")], submitter="alice", channel="cli"
    )
    assert reformatted.answered_queries == 0  # a new version, but no value changed
    assert {queries.get(q.id).state for q in (on_psa, on_ct, on_record)} == {QueryState.OPEN}

    corrected = site.import_records(
        "prostate", [prostate(psa="5.1")], submitter="alice", channel="api"
    )
    assert corrected.answered_queries == 2
    assert corrected.to_json()["answered_queries"] == 2
    assert queries.get(on_psa.id).state is QueryState.ANSWERED
    assert queries.get(on_record.id).state is QueryState.ANSWERED
    assert queries.get(on_ct.id).state is QueryState.OPEN
    history = queries.get(on_psa.id).history
    assert [step.action for step in history][-1] == "correct"

"""The DICOM query engine (QIDO-RS and C-FIND), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from biobank.catalog import Catalog
from biobank.catalog.search import DicomQuery, QueryLevel
from biobank.errors import InvalidQuery
from tests.catalog.factories import day, execute, record, stored, uid

PATIENT_NAME, PATIENT_ID, STUDY_DATE, STUDY_UID = 0x00100010, 0x00100020, 0x00080020, 0x0020000D
MODALITIES, SERIES_UID, SOP_UID, INSTANCE_NUMBER = 0x00080061, 0x0020000E, 0x00080018, 0x00200013


def _load(catalog: Catalog) -> None:
    """Three patients: two CT+MR studies, a Japanese name, a study without date."""
    items = []
    plans: list[tuple[str, str, int, datetime.date | None, list[tuple[int, str, int]]]] = [
        ("PSN-A", "Smith^Anna", 1, day(10), [(1, "CT", 3), (2, "MR", 2)]),
        ("PSN-A", "Smith^Anna", 2, day(40), [(1, "MR", 1)]),
        ("PSN-B", "Yamada^Tarou=山田^太郎=やまだ^たろう", 3, day(20), [(1, "CT", 2)]),
        ("PSN-C", "Müller^Jörg", 4, None, [(1, "US", 1)]),
    ]
    for patient, name, study, date, series_plan in plans:
        for series, modality, count in series_plan:
            for n in range(count, 0, -1):  # stored out of order on purpose
                instance = record(
                    uid(study, series, n),
                    series=uid(study, series),
                    study=uid(study),
                    patient=patient,
                    patient_name=name,
                    study_date=date,
                    modality=modality,
                    series_number=series,
                    instance_number=n,
                    rows=64,
                    columns=64,
                    bits_allocated=16,
                    study_description=f"study {study}",
                )
                items.append(stored(instance))
    batch = catalog.start_batch(role="site", sources=["x"], profile=None, key_id=None)
    catalog.record_items(batch, items)


def _values(matches: list[dict[str, Any]], tag: int) -> list[Any]:
    return [m.get(f"{tag:08X}", {}).get("Value", [None])[0] for m in matches]


def _search(catalog: Catalog, level: QueryLevel, **kwargs: Any) -> list[dict[str, Any]]:
    return catalog.search(DicomQuery(level=level, **kwargs)).matches


class TestSearch:
    def test_studies_by_patient_id_exact_and_wildcard(self, catalog: Catalog) -> None:
        _load(catalog)
        studies = _search(catalog, QueryLevel.STUDY, match={PATIENT_ID: "PSN-A"})
        assert _values(studies, STUDY_UID) == [uid(1), uid(2)]
        assert _values(studies, 0x00201206) == [2, 1]  # series per study
        assert _values(studies, 0x00201208) == [5, 1]
        assert studies[0]["00080061"]["Value"] == ["CT", "MR"]
        assert studies[0]["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Smith^Anna"}]}
        wildcard = _search(catalog, QueryLevel.STUDY, match={PATIENT_ID: "PSN-?"})
        assert len(wildcard) == 4
        assert _search(catalog, QueryLevel.STUDY, match={PATIENT_ID: "psn-a"}) == []

    def test_person_names_wildcard_fuzzy_non_ascii_and_groups(self, catalog: Catalog) -> None:
        _load(catalog)
        assert len(_search(catalog, QueryLevel.STUDY, match={PATIENT_NAME: "Smi*"})) == 2
        assert _search(catalog, QueryLevel.STUDY, match={PATIENT_NAME: "smi*"}) == []
        fuzzy = _search(catalog, QueryLevel.STUDY, match={PATIENT_NAME: "smi"}, fuzzy=True)
        assert len(fuzzy) == 2
        umlaut = _search(catalog, QueryLevel.STUDY, match={PATIENT_NAME: "Müller*"})
        assert _values(umlaut, STUDY_UID) == [uid(4)]
        for query in ("Yamada^Tarou", "山田^太郎", "山田*"):
            found = _search(catalog, QueryLevel.STUDY, match={PATIENT_NAME: query})
            assert _values(found, STUDY_UID) == [uid(3)], query
        name = found[0]["00100010"]["Value"][0]
        assert name == {
            "Alphabetic": "Yamada^Tarou",
            "Ideographic": "山田^太郎",
            "Phonetic": "やまだ^たろう",
        }

    def test_dates_ranges_and_bad_dates(self, catalog: Catalog) -> None:
        _load(catalog)
        d = [day(n).strftime("%Y%m%d") for n in (10, 20, 40)]
        assert len(_search(catalog, QueryLevel.STUDY, match={STUDY_DATE: d[0]})) == 1
        ranged = _search(catalog, QueryLevel.STUDY, match={STUDY_DATE: f"{d[0]}-{d[1]}"})
        assert _values(ranged, STUDY_UID) == [uid(1), uid(3)]
        assert len(_search(catalog, QueryLevel.STUDY, match={STUDY_DATE: f"{d[1]}-"})) == 2
        assert len(_search(catalog, QueryLevel.STUDY, match={STUDY_DATE: f"-{d[0]}"})) == 1
        with pytest.raises(InvalidQuery, match="00080020.*not a date"):
            _search(catalog, QueryLevel.STUDY, match={STUDY_DATE: "yesterday"})
        with pytest.raises(InvalidQuery, match="valid calendar date"):
            _search(catalog, QueryLevel.STUDY, match={STUDY_DATE: "20230231"})

    def test_modalities_in_study_and_uid_lists(self, catalog: Catalog) -> None:
        _load(catalog)
        mr = _search(catalog, QueryLevel.STUDY, match={MODALITIES: "MR"})
        assert _values(mr, STUDY_UID) == [uid(1), uid(2)]
        either = _search(catalog, QueryLevel.STUDY, match={MODALITIES: "US\\MR"})
        assert _values(either, STUDY_UID) == [uid(1), uid(2), uid(4)]
        listed = _search(catalog, QueryLevel.STUDY, match={STUDY_UID: f"{uid(3)},{uid(4)}"})
        assert _values(listed, STUDY_UID) == [uid(3), uid(4)]

    def test_series_of_a_study_and_instances_of_a_series(self, catalog: Catalog) -> None:
        _load(catalog)
        series = _search(catalog, QueryLevel.SERIES, study_instance_uid=uid(1))
        assert _values(series, SERIES_UID) == [uid(1, 1), uid(1, 2)]
        assert _values(series, 0x00201209) == [3, 2]
        assert _values(series, 0x00080060) == ["CT", "MR"]
        instances = _search(
            catalog, QueryLevel.INSTANCE, study_instance_uid=uid(1), series_instance_uid=uid(1, 1)
        )
        assert _values(instances, INSTANCE_NUMBER) == [1, 2, 3]
        assert _values(instances, SOP_UID) == [uid(1, 1, 1), uid(1, 1, 2), uid(1, 1, 3)]
        assert _values(instances, 0x00280100) == [16, 16, 16]
        # Study-level keys on a series query across all studies.
        across = _search(catalog, QueryLevel.SERIES, match={PATIENT_ID: "PSN-B"})
        assert _values(across, SERIES_UID) == [uid(3, 1)]
        one = _search(catalog, QueryLevel.INSTANCE, match={SOP_UID: uid(2, 1, 1)})
        assert _values(one, STUDY_UID) == [uid(2)]

    def test_paging_is_stable(self, catalog: Catalog) -> None:
        _load(catalog)
        whole = _values(_search(catalog, QueryLevel.STUDY), STUDY_UID)
        pages = [
            _values(_search(catalog, QueryLevel.STUDY, limit=2, offset=offset), STUDY_UID)
            for offset in (0, 2, 4)
        ]
        assert pages[0] + pages[1] == whole and pages[2] == []
        with pytest.raises(InvalidQuery, match="limit"):
            _search(catalog, QueryLevel.STUDY, limit=-1)

    def test_includefield_reads_the_header_only_when_needed(self, catalog: Catalog) -> None:
        _load(catalog)
        sop = uid(1, 1, 1)
        header = {
            "00080018": {"vr": "UI", "Value": [sop]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Smith^Anna"}]},
            "00101010": {"vr": "AS", "Value": ["042Y"]},
            "00180050": {"vr": "DS", "Value": [1.25]},
            "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/7FE00010"},
        }
        execute(
            catalog,
            "UPDATE instance SET header = :h WHERE sop_instance_uid = :u",
            h=json.dumps(header),
            u=sop,
        )
        asked = _search(
            catalog, QueryLevel.STUDY, match={STUDY_UID: uid(1)}, include=frozenset({0x00101010})
        )
        assert asked[0]["00101010"] == {"vr": "AS", "Value": ["042Y"]}
        everything = _search(catalog, QueryLevel.STUDY, match={STUDY_UID: uid(1)}, include_all=True)
        assert "00101010" in everything[0]  # a study-level attribute
        assert "00180050" not in everything[0]  # slice thickness is not
        missing = _search(
            catalog, QueryLevel.STUDY, match={STUDY_UID: uid(2)}, include=frozenset({0x00101010})
        )
        assert missing[0]["00101010"] == {"vr": "AS"}  # asked for, absent: empty
        whole = _search(catalog, QueryLevel.INSTANCE, match={SOP_UID: sop}, include_all=True)
        assert whole[0]["00180050"] == {"vr": "DS", "Value": [1.25]}
        assert "7FE00010" not in whole[0]

    def test_unsupported_keys_are_reported_and_ignored(self, catalog: Catalog) -> None:
        _load(catalog)
        result = catalog.search(
            DicomQuery(level=QueryLevel.STUDY, match={0x00104000: "comment*", 0x00081030: ""})
        )
        assert result.unsupported == [0x00104000]
        assert len(result.matches) == 4
        # An instance-level key on a study query cannot be matched either.
        result = catalog.search(DicomQuery(level=QueryLevel.STUDY, match={SOP_UID: uid(1, 1, 1)}))
        assert result.unsupported == [SOP_UID]

    def test_an_owner_sees_only_their_studies(self, catalog: Catalog) -> None:
        _load(catalog)
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        execute(
            catalog,
            "INSERT INTO app_user (username, role, active, created_at) "
            "VALUES ('up', 'uploader', true, :now)",
            now=now,
        )
        (user_id,) = execute(catalog, "SELECT id FROM app_user WHERE username = 'up'")[0]
        execute(
            catalog,
            "INSERT INTO study_owner (study_id, user_id, created_at) "
            "SELECT id, :user, :now FROM study WHERE study_instance_uid = :uid",
            user=user_id,
            now=now,
            uid=uid(3),
        )
        mine = _search(catalog, QueryLevel.STUDY, owner_user_id=user_id)
        assert _values(mine, STUDY_UID) == [uid(3)]
        assert (
            _search(catalog, QueryLevel.SERIES, owner_user_id=user_id, study_instance_uid=uid(1))
            == []
        )
        patients = _search(catalog, QueryLevel.PATIENT, owner_user_id=user_id)
        assert _values(patients, PATIENT_ID) == ["PSN-B"]

    def test_patient_level(self, catalog: Catalog) -> None:
        _load(catalog)
        patients = _search(catalog, QueryLevel.PATIENT, match={PATIENT_NAME: "*"})
        assert _values(patients, PATIENT_ID) == ["PSN-A", "PSN-B", "PSN-C"]
        assert _values(patients, 0x00201200) == [2, 1, 1]
        # A study key cannot be matched at patient level (PS3.4 C.4.1.1.3): reported.
        result = catalog.search(DicomQuery(level=QueryLevel.PATIENT, match={MODALITIES: "US"}))
        assert result.unsupported == [MODALITIES] and len(result.matches) == 3


class TestSeriesExtras:
    def test_performed_procedure_step_attributes_come_from_the_series_row(
        self, catalog: Catalog
    ) -> None:
        extra = '{"00400244":{"vr":"DA","Value":["20200101"]},"00400245":{"vr":"TM"}}'
        instance = record(uid(9, 1, 1), series=uid(9, 1), study=uid(9), extra_attributes=extra)
        batch = catalog.start_batch(role="site", sources=["x"], profile=None, key_id=None)
        catalog.record_items(batch, [stored(instance)])
        execute(catalog, "UPDATE instance SET header = '{}'")  # not read for these
        (series,) = _search(catalog, QueryLevel.SERIES, study_instance_uid=uid(9))
        assert series["00400244"] == {"vr": "DA", "Value": ["20200101"]}
        assert series["00400245"] == {"vr": "TM"}

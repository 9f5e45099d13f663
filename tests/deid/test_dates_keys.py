"""Date shifting, keyed transforms, key files and the pseudonym map."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from biobank.deid import PatientIdentity, Pseudonymizer, SiteKey
from biobank.deid.dates import UnparseableDate, shift_value
from biobank.errors import Conflict, InvalidKey, NotFound
from biobank.store.keyring import PseudonymMap, create_key_file, pseudonym_map_path, read_key_file
from tests.conftest import KEY_BYTES, OTHER_KEY_BYTES


@pytest.mark.parametrize(
    ("vr", "value", "days", "expected"),
    [
        ("DA", "20240315", -10, "20240305"),
        ("DA", "20240301", -1, "20240229"),  # leap year
        ("DA", "2024", -400, "2022"),  # year precision kept
        ("DA", "202403", -31, "202401"),  # month precision kept (from the 1st)
        ("DA", "2024.03.15", -1, "20240314"),  # legacy ACR-NEMA form
        ("DA", "20240101-20240131", -1, "20231231-20240130"),
        ("DT", "20240315101612.250000+0100", -1, "20240314101612.250000+0100"),
        ("DT", "20240315101612-0500", -1, "20240314101612-0500"),
        ("DT", "2024031510", -15, "2024022910"),
        ("DT", "202403", -31, "202401"),
        ("TM", "101530.123", -5, "101530.123"),
        ("TM", "1015", -5, "1015"),
        ("TM", "10:15:30", -5, "101530"),
    ],
)
def test_shift_value_keeps_precision(vr: str, value: str, days: int, expected: str) -> None:
    assert shift_value(vr, value, days) == expected


@pytest.mark.parametrize(
    ("vr", "value"),
    [
        ("DA", "15/03/2024"),
        ("DA", "20241332"),
        ("DA", "unknown"),
        ("DT", "20240315256000"),
        ("DT", "20240315101612+2500"),
        ("TM", "251000"),
        ("TM", "noon"),
    ],
)
def test_unparseable_dates_raise(vr: str, value: str) -> None:
    with pytest.raises(UnparseableDate):
        shift_value(vr, value, -3)


class TestPseudonymizer:
    def test_deterministic_and_keyed(self) -> None:
        a, b = Pseudonymizer(SiteKey(KEY_BYTES)), Pseudonymizer(SiteKey(KEY_BYTES))
        other = Pseudonymizer(SiteKey(OTHER_KEY_BYTES))
        assert a.patient_pseudonym("HOSP", "123") == b.patient_pseudonym("HOSP", "123")
        assert a.patient_pseudonym("HOSP", "123") != other.patient_pseudonym("HOSP", "123")
        assert a.uid("1.2.3.4") == b.uid("1.2.3.4") != other.uid("1.2.3.4")

    def test_issuer_separates_patients(self) -> None:
        p = Pseudonymizer(SiteKey(KEY_BYTES))
        assert p.patient_pseudonym("SITE-A", "12345") != p.patient_pseudonym("SITE-B", "12345")
        # No ambiguity between ("A1", "23") and ("A", "123").
        assert p.patient_pseudonym("A1", "23") != p.patient_pseudonym("A", "123")

    def test_uid_form(self) -> None:
        p = Pseudonymizer(SiteKey(KEY_BYTES))
        uids = {p.uid(f"1.2.826.0.1.{i}") for i in range(2000)}
        assert len(uids) == 2000
        for uid in uids:
            assert uid.startswith("2.25.") and len(uid) <= 64
            assert not uid[5:].startswith("0") or uid == "2.25.0"

    def test_date_offset_range(self) -> None:
        p = Pseudonymizer(SiteKey(KEY_BYTES))
        offsets = {p.date_offset_days("", str(i), 3650) for i in range(500)}
        assert all(-3650 <= d <= -1 for d in offsets)
        assert len(offsets) > 400  # spread, not constant


class TestKeyFiles:
    def test_keygen_creates_private_file(self, tmp_path: Path) -> None:
        path = tmp_path / "keys" / "site.key"
        key = create_key_file(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert read_key_file(path).secret == key.secret

    def test_refuses_to_overwrite(self, tmp_path: Path) -> None:
        path = tmp_path / "site.key"
        create_key_file(path)
        with pytest.raises(InvalidKey, match="already exists"):
            create_key_file(path)

    def test_refuses_readable_key(self, tmp_path: Path) -> None:
        path = tmp_path / "site.key"
        create_key_file(path)
        os.chmod(path, 0o644)
        with pytest.raises(InvalidKey, match="chmod 600"):
            read_key_file(path)

    @pytest.mark.parametrize(
        "text",
        ["", "hello\n", "biobank-site-key v1\n!!!notbase64\n", "biobank-site-key v1\nAAAA\n"],
    )
    def test_malformed_key(self, tmp_path: Path, text: str) -> None:
        path = tmp_path / "bad.key"
        path.write_text(text)
        os.chmod(path, 0o600)
        with pytest.raises(InvalidKey):
            read_key_file(path)


class TestPseudonymMap:
    def test_round_trip_and_encryption_at_rest(self, tmp_path: Path) -> None:
        key = SiteKey(KEY_BYTES)
        pseudo = Pseudonymizer(key)
        path = pseudonym_map_path(tmp_path / "site.key")
        name = pseudo.patient_pseudonym("ISSUER-X", "MRN-998877")
        with PseudonymMap(path, key) as pmap:
            assert pmap.record([PatientIdentity("ISSUER-X", "MRN-998877", name)]) == 1
            assert pmap.record([PatientIdentity("ISSUER-X", "MRN-998877", name)]) == 0
            entry = pmap.lookup(name)
        assert (entry.issuer, entry.patient_id) == ("ISSUER-X", "MRN-998877")
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
        assert b"MRN-998877" not in raw and b"ISSUER-X" not in raw
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_other_key_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "map.sqlite"
        PseudonymMap(path, SiteKey(KEY_BYTES)).close()
        with pytest.raises(InvalidKey, match="another key"):
            PseudonymMap(path, SiteKey(OTHER_KEY_BYTES))

    def test_collision_is_a_conflict(self, tmp_path: Path) -> None:
        key = SiteKey(KEY_BYTES)
        with PseudonymMap(tmp_path / "map.sqlite", key) as pmap:
            pmap.record([PatientIdentity("A", "1", "PSAME")])
            with pytest.raises(Conflict):
                pmap.record([PatientIdentity("B", "2", "PSAME")])

    def test_unknown_pseudonym(self, tmp_path: Path) -> None:
        with (
            PseudonymMap(tmp_path / "map.sqlite", SiteKey(KEY_BYTES)) as pmap,
            pytest.raises(NotFound),
        ):
            pmap.lookup("PNOTHERE")

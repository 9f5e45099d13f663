"""Reading clinical records from CSV and JSON files."""

from __future__ import annotations

from pathlib import Path

import pytest

from biobank.clinical.sources import read_records
from biobank.errors import InvalidInput


def _write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def test_csv_with_commas(tmp_path: Path) -> None:
    path = _write(tmp_path, "r.csv", "patient_id,psa,histology\nA1,7.5,acinar\nA2,,ductal\n")
    assert read_records(path) == [
        {"patient_id": "A1", "psa": "7.5", "histology": "acinar"},
        {"patient_id": "A2", "histology": "ductal"},
    ]


def test_csv_with_semicolons_bom_and_crlf(tmp_path: Path) -> None:
    text = '\ufeffpatient_id;psa;note\r\nA1;7,5;"a;b"\r\n'
    path = _write(tmp_path, "r.CSV", text)
    assert read_records(path) == [{"patient_id": "A1", "psa": "7,5", "note": "a;b"}]


def test_csv_empty_and_blank_cells_are_missing_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path, "r.csv", "patient_id,psa,grade\nA1,  ,\n\n,,\nA2,3,1\n")
    assert read_records(path) == [
        {"patient_id": "A1"},
        {"patient_id": "A2", "psa": "3", "grade": "1"},
    ]


def test_csv_quoted_newline_keeps_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path, "r.csv", 'patient_id,note\nA1,"two\nlines"\nA2,x,extra\n')
    with pytest.raises(InvalidInput, match=r"r\.csv, line 4: 3 cells for 2 columns"):
        read_records(path)


def test_csv_header_only_gives_no_records(tmp_path: Path) -> None:
    assert read_records(_write(tmp_path, "r.csv", "patient_id,psa\n")) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: no header row"),
        ("patient_id,,psa\nA,1,2\n", r"line 1: column\(s\) 2 have no name"),
        ("patient_id,psa,psa\nA,1,2\n", "line 1: column 'psa' appears twice"),
        ("a,b;c\n1,2;3\n", "as many ',' as ';'"),
    ],
)
def test_csv_header_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        read_records(_write(tmp_path, "bad.csv", text))


def test_csv_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "latin.csv", b"patient_id,name\nA1,ok\nA2,Ren\xe9e\n")
    with pytest.raises(InvalidInput, match=r"latin\.csv, line 3: not UTF-8") as info:
        read_records(path)
    assert "Ren" not in str(info.value)


def test_json_object_list_and_records(tmp_path: Path) -> None:
    one = _write(tmp_path, "one.json", '{"patient_id": "A1", "psa": 7.5}')
    many = _write(tmp_path, "many.json", '[{"patient_id": "A1"}, {"patient_id": "A2", "x": null}]')
    wrapped = _write(tmp_path, "wrapped.json", '{"records": [{"patient_id": "A1", "ok": true}]}')
    bom = _write(tmp_path, "bom.json", '\ufeff[{"patient_id": "A1"}]')

    assert read_records(one) == [{"patient_id": "A1", "psa": 7.5}]
    assert read_records(many) == [{"patient_id": "A1"}, {"patient_id": "A2", "x": None}]
    assert read_records(wrapped) == [{"patient_id": "A1", "ok": True}]
    assert read_records(bom) == [{"patient_id": "A1"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"a": 1},\n {"b": }]', r"line 2, column \d+: not valid JSON"),
        ("42", "must be a record"),
        ('{"records": 3}', "'records' must be a record"),
        ('[{"a": 1}, "PATIENT-SECRET"]', "record 1 of the document is a str"),
    ],
)
def test_json_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        read_records(_write(tmp_path, "bad.json", text))
    assert "bad.json" in str(info.value)
    assert "SECRET" not in str(info.value)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"unknown file type \.xlsx"):
        read_records(_write(tmp_path, "r.xlsx", "x"))
    with pytest.raises(InvalidInput, match="cannot be read"):
        read_records(tmp_path / "absent.csv")

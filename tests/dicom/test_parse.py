"""The fast reader yields what pydicom's reader yields, element for element."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement

from biobank.dicom.parse import parse_file


def _all_test_files() -> list[Path]:
    roots = [Path(str(resources.files("pydicom").joinpath("data")))]
    roots.append(Path(str(resources.files("deid_data"))))
    return sorted(p for root in roots for p in root.rglob("*.dcm"))


def _compare(ours: object, theirs: object) -> None:
    assert type(ours) is type(theirs)
    assert list(ours.keys()) == list(theirs.keys())  # type: ignore[attr-defined]
    for tag in list(theirs.keys()):  # type: ignore[attr-defined]
        a = ours._dict[tag]  # type: ignore[attr-defined]
        b = theirs._dict[tag]  # type: ignore[attr-defined]
        if type(a) is not type(b) and b.VR != "SQ":
            # pydicom decodes Pixel Representation when it decodes a sequence.
            assert ours[tag].value == theirs[tag].value, tag  # type: ignore[index]
            continue
        if type(a) is not type(b):
            # An undefined-length sequence: ours is left undecoded, pydicom's decoded.
            assert b.is_undefined_length and a.length == 0xFFFFFFFF, tag
            decoded = ours[tag]  # type: ignore[index]
            assert [list(i.keys()) for i in decoded.value] == [list(i.keys()) for i in b.value]
            continue
        if isinstance(b, RawDataElement):
            assert (a.tag, a.VR, a.length, a.value, a.value_tell) == (
                b.tag, b.VR, b.length, b.value, b.value_tell,
            ), tag  # fmt: skip
        elif b.VR != "SQ":
            assert a.value == b.value, tag
        else:
            assert a.VR == b.VR and a.is_undefined_length == b.is_undefined_length
            assert len(a.value) == len(b.value)
            for item_a, item_b in zip(a.value, b.value, strict=True):
                assert list(item_a.keys()) == list(item_b.keys())


@pytest.mark.parametrize("path", _all_test_files(), ids=lambda p: p.name)
def test_fast_reader_matches_pydicom(path: Path) -> None:
    data = path.read_bytes()
    ours = parse_file(data)
    try:
        theirs = dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001 - a file pydicom cannot read: ours must decline too
        assert ours is None
        return
    if ours is None:
        return  # declined: pydicom's reader is used for this file
    _compare(ours, theirs)
    # pydicom decodes the file meta as it reads it; compare the values.
    assert {t: ours.file_meta[t].value for t in list(ours.file_meta.keys())} == {
        t: theirs.file_meta[t].value for t in list(theirs.file_meta.keys())
    }
    assert ours.original_encoding == theirs.original_encoding
    assert ours.original_character_set == theirs.original_character_set
    assert ours.preamble == theirs.preamble


def test_fast_reader_handles_most_files() -> None:
    parsed = sum(parse_file(p.read_bytes()) is not None for p in _all_test_files())
    assert parsed >= 80  # the rest are implicit VR, big endian, deflated or odd files


@pytest.mark.parametrize("cut", [10, 131, 140, 300, -7])
def test_truncated_files_are_declined(cut: int) -> None:
    data = (
        Path(str(resources.files("pydicom").joinpath("data"))) / "test_files" / "CT_small.dcm"
    ).read_bytes()
    assert parse_file(data[:cut]) is None

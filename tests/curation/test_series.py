"""Reading a series into a volume: grouping, slice order, rescale, multi-frame, problems."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from biobank.catalog import Catalog
from biobank.curation.series import load_series_files, load_series_from_node
from biobank.dicom.synthetic import make_ct_series, make_mr_series, make_patient_phi
from biobank.errors import InvalidInput, NotFound

PHI = make_patient_phi(5, seed=21)


def _write(folder: Path, datasets: list[Dataset], prefix: str = "IMG") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, ds in enumerate(datasets):
        path = folder / f"{prefix}{n:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_shuffled_files_come_back_sorted_by_position(tmp_path: Path) -> None:
    series = make_mr_series(PHI, 8, rows=32, cols=32)
    expected = np.stack([ds.pixel_array for ds in series]).astype(np.float32)
    paths = _write(tmp_path, series)
    random.Random(3).shuffle(paths)
    (volume,) = load_series_files(paths)
    assert volume.shape == (8, 32, 32)
    assert volume.voxels.dtype == np.float32
    z = [float(ds.ImagePositionPatient[2]) for ds in series]
    order = np.argsort(z)
    np.testing.assert_array_equal(volume.voxels, expected[order])
    assert volume.spacing[0] == pytest.approx(3.0)
    assert volume.spacing[1:] == pytest.approx((230.0 / 32, 230.0 / 32))
    assert volume.modality == "MR"
    assert volume.series_instance_uid == series[0].SeriesInstanceUID
    assert volume.study_instance_uid == series[0].StudyInstanceUID
    assert "PixelData" not in volume.headers
    assert volume.problems == ()


def test_rescale_gives_hounsfield_units(tmp_path: Path) -> None:
    (volume,) = load_series_files(_write(tmp_path, make_ct_series(PHI, 4, rows=32, cols=32)))
    assert volume.modality == "CT"
    corner = volume.voxels[:, :3, :3]
    assert abs(float(np.median(corner)) + 1000.0) < 30.0
    assert volume.spacing[0] == pytest.approx(2.5)


def test_series_are_grouped_and_other_files_skipped(tmp_path: Path) -> None:
    paths = _write(tmp_path, make_ct_series(PHI, 3, rows=16, cols=16), "CT")
    paths += _write(tmp_path, make_mr_series(PHI, 2, rows=16, cols=16), "MR")
    notes = tmp_path / "README.txt"
    notes.write_text("exported from PACS")
    volumes = load_series_files([notes, *paths])
    assert sorted((v.modality, v.shape[0]) for v in volumes) == [("CT", 3), ("MR", 2)]
    with pytest.raises(InvalidInput, match="no decodable DICOM image"):
        load_series_files([notes])


def test_multi_frame_with_per_frame_positions(tmp_path: Path) -> None:
    series = make_mr_series(PHI, 4, rows=16, cols=16)
    ds = series[0]
    frames = [s.pixel_array for s in series]
    ds.NumberOfFrames = 4
    ds.PixelData = b"".join(f.tobytes() for f in reversed(frames))
    per_frame = []
    for s in reversed(series):
        position = Dataset()
        position.ImagePositionPatient = s.ImagePositionPatient
        item = Dataset()
        item.PlanePositionSequence = Sequence([position])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    (volume,) = load_series_files(_write(tmp_path, [ds]))
    assert volume.shape == (4, 16, 16)
    np.testing.assert_array_equal(volume.voxels, np.stack(frames).astype(np.float32))
    assert volume.spacing[0] == pytest.approx(3.0)


def test_missing_positions_fall_back_to_instance_number(tmp_path: Path) -> None:
    series = make_mr_series(PHI, 4, rows=16, cols=16)
    expected = np.stack([ds.pixel_array for ds in series]).astype(np.float32)
    for n, ds in enumerate(series):
        del ds.ImagePositionPatient
        ds.InstanceNumber = n + 1
    paths = _write(tmp_path, series)
    (volume,) = load_series_files(list(reversed(paths)))
    np.testing.assert_array_equal(volume.voxels, expected)
    assert any("Instance Number" in p for p in volume.problems)


def test_mixed_sizes_and_undecodable_images_are_problems(tmp_path: Path) -> None:
    series = make_mr_series(PHI, 4, rows=16, cols=16)
    other = make_mr_series(PHI, 1, rows=24, cols=24)[0]
    other.SeriesInstanceUID = series[0].SeriesInstanceUID
    broken = make_mr_series(PHI, 1, rows=16, cols=16)[0]
    broken.SeriesInstanceUID = series[0].SeriesInstanceUID
    broken.PixelData = b"\x00" * 10  # truncated pixel data
    paths = _write(tmp_path, [*series, other, broken])
    (volume,) = load_series_files(paths)
    assert volume.shape == (4, 16, 16)
    text = " ".join(volume.problems)
    assert "mixed image sizes" in text and "could not be decoded" in text
    for value in (str(PHI.patient_name), PHI.patient_id, str(tmp_path)):
        assert value not in text


def test_uneven_spacing_is_a_problem(tmp_path: Path) -> None:
    series = make_mr_series(PHI, 5, rows=16, cols=16)
    position = list(series[-1].ImagePositionPatient)
    position[2] = float(position[2]) + 10.0
    series[-1].ImagePositionPatient = position
    (volume,) = load_series_files(_write(tmp_path, series))
    assert any("uneven slice spacing" in p for p in volume.problems)


def test_no_header_value_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="biobank")
    load_series_files(_write(tmp_path, make_mr_series(PHI, 3, rows=16, cols=16)))
    assert str(PHI.patient_name) not in caplog.text and PHI.patient_id not in caplog.text


class _Summary:
    def __init__(self, digest: str) -> None:
        self.blob_digest = digest


class _Catalog:
    def __init__(self, digests: list[str]) -> None:
        self.digests = digests
        self.asked: dict[str, object] = {}

    def find_instances(self, **kwargs: object) -> list[_Summary]:
        self.asked = kwargs
        return [_Summary(d) for d in self.digests]


class _Store:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def get(self, digest: str) -> bytes:
        return self.blobs[digest]


def test_load_series_from_node(tmp_path: Path) -> None:
    paths = _write(tmp_path, make_ct_series(PHI, 3, rows=16, cols=16))
    blobs = {f"d{n}": p.read_bytes() for n, p in enumerate(paths)}
    catalog = _Catalog(list(reversed(blobs)))
    uid = str(make_ct_series(PHI, 1, rows=16, cols=16)[0].SeriesInstanceUID)
    volume = load_series_from_node(cast(Catalog, catalog), _Store(blobs), uid)
    assert volume.shape == (3, 16, 16) and volume.series_instance_uid == uid
    assert catalog.asked["series_instance_uid"] == uid
    with pytest.raises(NotFound, match="biobank ls series"):
        load_series_from_node(cast(Catalog, _Catalog([])), _Store({}), uid)
    with pytest.raises(NotFound, match="biobank verify"):
        load_series_from_node(cast(Catalog, _Catalog(["gone"])), _Store({}), uid)

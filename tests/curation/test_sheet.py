"""Contact sheets: grid geometry, one tile per slice, digits only, windowing, MONOCHROME1."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset

from biobank.curation.series import SeriesVolume, load_series_files
from biobank.curation.sheet import SEPARATOR, contact_sheet, window_of
from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from biobank.errors import InvalidInput

PHI = make_patient_phi(4, seed=2)


def _volume(
    voxels: np.ndarray[Any, Any], photometric: str = "MONOCHROME2", headers: Dataset | None = None
) -> SeriesVolume:
    return SeriesVolume(
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        modality="MR",
        headers=headers if headers is not None else Dataset(),
        voxels=voxels.astype(np.float32),
        spacing=(3.0, 1.0, 1.0),
        photometric=photometric,
    )


def _ramp(slices: int, rows: int = 40, cols: int = 40) -> np.ndarray[Any, Any]:
    return np.tile(np.linspace(0.0, 1000.0, cols), (slices, rows, 1))


def _image(data: bytes) -> Image.Image:
    image = Image.open(BytesIO(data))
    assert image.format == "PNG" and image.mode == "L"
    return image


def test_grid_size_and_one_tile_per_slice() -> None:
    image = _image(contact_sheet(_volume(_ramp(10)), tile=32))
    assert image.size == (4 * 33 + 1, 3 * 33 + 1)  # ceil(sqrt(10)) = 4 columns, 3 rows
    pixels = np.asarray(image)
    used = []
    for cell in range(12):
        row, col = divmod(cell, 4)
        block = pixels[1 + row * 33 : (row + 1) * 33, 1 + col * 33 : (col + 1) * 33]
        used.append(not np.all(block == SEPARATOR))
    assert used == [True] * 10 + [False] * 2
    wide = _image(contact_sheet(_volume(_ramp(10)), tile=32, columns=10))
    assert wide.size == (10 * 33 + 1, 34)


def test_aspect_is_kept() -> None:
    headers = Dataset()
    headers.WindowCenter = "250"
    headers.WindowWidth = "100"
    wide = _volume(np.full((1, 20, 40), 500.0), headers=headers)
    cell = np.asarray(_image(contact_sheet(wide, tile=64)))[1:65, 1:65]
    assert int(np.count_nonzero(cell[:, 40] > 200)) == 32  # 20 rows of 40 columns: 32 × 64
    assert int(np.count_nonzero(cell[32] > 200)) == 64


def test_only_digits_are_drawn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    drawn: list[str] = []
    original = ImageDraw.ImageDraw.text

    def spy(self: ImageDraw.ImageDraw, xy: Any, text: Any, *args: Any, **kwargs: Any) -> None:
        drawn.append(str(text))
        original(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    for n, ds in enumerate(make_ct_series(PHI, 5, rows=32, cols=32)):
        ds.save_as(tmp_path / f"{n}.dcm", enforce_file_format=True)
    (volume,) = load_series_files(sorted(tmp_path.iterdir()))
    assert str(PHI.patient_name) == str(volume.headers.PatientName)  # PHI is there ...
    contact_sheet(volume, tile=32)
    assert drawn == ["0", "1", "2", "3", "4"]  # ... and never drawn


def test_header_window_else_percentiles() -> None:
    headers = Dataset()
    headers.WindowCenter = "40"
    headers.WindowWidth = "400"
    assert window_of(_volume(_ramp(2), headers=headers)) == (-160.0, 240.0)
    uniform = np.random.default_rng(0).uniform(0.0, 1000.0, (4, 32, 32))
    low, high = window_of(_volume(uniform))
    assert low == pytest.approx(10.0, abs=3.0) and high == pytest.approx(990.0, abs=3.0)
    multi = Dataset()
    multi.WindowCenter = ["100", "50"]
    multi.WindowWidth = ["200", "100"]
    assert window_of(_volume(_ramp(2), headers=multi)) == (0.0, 200.0)


def test_monochrome1_is_inverted() -> None:
    voxels = _ramp(1, 64, 64)
    normal = np.asarray(_image(contact_sheet(_volume(voxels), tile=64)))[20:60, 4:62]
    inverted = np.asarray(_image(contact_sheet(_volume(voxels, "MONOCHROME1"), tile=64)))[
        20:60, 4:62
    ]
    assert normal[:, :5].mean() < 30 and normal[:, -5:].mean() > 220
    np.testing.assert_allclose(inverted.astype(int), 255 - normal.astype(int), atol=1)


def test_bad_tile_size() -> None:
    with pytest.raises(InvalidInput, match="tile size"):
        contact_sheet(_volume(_ramp(1)), tile=4)

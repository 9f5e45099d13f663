"""Rendered frames and thumbnails (PS3.18 8.3.5, PS3.3 C.11.1 and C.11.2)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.pixels.processing import convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from biobank.dicom.render import (
    NotAcceptable,
    parse_viewport,
    parse_window,
    render_frame,
    render_thumbnail,
)
from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from biobank.errors import InvalidDicom, InvalidInput, NotFound
from tests.conftest import testdata, to_bytes

# Hounsfield units planted at row 0, columns 0.. of a CT slice, and their grey level in the
# CT's own window (center 40, width 400, LINEAR: PS3.3 C.11.2.1.2.1).
HU = [-1000, 40, 240, -160, 0, 239]
GREY_40_400 = [0, 128, 255, 0, 102, 255]


def ct(photometric: str = "MONOCHROME2") -> Dataset:
    ds = make_ct_series(make_patient_phi(0), n_slices=1, rows=64, cols=64)[0]
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 400.0)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    arr = ds.pixel_array.copy()
    arr[0, : len(HU)] = np.array(HU) + 1024
    ds.PixelData = arr.astype("<i2").tobytes()
    ds.PhotometricInterpretation = photometric
    return ds


def pixels(image: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image)))


def instance(arr: np.ndarray, photometric: str, bits_stored: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(arr, photometric, bits_stored)
    return ds


def marked_frames(count: int = 4) -> np.ndarray:
    """Frame k (1-based) is black but for one white pixel at (k, k)."""
    arr = np.zeros((count, 16, 16), np.uint8)
    for k in range(1, count + 1):
        arr[k - 1, k, k] = 200
    return arr


# -- greyscale -----------------------------------------------------------------------------


def test_ct_header_window_gives_expected_grey_levels() -> None:
    grey = pixels(render_frame(to_bytes(ct())))
    assert grey.dtype == np.uint8
    assert grey.shape == (64, 64)
    assert grey[0, : len(HU)].tolist() == GREY_40_400


def test_window_of_the_request_wins() -> None:
    data = to_bytes(ct())
    assert pixels(render_frame(data, window=(40, 400)))[0, : len(HU)].tolist() == GREY_40_400
    # center 0, width 2000: -1000 HU -> 0, 40 -> ((40.5 / 1999) + 0.5) * 255 = 132.67
    wide = pixels(render_frame(data, window=(0.0, 2000.0, "LINEAR")))[0, : len(HU)]
    assert wide.tolist() == [0, 133, 158, 107, 128, 158]
    exact = pixels(render_frame(data, window=(40, 400, "LINEAR_EXACT")))[0, : len(HU)]
    assert exact.tolist() == [0, 128, 255, 0, 102, 254]
    sigmoid = pixels(render_frame(data, window=parse_window("40,400,sigmoid")))[0, : len(HU)]
    assert sigmoid[1] == 128  # the center maps to the middle
    assert sigmoid.tolist() == [0, 128, 225, 30, 102, 224]  # 255 / (1 + exp(-4 (x - c) / w))


def test_monochrome1_is_inverted() -> None:
    grey = pixels(render_frame(to_bytes(ct("MONOCHROME1"))))
    assert grey[0, : len(HU)].tolist() == [255 - g for g in GREY_40_400]


def test_min_max_without_any_voi() -> None:
    ds = ct()
    del ds.WindowCenter, ds.WindowWidth
    hu = ds.pixel_array.astype(float) - 1024
    grey = pixels(render_frame(to_bytes(ds)))
    low, high = hu.min(), hu.max()
    assert grey[0, 0] == round((-1000 - low) / (high - low) * 255)
    assert grey.min() == 0 and grey.max() == 255


def test_voi_lut_sequence() -> None:
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ds = instance(arr, "MONOCHROME2", 8)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.LUTData = (255 - np.arange(256)).astype("<u2").tobytes()
    ds.VOILUTSequence = [item]
    grey = pixels(render_frame(to_bytes(ds)))
    np.testing.assert_array_equal(grey, 255 - arr)


def test_modality_lut_sequence() -> None:
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ds = instance(arr, "MONOCHROME2", 8)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.ModalityLUTType = "US"
    item.LUTData = (np.arange(256) ** 2).astype("<u2").tobytes()
    ds.ModalityLUTSequence = [item]
    grey = pixels(render_frame(to_bytes(ds)))
    assert grey[8, 0] == round(128 * 128 / (255 * 255) * 255)  # 64, not 128: the LUT applied
    assert (grey[0, 0], grey[15, 15]) == (0, 255)


def test_enhanced_multi_frame_per_frame_window_and_rescale() -> None:
    arr = np.full((2, 8, 8), 100, np.uint16)
    ds = instance(arr, "MONOCHROME2", 12)
    groups = []
    for center, intercept in ((100.5, 0), (50.5, -1000)):
        voi, rescale, group = Dataset(), Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 101
        rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = 1, intercept, "US"
        group.FrameVOILUTSequence = [voi]
        group.PixelValueTransformationSequence = [rescale]
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = groups
    data = to_bytes(ds)
    assert pixels(render_frame(data, 1))[0, 0] == 128  # 100 at the center of its window
    assert pixels(render_frame(data, 2))[0, 0] == 0  # -900 far below 50.5 - 50


def test_multi_frame_renders_the_requested_frame() -> None:
    data = to_bytes(instance(marked_frames(), "MONOCHROME2", 8))
    for frame in (1, 3, 4):
        grey = pixels(render_frame(data, frame))
        assert grey[frame, frame] == 255
        assert grey.sum() == 255


def test_compressed_multi_frame_renders_like_native() -> None:
    ds = instance(marked_frames(), "MONOCHROME2", 8)
    native = render_frame(to_bytes(ds), 3)
    ds.compress(RLELossless)
    assert pixels(render_frame(to_bytes(ds), 3)).tolist() == pixels(native).tolist()


# -- colour --------------------------------------------------------------------------------


def colours() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, size=(2, 12, 10, 3), endpoint=True).astype(np.uint8)


def test_rgb_passes_through() -> None:
    arr = colours()
    data = to_bytes(instance(arr, "RGB", 8))
    rgb = pixels(render_frame(data, 2))
    assert rgb.shape == (12, 10, 3)
    np.testing.assert_array_equal(rgb, arr[1])


def test_ybr_full_is_converted_to_rgb() -> None:
    arr = colours()
    ybr = convert_color_space(arr.copy(), "RGB", "YBR_FULL", per_frame=True)  # in place
    ds = instance(ybr, "RGB", 8)
    ds.PhotometricInterpretation = "YBR_FULL"
    rgb = pixels(render_frame(to_bytes(ds), 1)).astype(int)
    assert np.abs(rgb - arr[0]).max() <= 3


def test_palette_colour() -> None:
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
    ds = instance(arr, "MONOCHROME2", 8)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for colour, table in (("Red", np.arange(256)), ("Green", 255 - np.arange(256))):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", (table * 257).astype("<u2").tobytes())
    ds.BluePaletteColorLookupTableDescriptor = [256, 0, 16]
    ds.BluePaletteColorLookupTableData = np.full(256, 0x8000, "<u2").tobytes()
    rgb = pixels(render_frame(to_bytes(ds)))
    assert rgb.shape == (16, 16, 3)
    assert rgb[0, 0].tolist() == [0, 255, 128]
    assert rgb[15, 15].tolist() == [255, 0, 128]


# -- output --------------------------------------------------------------------------------


def test_viewport_shrinks_keeping_aspect_and_never_enlarges() -> None:
    arr = np.zeros((32, 64), np.uint8)
    arr[:, 32:] = 255
    data = to_bytes(instance(arr, "MONOCHROME2", 8))
    assert Image.open(io.BytesIO(render_frame(data, viewport=(16, 16)))).size == (16, 8)
    assert Image.open(io.BytesIO(render_frame(data, viewport=(64, 8)))).size == (16, 8)
    assert Image.open(io.BytesIO(render_frame(data, viewport=(1000, 900)))).size == (64, 32)


@pytest.mark.parametrize(("media_type", "fmt"), [("image/jpeg", "JPEG"), ("image/gif", "GIF")])
def test_other_media_types_decode(media_type: str, fmt: str) -> None:
    data = to_bytes(ct())
    png = pixels(render_frame(data)).astype(int)
    encoded = render_frame(data, media_type=media_type + "; q=0.9", quality=95)
    image = Image.open(io.BytesIO(encoded))
    assert image.format == fmt
    assert image.size == (64, 64)
    assert np.abs(np.asarray(image.convert("L")).astype(int) - png).mean() < 3


def test_jpeg_quality_changes_the_size() -> None:
    data = to_bytes(ct())
    small = render_frame(data, media_type="image/jpeg", quality=10)
    large = render_frame(data, media_type="image/jpeg", quality=100)
    assert len(small) < len(large)


def test_thumbnail_is_the_middle_frame_in_a_square() -> None:
    data = to_bytes(instance(marked_frames(3), "MONOCHROME2", 8))
    thumbnail = render_thumbnail(data, media_type="image/png", size=8)
    grey = pixels(thumbnail)
    assert grey.shape == (8, 8)
    assert grey[1, 1] > 0  # frame 2's white pixel at (2, 2) lands at (1, 1)
    jpeg = Image.open(io.BytesIO(render_thumbnail(to_bytes(ct()))))
    assert (jpeg.format, jpeg.size) == ("JPEG", (64, 64))  # never enlarged to 128


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("media_type", ["image/webp", "text/html", "", "image/*"])
def test_unsupported_media_type_is_not_acceptable(media_type: str) -> None:
    with pytest.raises(NotAcceptable, match="image/jpeg, image/png or image/gif"):
        render_frame(b"not even read", media_type=media_type)
    assert issubclass(NotAcceptable, InvalidInput)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"quality": 0}, "quality"),
        ({"quality": 101}, "quality"),
        ({"viewport": (0, 10)}, "viewport"),
        ({"window": (40, 0.5)}, "at least 1 wide"),
        ({"window": (40, 0, "SIGMOID")}, "greater than 0"),
        ({"window": (40, 10, "CUBIC")}, "function"),
        ({"window": (float("nan"), 10)}, "finite"),
    ],
)
def test_bad_options(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        render_frame(to_bytes(ct()), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("frame", [0, 2, -1])
def test_missing_frame_is_not_found(frame: int) -> None:
    with pytest.raises(NotFound, match=f"frame {frame} does not exist.* 1 frame"):
        render_frame(to_bytes(ct()), frame)


def test_instance_without_image_is_not_found() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = generate_uid()
    with pytest.raises(NotFound, match="no pixel data"):
        render_frame(to_bytes(ds))


def test_not_dicom_is_invalid() -> None:
    with pytest.raises(InvalidDicom, match="not DICOM|not readable DICOM"):
        render_frame(b"\x00" * 300)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("40,400,linear", (40.0, 400.0, "LINEAR")),
        ("40,400", (40.0, 400.0, "LINEAR")),
        (" -600.5 , 1500 , LINEAR-EXACT ", (-600.5, 1500.0, "LINEAR_EXACT")),
        ("1e2,.5,sigmoid", (100.0, 0.5, "SIGMOID")),
    ],
)
def test_parse_window(value: str, expected: tuple[float, float, str]) -> None:
    assert parse_window(value) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("40", "center,width,function"),
        ("40,400,linear,x", "center,width,function"),
        ("a,400", "center must be a decimal number"),
        ("40,nan", "width must be a decimal number"),
        ("40,1_000", "width must be a decimal number"),
        ("40,400,cubic", "linear, linear-exact or sigmoid"),
        ("40,0.5,linear", "at least 1 wide"),
        ("40,0,sigmoid", "greater than 0"),
    ],
)
def test_parse_window_errors(value: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        parse_window(value)


def test_parse_viewport() -> None:
    assert parse_viewport("512,256") == (512, 256)
    assert parse_viewport(" 64 , 64 ") == (64, 64)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("512", "width,height"),
        ("1.5,2", "width,height"),
        ("-1,5", "width,height"),
        ("+5,5", "width,height"),
        ("0,10", "at least 1"),
        ("512,512,0,0,10,10", "source-region form"),
    ],
)
def test_parse_viewport_errors(value: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        parse_viewport(value)


def test_jpeg_ycbcr_file_renders_as_rgb() -> None:
    data = testdata("SC_rgb_dcmtk_+eb+cr.dcm").read_bytes()  # JPEG baseline, YBR_FULL_422
    expected = dcmread(io.BytesIO(data)).pixel_array  # pydicom converts to RGB
    rgb = pixels(render_frame(data))
    assert rgb.shape == expected.shape
    np.testing.assert_array_equal(rgb, expected)


def test_float_pixel_data_with_nan() -> None:
    arr = np.linspace(-1, 1, 64, dtype="<f4").reshape(8, 8)
    arr[0, 0] = np.nan
    ds = instance(np.zeros((8, 8), np.uint8), "MONOCHROME2", 8)
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    ds.FloatPixelData = arr.tobytes()
    grey = pixels(render_frame(to_bytes(ds)))
    assert (grey[0, 1], grey[7, 7]) == (0, 255)
    assert grey[0, 0] == round((0 - arr[0, 1]) / (1 - arr[0, 1]) * 255)  # NaN shown as 0

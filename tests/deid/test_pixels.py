"""Pixel PHI: policy, burned-in text cleaning, re-encoding and unused high bits.

OCR tests read the pixels before and after cleaning with two engines (tesseract and the full
RapidOCR pipeline, recognition included), so the cleaner is not checked only by its own
detector. Every "after" assertion is paired with a "before" assertion that the same reader
did find the PHI, so the test can fail.
"""

from __future__ import annotations

import functools
import io
import logging
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_color_lut
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

from biobank.deid.models import Option, PixelAction, PixelRecord, Profile
from biobank.deid.ocr import (
    RapidOcrTextDetector,
    TesseractTextDetector,
    TextDetector,
    default_text_detector,
)
from biobank.deid.pixels import (
    apply_pixel_policy,
    clean_pixel_data,
    decide_pixel_policy,
    zero_unused_high_bits,
)
from biobank.errors import DeidentificationError, QuarantineRequired
from tests.conftest import deid_data, testdata

CLEAN = Profile("clean", frozenset({Option.CLEAN_PIXEL_DATA}))
NO_CLEAN = Profile("no-clean", frozenset())
CANARY_NAME = "QUIXOTE^ZEBEDEE"
CANARY_ID = "MRN8675309"

# --- helpers ----------------------------------------------------------------------------


def _dataset(
    pixels: npt.NDArray[np.generic],
    *,
    modality: str = "OT",
    sop_class: str = SecondaryCaptureImageStorage,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """A minimal image instance holding ``pixels`` shaped (frames, rows, cols[, samples])."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = CANARY_NAME
    ds.PatientID = CANARY_ID
    frames, rows, columns = pixels.shape[:3]
    samples = pixels.shape[3] if pixels.ndim == 4 else 1
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, samples
    if frames > 1:
        ds.NumberOfFrames = frames
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(order)).tobytes()
    return ds


class BrightTextDetector:
    """Boxes around bright pixels (> threshold), per connected row band; counts its calls."""

    def __init__(self, threshold: int = 200) -> None:
        self.threshold = threshold
        self.calls = 0

    def detect(self, image: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int]]:
        self.calls += 1
        gray = image if image.ndim == 2 else image.max(axis=2)
        ys, xs = np.nonzero(gray > self.threshold)
        if ys.size == 0:
            return []
        return [(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)]


class FixedBoxDetector:
    """Always reports the same box, even on black pixels (a detector that never settles)."""

    def __init__(self, box: tuple[int, int, int, int]) -> None:
        self.box = box

    def detect(self, image: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int]]:
        return [self.box]


class OnceBoxDetector:
    """Reports one box on the first call only (a fake that masks and then finds nothing)."""

    def __init__(self, box: tuple[int, int, int, int]) -> None:
        self.box = box
        self.calls = 0

    def detect(self, image: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int]]:
        self.calls += 1
        return [self.box] if self.calls == 1 else []


class BrokenDetector:
    def detect(self, image: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int]]:
        raise OSError("tesseract is not installed")


def _render(ds: Dataset, frame: int = 0) -> npt.NDArray[np.uint8]:
    """Render one frame to 8 bits the way a viewer would (for the OCR readers)."""
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[frame]
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        if arr.max() > 255:
            arr = arr / 257.0
        return np.asarray(arr, dtype=np.uint8)
    if ds.SamplesPerPixel == 3:
        return np.asarray(arr, dtype=np.uint8)
    data = arr.astype(np.float64)
    span = float(data.max() - data.min()) or 1.0
    return ((data - data.min()) * (255.0 / span)).astype(np.uint8)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", "", text).upper()


def _read(image: npt.NDArray[np.uint8]) -> str:
    """Everything two OCR engines read in ``image``, upper case, without white space."""
    import pytesseract

    gray = Image.fromarray(image).convert("L")  # luma keeps white-on-blue banners readable
    words = [pytesseract.image_to_string(gray, config="--psm 11")]
    rgb = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    result, _ = _rapidocr()(np.ascontiguousarray(rgb))
    words.extend(str(item[1]) for item in result or [])
    return _normalise(" ".join(words))


@functools.cache
def _rapidocr() -> Any:
    """The full RapidOCR pipeline (detection, angle, recognition) as an independent reader."""
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR()


def _found(text: str, tokens: Iterable[str]) -> set[str]:
    return {token for token in tokens if _normalise(token) in text}


def _text_frame(text: str, rows: int = 160, columns: int = 480) -> npt.NDArray[np.uint8]:
    image = Image.new("L", (columns, rows), 0)
    draw = ImageDraw.Draw(image)
    draw.text((20, 50), text, fill=255, font=ImageFont.load_default(size=36))
    return np.asarray(image, dtype=np.uint8)


# --- policy -----------------------------------------------------------------------------


def test_original_ct_passes() -> None:
    ds = dcmread(testdata("CT_small.dcm"))
    assert decide_pixel_policy(ds, CLEAN)[0] is PixelAction.PASS


def test_ultrasound_is_cleaned_whatever_the_header_says() -> None:
    ds = dcmread(deid_data("RGB_IMAGE.dcm"))  # no BurnedInAnnotation, a name in the pixels
    assert "BurnedInAnnotation" not in ds
    action, reason = decide_pixel_policy(ds, CLEAN)
    assert action is PixelAction.CLEAN
    assert "US" in reason


def test_secondary_capture_is_cleaned() -> None:
    ds = dcmread(testdata("SC_rgb_jpeg_dcmtk.dcm"))
    assert decide_pixel_policy(ds, CLEAN)[0] is PixelAction.CLEAN


def test_encapsulated_pdf_is_quarantined() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    ds.Modality = "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4 " + CANARY_NAME.encode()
    action, reason = decide_pixel_policy(ds, CLEAN)
    assert action is PixelAction.QUARANTINE
    assert "encapsulated document" in reason


def test_burned_in_annotation_yes_on_ct_is_cleaned() -> None:
    ds = dcmread(testdata("CT_small.dcm"))
    ds.BurnedInAnnotation = "YES"
    action, reason = decide_pixel_policy(ds, CLEAN)
    assert action is PixelAction.CLEAN
    assert "BurnedInAnnotation" in reason


def test_clean_needed_without_the_option_is_quarantined() -> None:
    ds = dcmread(deid_data("RGB_IMAGE.dcm"))
    action, reason = decide_pixel_policy(ds, NO_CLEAN)
    assert action is PixelAction.QUARANTINE
    assert "Clean Pixel Data option" in reason


def test_no_pixel_data_is_none() -> None:
    ds = dcmread(testdata("rtplan.dcm"))
    assert decide_pixel_policy(ds, CLEAN)[0] is PixelAction.NONE


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (frozenset({Option.CLEAN_PIXEL_DATA}), "RecognizableVisualFeatures is YES"),
        (
            frozenset({Option.CLEAN_PIXEL_DATA, Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES}),
            "cannot remove a face",
        ),
    ],
)
def test_recognizable_visual_features_are_quarantined(
    options: frozenset[Option], words: str
) -> None:
    ds = dcmread(testdata("CT_small.dcm"))
    ds.RecognizableVisualFeatures = "YES"
    action, reason = decide_pixel_policy(ds, Profile("p", options))
    assert action is PixelAction.QUARANTINE
    assert words in reason


def test_profile_quarantine_sop_classes() -> None:
    ds = dcmread(testdata("CT_small.dcm"))
    profile = Profile("p", CLEAN.options, quarantine_sop_classes=frozenset({CTImageStorage}))
    assert decide_pixel_policy(ds, profile)[0] is PixelAction.QUARANTINE


@pytest.mark.parametrize(
    ("sop_class", "modality"),
    [
        ("1.2.840.10008.5.1.4.1.1.77.1.4", "XC"),  # VL Photographic Image
        (SecondaryCaptureImageStorage, "XC"),  # an external camera photo stored as SC
    ],
)
def test_photographs_are_quarantined(sop_class: str, modality: str) -> None:
    ds = _dataset(np.zeros((1, 8, 8), np.uint8), modality=modality, sop_class=sop_class)
    assert decide_pixel_policy(ds, CLEAN)[0] is PixelAction.QUARANTINE


@pytest.mark.parametrize(
    ("image_type", "description"),
    [
        (["DERIVED", "SECONDARY", "SCREEN SAVE"], ""),
        (["ORIGINAL", "PRIMARY", "AXIAL"], "Dose Report"),
        (["ORIGINAL", "PRIMARY", "AXIAL"], "Patient Protocol"),
        (["DERIVED", "SECONDARY", "CAPTURE"], ""),
    ],
)
def test_ct_screen_captures_are_cleaned(image_type: list[str], description: str) -> None:
    ds = dcmread(testdata("CT_small.dcm"))
    ds.ImageType = image_type
    ds.SeriesDescription = description
    assert decide_pixel_policy(ds, CLEAN)[0] is PixelAction.CLEAN


@pytest.mark.parametrize(
    "image_type",
    [["DERIVED", "PRIMARY", "MPR"], ["DERIVED", "SECONDARY", "MIP"], ["ORIGINAL", "SECONDARY"]],
)
def test_ct_reformats_and_maps_pass(image_type: list[str]) -> None:
    # PS3.3 C.7.6.1.1.2: SECONDARY means made after the examination (reformats, maps).
    ds = dcmread(testdata("CT_small.dcm"))
    ds.ImageType = image_type
    ds.SeriesDescription = "Axial MPR 3mm"
    assert decide_pixel_policy(ds, CLEAN)[0] is PixelAction.PASS


@pytest.mark.parametrize(
    ("modality", "burned_in", "expected"),
    [
        ("DX", "NO", PixelAction.PASS),
        ("DX", None, PixelAction.CLEAN),
        ("CR", None, PixelAction.CLEAN),
        ("MG", "YES", PixelAction.CLEAN),
        ("XA", "NO", PixelAction.CLEAN),
        ("SEG", None, PixelAction.PASS),
        ("US", "NO", PixelAction.CLEAN),
    ],
)
def test_policy_by_modality(modality: str, burned_in: str | None, expected: PixelAction) -> None:
    ds = _dataset(np.zeros((1, 8, 8), np.uint16), modality=modality, sop_class=CTImageStorage)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    assert decide_pixel_policy(ds, CLEAN)[0] is expected


def test_policy_reasons_carry_no_header_values() -> None:
    ds = _dataset(np.zeros((1, 8, 8), np.uint8), modality="SMITH")
    ds.SeriesDescription = f"SCREEN of {CANARY_NAME}"
    ds.SOPClassUID = "1.2.3.8675309"
    for profile in (CLEAN, NO_CLEAN):
        _, reason = decide_pixel_policy(ds, profile)
        for value in ("SMITH", "QUIXOTE", CANARY_ID, "8675309"):
            assert value not in reason


# --- zero_unused_high_bits ---------------------------------------------------------------


def test_unsigned_overlay_bits_are_cleared_and_values_kept() -> None:
    values = np.array([[[0, 1, 0x0FFF, 0x0800], [0x0123, 7, 4095, 2048]]], dtype=np.uint16)
    stored = values | np.array([[[0x1000, 0x8000, 0xF000, 0], [0x2000, 0, 0x4000, 0]]], np.uint16)
    ds = _dataset(stored, bits_stored=12)
    before = ds.pixel_array.copy()
    assert zero_unused_high_bits(ds) is True
    np.testing.assert_array_equal(ds.pixel_array, before)
    raw = np.frombuffer(ds.PixelData, dtype="<u2").reshape(values.shape)
    np.testing.assert_array_equal(raw, values)
    assert int(raw.max()) <= 0x0FFF


def test_signed_overlay_bits_become_the_sign_extension() -> None:
    values = np.array([[[-2048, -1, 0, 5], [2047, -3, 100, -100]]], dtype=np.int16)
    stored = values.view(np.uint16).copy()
    stored[0, 0, 3] |= 0x2000  # +5 with an overlay bit
    stored[0, 1, 1] &= 0xDFFF  # -3 with an overlay bit cleared
    stored[0, 1, 2] |= 0x8000  # +100 with the top bit set
    ds = _dataset(stored.view(np.int16), bits_stored=12, signed=True)
    before = ds.pixel_array.copy()
    np.testing.assert_array_equal(before, values[0])  # pydicom sign-extends from bit 11
    assert zero_unused_high_bits(ds) is True
    np.testing.assert_array_equal(ds.pixel_array, before)
    raw = np.frombuffer(ds.PixelData, dtype="<i2").reshape(values.shape)
    np.testing.assert_array_equal(raw, values)


def test_big_endian_overlay_bits_are_cleared() -> None:
    values = np.array([[[1, 2], [3, 4]]], dtype=np.uint16)
    ds = _dataset(values | 0x4000, bits_stored=12, syntax=ExplicitVRBigEndian)
    assert zero_unused_high_bits(ds) is True
    np.testing.assert_array_equal(np.frombuffer(ds.PixelData, dtype=">u2").reshape(1, 2, 2), values)


@pytest.mark.parametrize("signed", [False, True])
def test_clean_high_bits_leave_the_very_same_bytes(signed: bool) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(-2048 if signed else 0, 2048 if signed else 4096, (1, 64, 64))
    ds = _dataset(values.astype(np.int16 if signed else np.uint16), bits_stored=12, signed=signed)
    data = ds.PixelData
    assert zero_unused_high_bits(ds) is False
    assert ds.PixelData is data


def test_high_bits_untouched_when_nothing_is_unused_or_data_are_compressed() -> None:
    ds = _dataset(np.full((1, 4, 4), 0xFFFF, np.uint16))  # 16 of 16 bits stored
    data = ds.PixelData
    assert zero_unused_high_bits(ds) is False
    assert ds.PixelData is data
    jpeg = dcmread(testdata("SC_rgb_jpeg_dcmtk.dcm"))
    assert zero_unused_high_bits(jpeg) is False
    assert zero_unused_high_bits(dcmread(testdata("rtplan.dcm"))) is False


# --- cleaning: synthetic ----------------------------------------------------------------


def test_text_on_a_late_frame_is_masked_on_every_frame() -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 80, (5, 160, 480), dtype=np.uint8)  # every frame differs
    frames[3] = np.maximum(frames[3], _text_frame("DOE JOHN 1234567"))
    ds = _dataset(frames, modality="US", sop_class=UltrasoundMultiFrameImageStorage)
    detector = BrightTextDetector()
    record = clean_pixel_data(ds, detector)
    assert detector.calls >= 5  # the detector saw every frame
    assert record.action is PixelAction.CLEAN
    assert record.frames == 5
    assert record.regions_masked == 1
    out = ds.pixel_array
    ys, xs = np.nonzero(_text_frame("DOE JOHN 1234567"))
    box = out[:, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    assert not box.any()  # masked on frames 0-4, not only on frame 3
    assert (out > 200).sum() == 0
    outside = np.ones(out.shape[1:], bool)
    outside[ys.min() - 12 : ys.max() + 13, xs.min() - 12 : xs.max() + 13] = False
    np.testing.assert_array_equal(out[:, outside], frames[:, outside])  # the rest untouched
    assert ds.BurnedInAnnotation == "NO"


@pytest.mark.slow
def test_default_detector_masks_text_drawn_on_frame_three_only() -> None:
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 40, (5, 240, 320), dtype=np.uint8)
    text = _text_frame("DOE 1234567", rows=240, columns=320)
    frames[3] = np.maximum(frames[3], text)
    ds = _dataset(frames, modality="US", sop_class=UltrasoundMultiFrameImageStorage)
    tokens = ["DOE", "1234567"]
    assert _found(_read(_render(ds, 0)), tokens) == set()
    assert _found(_read(_render(ds, 3)), tokens) == set(tokens)
    record = clean_pixel_data(ds, default_text_detector())
    assert record.regions_masked >= 1
    assert _found(_read(_render(ds, 3)), tokens) == set()
    ys, xs = np.nonzero(text)
    assert not ds.pixel_array[:, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].any()


@pytest.mark.parametrize(
    ("photometric", "dtype", "signed", "expected_fill"),
    [
        ("MONOCHROME2", np.uint16, False, 3),
        ("MONOCHROME1", np.uint16, False, 4000),
        ("MONOCHROME2", np.int16, True, -1024),
    ],
)
def test_fill_displays_as_black(
    photometric: str, dtype: type, signed: bool, expected_fill: int
) -> None:
    frames = np.full((2, 32, 32), 100, dtype=dtype)
    frames[:, 0, 0] = 3 if not signed else -1024
    frames[:, 0, 1] = 4000
    ds = _dataset(frames, photometric=photometric, bits_stored=12, signed=signed)
    record = clean_pixel_data(ds, OnceBoxDetector((10, 10, 20, 20)))
    assert record.regions_masked == 1
    out = ds.pixel_array
    assert (out[:, 10:20, 10:20] == expected_fill).all()
    assert out[0, 31, 31] == 100


def test_ultrasound_outside_the_regions_is_blanked() -> None:
    frames = np.full((1, 100, 120, 3), 90, dtype=np.uint8)
    ds = _dataset(frames, modality="US", sop_class=UltrasoundImageStorage, photometric="RGB")
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 20, 30
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 99, 89
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    record = clean_pixel_data(ds, BrightTextDetector())
    out = ds.pixel_array
    assert record.regions_masked == 1
    assert (out[30:90, 20:100] == 90).all()
    assert not out[:30].any() and not out[90:].any()
    assert not out[:, :20].any() and not out[:, 100:].any()


def test_ultrasound_regions_that_do_not_fit_are_ignored() -> None:
    frames = np.full((1, 100, 120), 90, dtype=np.uint8)
    ds = _dataset(frames, modality="US", sop_class=UltrasoundImageStorage)
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 84, 31
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 595, 414  # a resized image
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    record = clean_pixel_data(ds, BrightTextDetector())
    assert record.regions_masked == 0
    assert (ds.pixel_array == 90).all()


def test_residual_text_quarantines_and_leaves_the_dataset_alone() -> None:
    ds = _dataset(np.full((2, 40, 40), 50, np.uint8))
    data = ds.PixelData
    with pytest.raises(QuarantineRequired, match="still detected") as caught:
        clean_pixel_data(ds, FixedBoxDetector((5, 5, 15, 15)))
    assert CANARY_NAME not in str(caught.value)
    assert ds.PixelData is data
    assert "BurnedInAnnotation" not in ds


def test_undecodable_pixels_quarantine() -> None:
    ds = dcmread(testdata("JPEG-lossy.dcm"))  # 12-bit JPEG Extended no plugin can decode
    data = ds.PixelData
    with pytest.raises(QuarantineRequired, match="could not be decoded"):
        clean_pixel_data(ds, BrightTextDetector())
    assert ds.PixelData is data


def test_float_pixel_data_cannot_be_cleaned() -> None:
    ds = Dataset()
    ds.Rows = ds.Columns = 2
    ds.FloatPixelData = np.zeros(4, np.float32).tobytes()
    with pytest.raises(QuarantineRequired):
        clean_pixel_data(ds, BrightTextDetector())


def test_no_pixel_data_gives_none() -> None:
    record = clean_pixel_data(dcmread(testdata("rtplan.dcm")), BrightTextDetector())
    assert record.action is PixelAction.NONE


def test_a_failing_detector_is_an_error_not_a_quarantine() -> None:
    ds = _dataset(np.zeros((1, 16, 16), np.uint8))
    with pytest.raises(DeidentificationError) as caught:
        clean_pixel_data(ds, BrokenDetector())
    assert not isinstance(caught.value, QuarantineRequired)
    assert "BrokenDetector" in str(caught.value)


def test_cleaning_logs_no_phi(caplog: pytest.LogCaptureFixture) -> None:
    frames = np.zeros((1, 160, 480), np.uint8)
    frames[0] = _text_frame(CANARY_NAME)
    ds = _dataset(frames, modality="US", sop_class=UltrasoundImageStorage)
    with caplog.at_level(logging.DEBUG, logger="biobank"):
        record = clean_pixel_data(ds, BrightTextDetector())
    assert "QUIXOTE" not in caplog.text and CANARY_ID not in caplog.text
    assert "QUIXOTE" not in str(record.to_json())


# --- cleaning: real files, re-encoding --------------------------------------------------


def test_jpeg_source_is_decoded_masked_and_written_native() -> None:
    ds = dcmread(testdata("SC_rgb_jpeg_dcmtk.dcm"))
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert ds.PhotometricInterpretation == "YBR_FULL"
    decoded = ds.pixel_array.copy()  # pydicom converts YBR to RGB
    record = clean_pixel_data(ds, OnceBoxDetector((10, 10, 40, 30)))
    assert record.reencoded_transfer_syntax == ExplicitVRLittleEndian
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PhotometricInterpretation == "RGB"
    assert ds.PlanarConfiguration == 0
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert ds.BurnedInAnnotation == "NO"
    assert not ds["PixelData"].is_undefined_length
    assert len(ds.PixelData) == ds.Rows * ds.Columns * 3
    out = ds.pixel_array
    pad = 3  # boxes are padded by at least 3 pixels
    assert not out[10 - pad : 30 + pad, 10 - pad : 40 + pad].any()
    np.testing.assert_array_equal(out[40:], decoded[40:])

    buffer = io.BytesIO()  # and it survives a write and a read
    ds.save_as(buffer, enforce_file_format=True)
    again = dcmread(io.BytesIO(buffer.getvalue()))
    np.testing.assert_array_equal(again.pixel_array, out)


def test_multiframe_jpeg_cine_keeps_its_frames() -> None:
    ds = dcmread(testdata("examples_ybr_color.dcm"))  # 30 frames of YBR_FULL_422 JPEG
    record = clean_pixel_data(ds, OnceBoxDetector((0, 0, 60, 20)))
    assert record.frames == 30
    assert ds.NumberOfFrames == 30
    assert ds.PhotometricInterpretation == "RGB"
    out = ds.pixel_array
    assert out.shape == (30, 240, 320, 3)
    assert not out[:, :20, :60].any()


def test_palette_colour_is_filled_with_its_darkest_entry() -> None:
    ds = dcmread(testdata("OBXXXX1A.dcm"))
    record = clean_pixel_data(ds, OnceBoxDetector((660, 5, 780, 28)))
    assert record.regions_masked >= 1
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    rgb = apply_color_lut(ds.pixel_array, ds)
    assert not rgb[5:28, 660:780].any()  # black, although index 0 need not be
    assert "PlanarConfiguration" not in ds


def test_big_endian_source_keeps_its_lookup_tables_readable() -> None:
    ds = dcmread(testdata("gdcm-US-ALOKA-16_big.dcm"))  # segmented palette, OW, big endian
    colours = apply_color_lut(ds.pixel_array, ds)
    clean_pixel_data(ds, OnceBoxDetector((0, 0, 1, 1)), mask_outside_ultrasound_regions=False)
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    again = dcmread(io.BytesIO(buffer.getvalue()))
    assert again.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    out = apply_color_lut(again.pixel_array, again)
    np.testing.assert_array_equal(out[10:], colours[10:])  # all but the masked corner


def test_apply_pixel_policy_runs_each_branch() -> None:
    values = np.array([[[1, 2], [3, 4]]], dtype=np.uint16)
    ct = _dataset(values | 0x8000, modality="CT", sop_class=CTImageStorage, bits_stored=12)
    ct.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    record = apply_pixel_policy(ct, CLEAN, BrightTextDetector())
    assert record.action is PixelAction.PASS and record.high_bits_zeroed
    us = _dataset(np.zeros((1, 8, 8), np.uint8), modality="US", sop_class=UltrasoundImageStorage)
    assert apply_pixel_policy(us, CLEAN, BrightTextDetector()).action is PixelAction.CLEAN
    with pytest.raises(QuarantineRequired, match="Clean Pixel Data option"):
        apply_pixel_policy(us, NO_CLEAN, BrightTextDetector())
    assert apply_pixel_policy(dcmread(testdata("rtplan.dcm")), CLEAN).action is PixelAction.NONE


def test_default_detector_is_cached_rapidocr() -> None:
    detector = default_text_detector()
    assert detector is default_text_detector()
    assert isinstance(detector, RapidOcrTextDetector)
    assert isinstance(detector, TextDetector)


# --- cleaning: real burned-in PHI, read back by OCR -------------------------------------

RGB_IMAGE_PHI = [
    "ZZZDOWNTIME",
    "MARY",
    "00047431395",
    "120907058",
    "4/14/2020",
    "8:48:26",
    "CLEVELAND",
]
GREYSCALE_IMAGE_PHI = [
    "ZZZ",
    "PATIENT",
    "00079241539",
    "08/29/1951",
    "03/02/2017",
    "05:24:57",
    "CLEVELAN",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "tokens"),
    [("RGB_IMAGE.dcm", RGB_IMAGE_PHI), ("GREYSCALE_IMAGE.dcm", GREYSCALE_IMAGE_PHI)],
)
def test_burned_in_phi_is_gone_after_cleaning(name: str, tokens: list[str]) -> None:
    ds = dcmread(deid_data(name))
    before = _found(_read(_render(ds)), tokens)
    assert len(before) >= 5, before  # OCR reads the PHI in the source
    original = ds.pixel_array.copy()
    record = clean_pixel_data(ds, default_text_detector())
    assert record.action is PixelAction.CLEAN and record.regions_masked > 0
    assert ds.BurnedInAnnotation == "NO"
    after = _found(_read(_render(ds)), tokens)
    assert after == set(), after
    assert (ds.pixel_array == original).mean() > 0.6  # the image itself survives


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "tokens"),
    [
        ("OBXXXX1A.dcm", ["5/25/2011", "11-05-25-142825", "2:56:22", "PHILIPS"]),
        ("gdcm-US-ALOKA-16.dcm", ["WESTWAY", "24-MAY-02", "11:24:20"]),
        ("US1_J2KR.dcm", ["BAPTIST", "MEDCTR", "2:09:04"]),
    ],
)
def test_small_banner_fonts_tesseract_missed_are_cleaned(name: str, tokens: list[str]) -> None:
    ds = dcmread(testdata(name))
    before = _found(_read(_render(ds)), tokens)
    assert before, "the readers must see the banner before cleaning"
    record = clean_pixel_data(ds, default_text_detector())
    assert record.regions_masked > 0
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.PhotometricInterpretation in ("RGB", "PALETTE COLOR")
    assert "LossyImageCompression" not in ds or ds.LossyImageCompression == "00"
    assert _found(_read(_render(ds)), tokens) == set()


@pytest.mark.slow
def test_tesseract_detector_finds_the_name_on_greyscale_image() -> None:
    ds = dcmread(deid_data("GREYSCALE_IMAGE.dcm"))
    boxes = TesseractTextDetector(scales=(1,)).detect(_render(ds))
    assert any(y1 <= 30 and x0 < 150 for x0, _, _, y1 in boxes)  # the top-left name


def test_record_is_json_ready() -> None:
    ds = _dataset(np.zeros((1, 16, 16), np.uint8))
    record = clean_pixel_data(ds, OnceBoxDetector((1, 1, 5, 5)))
    assert isinstance(record, PixelRecord)
    assert record.to_json()["reencoded_transfer_syntax"] == ExplicitVRLittleEndian

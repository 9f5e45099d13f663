"""Frames cut from stored pixel data without decoding (PS3.18 8.3.1.3.3, PS3.5 8 and A.4)."""

from __future__ import annotations

import copy
import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate, encapsulate_extended
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from biobank.dicom.frames import extract_frames, frame_count, transfer_syntax_of
from biobank.dicom.synthetic import make_ct_series, make_patient_phi
from biobank.errors import InvalidDicom, NotFound
from tests.conftest import testdata, to_bytes

RNG = np.random.default_rng(7)


def image(arr: np.ndarray, photometric: str, bits_stored: int) -> Dataset:
    """A multi-frame Secondary Capture-like instance holding ``arr``."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(arr, photometric, bits_stored)
    return ds


def encode(ds: Dataset) -> bytes:
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return to_bytes(ds)


def decode_frame(ds: Dataset, frame: bytes) -> np.ndarray:
    """Decode one extracted frame with pydicom, as a single-frame copy of ``ds``."""
    single = copy.deepcopy(ds)
    single.NumberOfFrames = 1
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in single:
            delattr(single, keyword)
    syntax = UID(single.file_meta.TransferSyntaxUID)
    if syntax.is_encapsulated:
        single.PixelData = encapsulate([frame])
    else:
        single.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # frames are always LE
        keyword = next(
            k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in single
        )
        setattr(single, keyword, frame)
    return single.pixel_array


def assert_frames_decode_like_pixel_array(data: bytes) -> list[bytes]:
    ds = dcmread(io.BytesIO(data))
    count = frame_count(data)
    assert count == int(ds.get("NumberOfFrames") or 1)
    frames = extract_frames(data, range(1, count + 1))
    expected = ds.pixel_array if count > 1 else ds.pixel_array[np.newaxis]
    for index, frame in enumerate(frames):
        np.testing.assert_array_equal(decode_frame(ds, frame), expected[index])
    return frames


# -- native --------------------------------------------------------------------------------


def test_single_frame_ct_is_its_pixel_data() -> None:
    ds = make_ct_series(make_patient_phi(0), n_slices=1, rows=32, cols=32)[0]
    data = to_bytes(ds)
    assert transfer_syntax_of(data) == ExplicitVRLittleEndian
    assert frame_count(data) == 1
    assert extract_frames(data, [1]) == [ds.PixelData]
    assert extract_frames(data, [1, 1]) == [ds.PixelData] * 2


@pytest.mark.parametrize(
    ("dtype", "photometric", "bits", "shape"),
    [
        (np.uint8, "MONOCHROME2", 8, (5, 6, 7)),
        (np.int16, "MONOCHROME2", 12, (4, 9, 5)),
        (np.uint16, "MONOCHROME1", 16, (3, 8, 8)),
        (np.uint8, "RGB", 8, (3, 5, 6, 3)),
    ],
)
def test_native_multi_frame(
    dtype: type, photometric: str, bits: int, shape: tuple[int, ...]
) -> None:
    info = np.iinfo(dtype)
    signed = info.min < 0
    low = -(2 ** (bits - 1)) if signed else 0
    high = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    arr: np.ndarray = RNG.integers(low, high, size=shape, endpoint=True).astype(dtype)
    data = encode(image(arr, photometric, bits))
    frames = extract_frames(data, [3, 1, 2])
    frame_size = arr[0].nbytes
    assert [len(f) for f in frames] == [frame_size] * 3
    assert frames[0] == arr[2].astype(arr.dtype.newbyteorder("<")).tobytes()
    assert_frames_decode_like_pixel_array(data)


def test_rgb_planar_configuration_1_frames() -> None:
    arr = RNG.integers(0, 255, size=(3, 4, 5, 3), endpoint=True).astype(np.uint8)
    ds = image(arr, "RGB", 8)
    ds.PlanarConfiguration = 1
    ds.PixelData = b"".join(np.moveaxis(f, -1, 0).tobytes() for f in arr)
    assert_frames_decode_like_pixel_array(encode(ds))


def bit_image(arr: np.ndarray) -> Dataset:
    ds = image(arr.astype(np.uint8), "MONOCHROME2", 8)
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelData = pack_bits(arr)
    return ds


@pytest.mark.parametrize("shape", [(4, 3, 5), (3, 8, 8), (7, 1, 9)])
def test_bit_packed_frames_are_repacked_from_bit_0(shape: tuple[int, int, int]) -> None:
    arr = RNG.integers(0, 1, size=shape, endpoint=True).astype(np.uint8)
    data = encode(bit_image(arr))
    frame_bits = shape[1] * shape[2]
    for number, frame in enumerate(extract_frames(data, range(1, shape[0] + 1)), start=1):
        assert len(frame) == (frame_bits + 7) // 8
        bits = np.unpackbits(np.frombuffer(frame, np.uint8), bitorder="little")
        np.testing.assert_array_equal(bits[:frame_bits], arr[number - 1].ravel())
        assert not bits[frame_bits:].any()  # unused high bits of the last byte are 0
    assert_frames_decode_like_pixel_array(data)


def test_float_pixel_data() -> None:
    arr = RNG.normal(size=(3, 4, 6)).astype("<f4")
    ds = image(np.zeros((3, 4, 6), np.uint8), "MONOCHROME2", 8)
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    ds.FloatPixelData = arr.tobytes()
    data = encode(ds)
    assert extract_frames(data, [2, 3]) == [arr[1].tobytes(), arr[2].tobytes()]
    assert_frames_decode_like_pixel_array(data)


@pytest.mark.parametrize(
    "name", ["rtdose.dcm", "SC_ybr_full_422_uncompressed.dcm", "image_dfl.dcm", "liver.dcm"]
)
def test_public_native_files(name: str) -> None:
    """Implicit VR (rtdose), subsampled YBR_FULL_422, deflated data set, 1-bit multi-frame."""
    assert_frames_decode_like_pixel_array(testdata(name).read_bytes())


def test_big_endian_frames_are_little_endian() -> None:
    big = testdata("emri_small_big_endian.dcm").read_bytes()
    little = testdata("emri_small.dcm").read_bytes()
    assert transfer_syntax_of(big) == "1.2.840.10008.1.2.2"
    assert frame_count(big) == frame_count(little) == 10
    numbers = [10, 1, 5]
    assert extract_frames(big, numbers) == extract_frames(little, numbers)
    for name in ("SC_rgb_expb_2frame.dcm", "SC_rgb_expb_32bit_2frame.dcm"):
        assert_frames_decode_like_pixel_array(testdata(name).read_bytes())


# -- encapsulated --------------------------------------------------------------------------


def grey_frames(count: int = 4, rows: int = 16, cols: int = 12) -> np.ndarray:
    base = np.arange(rows * cols, dtype=np.uint16).reshape(rows, cols) * 5
    return np.stack([base + 100 * k for k in range(count)]).astype(np.uint16)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_pydicom_compressed_multi_frame(syntax: str) -> None:
    ds = image(grey_frames(rows=64, cols=64) % 4096, "MONOCHROME2", 12)
    ds.compress(syntax)
    data = encode(ds)
    assert transfer_syntax_of(data) == syntax
    assert len(assert_frames_decode_like_pixel_array(data)) == 4


def test_rle_colour_multi_frame() -> None:
    assert_frames_decode_like_pixel_array(testdata("SC_rgb_rle_2frame.dcm").read_bytes())
    assert_frames_decode_like_pixel_array(testdata("emri_small_jpeg_2k_lossless.dcm").read_bytes())


def jpeg_instance(
    count: int, *, fragments: int = 1, bot: bool = True, extended: bool = False
) -> tuple[bytes, list[bytes]]:
    """A grey JPEG baseline multi-frame instance; frames encoded by Pillow."""
    arr = (grey_frames(count) // 8).astype(np.uint8)
    jpegs = []
    for frame in arr:
        out = io.BytesIO()
        Image.fromarray(frame).save(out, format="JPEG", quality=95)
        jpegs.append(out.getvalue())
    ds = image(arr, "MONOCHROME2", 8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    if extended:
        ds.PixelData, ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths = encapsulate_extended(
            jpegs
        )
    else:
        ds.PixelData = encapsulate(jpegs, fragments_per_frame=fragments, has_bot=bot)
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return encode(ds), jpegs


@pytest.mark.parametrize(
    ("fragments", "bot", "extended"),
    [(1, True, False), (1, False, False), (3, True, False), (3, False, False), (1, False, True)],
    ids=["bot", "no-bot", "bot-3-fragments", "eoi-markers", "extended-offset-table"],
)
def test_jpeg_baseline_frames_are_the_encoded_frames(
    fragments: int, bot: bool, extended: bool
) -> None:
    data, jpegs = jpeg_instance(5, fragments=fragments, bot=bot, extended=extended)
    frames = extract_frames(data, [5, 2, 1])
    for frame, jpeg in zip(frames, [jpegs[4], jpegs[1], jpegs[0]], strict=True):
        assert frame[: len(jpeg)] == jpeg
        assert frame[len(jpeg) :].strip(b"\x00") == b""  # only the padding of odd fragments
    assert_frames_decode_like_pixel_array(data)


def test_single_frame_in_several_fragments() -> None:
    data, jpegs = jpeg_instance(1, fragments=3, bot=False)
    (frame,) = extract_frames(data, [1])
    assert frame.rstrip(b"\x00") == jpegs[0].rstrip(b"\x00")


def test_colour_jpeg_file() -> None:
    assert_frames_decode_like_pixel_array(testdata("SC_rgb_dcmtk_+eb+cr.dcm").read_bytes())


# -- errors and costs ----------------------------------------------------------------------


def test_frame_numbers_out_of_range_are_not_found() -> None:
    data, _ = jpeg_instance(3)
    for number in (0, 4, -1):
        with pytest.raises(NotFound, match=f"frame {number} does not exist.* 3 frame"):
            extract_frames(data, [1, number])


def test_instance_without_pixel_data() -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.SOPInstanceUID = generate_uid()
    data = to_bytes(ds)
    assert frame_count(data) == 0
    with pytest.raises(NotFound, match="no pixel data"):
        extract_frames(data, [1])


def test_truncated_native_pixel_data() -> None:
    arr = RNG.integers(0, 255, size=(3, 8, 8)).astype(np.uint8)
    ds = image(arr, "MONOCHROME2", 8)
    ds.NumberOfFrames = 4  # the header promises more than the value holds
    with pytest.raises(InvalidDicom, match="truncated"):
        extract_frames(encode(ds), [1])


def test_ambiguous_fragments_are_refused() -> None:
    data, _ = jpeg_instance(2, fragments=2, bot=False)
    ds = dcmread(io.BytesIO(data))
    ds.NumberOfFrames = 3  # 4 fragments, 2 end-of-image markers, 3 frames claimed
    with pytest.raises(InvalidDicom, match="cannot be told apart"):
        extract_frames(to_bytes(ds), [1])


def test_not_dicom() -> None:
    with pytest.raises(InvalidDicom, match="not readable DICOM|not DICOM"):
        frame_count(b"\x00" * 200 + b"hello")


@pytest.mark.parametrize("compressed", [False, True])
def test_one_frame_of_many_costs_one_frame_of_memory(compressed: bool) -> None:
    arr = RNG.integers(0, 65535, size=(100, 128, 128), endpoint=True).astype(np.uint16)
    ds = image(arr, "MONOCHROME2", 16)
    if compressed:
        ds.compress(RLELossless)
    data = encode(ds)
    frame_bytes = 128 * 128 * 2
    extract_frames(data, [50])  # warm caches (imports, pydicom dictionaries)
    tracemalloc.start()
    try:
        (frame,) = extract_frames(data, [50])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(frame) <= frame_bytes * 2  # RLE of noise is larger than the raw frame
    assert peak < len(data) // 4  # the pixel data are never copied whole
    assert peak < 8 * frame_bytes + 200_000


def test_truncated_file_meta() -> None:
    data = to_bytes(make_ct_series(make_patient_phi(0), n_slices=1, rows=8, cols=8)[0])
    for cut in (140, 150, 170):
        with pytest.raises(InvalidDicom):
            transfer_syntax_of(data[:cut])

"""Pixel PHI: decide, per instance, whether pixels pass, are cleaned or are held back.

PS3.15 E.3.1 (Clean Pixel Data) asks that burned-in identifying text be removed from the
pixels; E.3.2 covers recognisable features such as a face. This module is pure: a pydicom
:class:`~pydicom.dataset.Dataset` comes in, the same dataset is mutated in place and a
:class:`~biobank.deid.models.PixelRecord` (counts and reasons, never a value read from the
input) comes out. Only the OCR engine runs outside Python.

* :func:`decide_pixel_policy` picks *pass*, *clean*, *quarantine* or *none* from the header
  (SOP class, modality, ImageType, BurnedInAnnotation, RecognizableVisualFeatures) and the
  profile's options. The header is not trusted to *deny* text: ultrasound and secondary
  captures are always cleaned (deid-data ``RGB_IMAGE.dcm`` has no BurnedInAnnotation and a
  burned-in name).
* :func:`clean_pixel_data` decodes every frame, runs a :class:`TextDetector` on every frame,
  masks the union of the boxes on every frame (for ultrasound, also everything outside the
  Sequence of Ultrasound Regions), runs the detector again on the result and only then
  writes native Explicit VR Little Endian pixel data and BurnedInAnnotation ``NO``.
* :func:`zero_unused_high_bits` clears legacy overlay bits above High Bit, cheaply.

Text detection itself lives in :mod:`biobank.deid.ocr`: the :class:`TextDetector` protocol,
the RapidOCR and tesseract engines and the measurements behind the choice of RapidOCR.
:class:`TextDetector`, :data:`Box` and :func:`default_text_detector` are re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from biobank.deid.models import Option, PixelAction, PixelRecord, Profile
from biobank.deid.ocr import Box, TextDetector, default_text_detector
from biobank.dicom.values import elements, read_int, read_keyword, read_strings
from biobank.errors import DeidentificationError, QuarantineRequired

logger = logging.getLogger(__name__)


# --- SOP classes and modalities ---------------------------------------------------------

_SECONDARY_CAPTURE: Final = "1.2.840.10008.5.1.4.1.1.7"  # and its .1-.4 multi-frame kin
_ENCAPSULATED_DOCUMENT_PREFIX: Final = "1.2.840.10008.5.1.4.1.1.104."
_VL_PHOTOGRAPHIC: Final = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
        "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image
    }
)
_VL_WHOLE_SLIDE: Final = "1.2.840.10008.5.1.4.1.1.77.1.6"

# Modalities whose original acquisitions carry no burned-in text in practice.
_PASS_MODALITIES: Final = frozenset({"CT", "MR", "PT", "NM", "RTIMAGE"})
# Data grids that are never rendered with text (dose grids, segmentations).
_DATA_GRID_MODALITIES: Final = frozenset({"RTDOSE", "SEG"})
# Projection radiography: pass only when the header explicitly says there is no text.
_PROJECTION_MODALITIES: Final = frozenset({"DX", "CR", "MG", "IO", "PX"})
_PHOTO_MODALITIES: Final = frozenset({"XC"})
# Words in ImageType / SeriesDescription / DerivationDescription of screen captures.
#: Words that mark a screen capture, dose report or protocol page among CT/MR/PT/NM images.
#: ``SECONDARY`` is not one of them: PS3.3 C.7.6.1.1.2 uses it for every image made after
#: the examination, such as reformats, MIPs and ADC maps, whose pixels carry no text.
_CAPTURE_HINTS: Final = ("SCREEN", "DOSE", "REPORT", "CAPTURE", "PATIENT PROTOCOL")
# Modality codes we may echo in a reason (CS values are defined terms; never echo others).
_KNOWN_MODALITIES: Final = frozenset(
    {
        "AR", "ASMT", "AU", "BDUS", "BI", "BMD", "CFM", "CR", "CT", "CTPROTOCOL", "DG",
        "DMS", "DOC", "DX", "ECG", "EEG", "EMG", "EOG", "EPS", "ES", "FID", "GM", "HC",
        "HD", "IO", "IOL", "IVOCT", "IVUS", "KER", "KO", "LEN", "LS", "MG", "MR", "M3D",
        "NM", "OAM", "OCT", "OP", "OPM", "OPT", "OPTBSV", "OPTENF", "OPV", "OSS", "OT",
        "PA", "PLAN", "POS", "PR", "PT", "PX", "REG", "RESP", "RF", "RG", "RTDOSE",
        "RTIMAGE", "RTINTENT", "RTPLAN", "RTRAD", "RTRECORD", "RTSEGANN", "RTSTRUCT",
        "RWV", "SEG", "SM", "SMR", "SR", "SRF", "STAIN", "TEXTUREMAP", "TG", "US", "VA",
        "XA", "XAPROTOCOL", "XC",
    }
)  # fmt: skip

# --- transfer syntaxes ------------------------------------------------------------------

_LOSSY_METHODS: Final[dict[str, str]] = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG Extended
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.100": "ISO_13818_2",  # MPEG2
    "1.2.840.10008.1.2.4.101": "ISO_13818_2",
    "1.2.840.10008.1.2.4.102": "ISO_14496_10",  # MPEG-4 AVC
    "1.2.840.10008.1.2.4.103": "ISO_14496_10",
    "1.2.840.10008.1.2.4.104": "ISO_14496_10",
    "1.2.840.10008.1.2.4.105": "ISO_14496_10",
    "1.2.840.10008.1.2.4.106": "ISO_14496_10",
    "1.2.840.10008.1.2.4.107": "ISO_23008_2",  # HEVC
    "1.2.840.10008.1.2.4.108": "ISO_23008_2",
}
# Lossless or lossy depending on the codestream: JPEG 2000 (Part 1 and 2) and HTJ2K.
_J2K_EITHER: Final = frozenset(
    {"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203"}
)

# --- masking ----------------------------------------------------------------------------

_BOX_PAD_MIN: Final = 3  # pixels added around every box ...
_BOX_PAD_FRACTION: Final = 0.15  # ... or this fraction of the box height, if larger
_MASK_PASSES: Final = 2  # detect-and-mask passes before the final residual check

PixelArray = npt.NDArray[Any]


# --- policy ------------------------------------------------------------------------------


def has_pixel_data(ds: Dataset) -> bool:
    """Whether ``ds`` has Pixel Data, Float Pixel Data or Double Float Pixel Data."""
    return any(kw in ds for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def decide_pixel_policy(ds: Dataset, profile: Profile) -> tuple[PixelAction, str]:
    """Decide pass / clean / quarantine / none for this instance, with a short PHI-free reason.

    Parameters
    ----------
    ds : Dataset
        The instance (its header is read, nothing is changed).
    profile : Profile
        The de-identification profile; :attr:`Option.CLEAN_PIXEL_DATA` allows cleaning and
        :attr:`Profile.quarantine_sop_classes` holds SOP classes back.

    Returns
    -------
    tuple[PixelAction, str]
        The action and a reason made only of fixed text, defined terms and standard UIDs.

    Notes
    -----
    In order: SOP classes the profile quarantines, encapsulated documents (PDF, CDA, STL,
    OBJ, MTL) and photographs (VL Photographic, XC, slide labels) are quarantined; an
    instance without pixels is *none*; RecognizableVisualFeatures ``YES`` is quarantined
    (no option can remove a face here). BurnedInAnnotation ``YES``, secondary captures,
    derived or screen-capture CT/MR/PT/NM, projection radiographs not marked ``NO`` and
    every other modality (US, XA, RF, ES, OT, ...) need cleaning, which becomes quarantine
    when the profile lacks the Clean Pixel Data option. Original CT, MR, PT, NM and RT
    images without burned-in annotation, dose grids and segmentations pass.
    """
    # Header values are read from the encoded bytes (read_keyword): decoding them through
    # pydicom would cost more than the rest of a pass-through instance's de-identification.
    sop_class = _first(ds, "SOPClassUID")
    modality = _first(ds, "Modality").upper()
    image_type = [v.strip().upper() for v in read_keyword(ds, "ImageType")]
    what = _describe(modality)

    if sop_class and sop_class in profile.quarantine_sop_classes:
        return PixelAction.QUARANTINE, f"{what}: the profile quarantines this SOP class"
    if sop_class.startswith(_ENCAPSULATED_DOCUMENT_PREFIX) or "EncapsulatedDocument" in ds:
        return (
            PixelAction.QUARANTINE,
            f"{what}: an encapsulated document (PDF, CDA or 3-D model) cannot be cleaned",
        )
    if not has_pixel_data(ds):
        return PixelAction.NONE, f"{what}: no pixel data"
    if _flag(ds, "RecognizableVisualFeatures") == "YES":
        if Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES in profile.options:
            return (
                PixelAction.QUARANTINE,
                f"{what}: RecognizableVisualFeatures is YES; the Clean Recognizable Visual "
                "Features option is on but this engine cannot remove a face or body "
                "surface, so the instance is held",
            )
        return (
            PixelAction.QUARANTINE,
            f"{what}: RecognizableVisualFeatures is YES (a face or body surface may be seen)",
        )
    if sop_class in _VL_PHOTOGRAPHIC or modality in _PHOTO_MODALITIES:
        return (
            PixelAction.QUARANTINE,
            f"{what}: a visible-light photograph may show a face or a name",
        )
    if sop_class == _VL_WHOLE_SLIDE and ({"LABEL", "OVERVIEW"} & set(image_type)):
        return (
            PixelAction.QUARANTINE,
            f"{what}: a slide label or overview image can carry a name or barcode",
        )

    needs_cleaning, clean_reason = _clean_reason(ds, sop_class, modality, image_type, what)
    if not needs_cleaning:
        return PixelAction.PASS, clean_reason
    if Option.CLEAN_PIXEL_DATA in profile.options:
        return PixelAction.CLEAN, clean_reason
    return (
        PixelAction.QUARANTINE,
        f"{clean_reason}, but the profile lacks the Clean Pixel Data option",
    )


def _clean_reason(
    ds: Dataset, sop_class: str, modality: str, image_type: list[str], what: str
) -> tuple[bool, str]:
    """Return whether the pixels need cleaning, and why (or why they may pass)."""
    burned_in = _flag(ds, "BurnedInAnnotation")
    if burned_in == "YES":
        return True, f"{what}: BurnedInAnnotation is YES"
    if sop_class == _SECONDARY_CAPTURE or sop_class.startswith(_SECONDARY_CAPTURE + "."):
        return True, f"{what}: secondary captures often carry burned-in text"
    if modality in _DATA_GRID_MODALITIES:
        return False, f"{what}: a dose grid or segmentation carries no burned-in text"
    original = bool(image_type) and image_type[0] == "ORIGINAL"
    capture = _looks_like_capture(ds, image_type)
    passes = f"{what}: original acquisition without burned-in annotation"
    if modality in _PASS_MODALITIES:
        if capture:
            return True, f"{what}: ImageType or description marks a screen capture or report"
        if not original:
            # Reformats, MIPs, subtractions and parametric maps (DERIVED) are computed from
            # the acquired pixels; text only appears in captures, caught above.
            return False, f"{what}: derived image (reformat or map) without burned-in annotation"
        return False, passes
    if modality in _PROJECTION_MODALITIES:
        if burned_in == "NO" and original and not capture:
            return False, passes
        return True, f"{what}: projection image not marked BurnedInAnnotation NO"
    return True, f"{what}: this modality commonly carries burned-in text"


def _looks_like_capture(ds: Dataset, image_type: list[str]) -> bool:
    texts = [*image_type[1:]]
    for keyword in ("SeriesDescription", "DerivationDescription"):
        texts.extend(v.strip().upper() for v in read_keyword(ds, keyword))
    return any(hint in text for text in texts for hint in _CAPTURE_HINTS)


def _flag(ds: Dataset, keyword: str) -> str:
    return _first(ds, keyword).upper()


def _first(ds: Dataset, keyword: str) -> str:
    values = read_keyword(ds, keyword)
    return values[0].strip() if values else ""


def _describe(modality: str) -> str:
    """A PHI-free name for the instance kind: a known modality code or 'instance'."""
    if modality in _KNOWN_MODALITIES:
        return f"{modality} instance"
    return "instance"


# --- high bits ---------------------------------------------------------------------------


def zero_unused_high_bits(ds: Dataset) -> bool:
    """Clear the bits above High Bit of native pixel data (legacy overlays live there).

    For unsigned data (PixelRepresentation 0) the bits above High Bit are set to 0; for
    signed data they become the sign extension of High Bit. The values pydicom reads are
    unchanged. The check is two numpy reductions over a zero-copy view; the bytes are only
    copied and replaced when a pixel actually has a stray bit.

    Parameters
    ----------
    ds : Dataset
        The instance; its Pixel Data is replaced when something changes.

    Returns
    -------
    bool
        True if any byte changed. False (and ``ds.PixelData`` is the very same object) when
        the data are compressed, have no unused bits or are already clean.
    """
    view = _native_pixel_view(ds)
    if view is None:
        return False
    pixels, high_bit, signed = view
    if not _has_stray_high_bits(pixels, high_bit, signed):
        return False
    bits = pixels.dtype.itemsize * 8
    if signed:
        shift = bits - 1 - high_bit
        fixed = np.left_shift(pixels, shift) >> shift  # arithmetic shift: sign extension
    else:
        fixed = pixels & np.array((1 << (high_bit + 1)) - 1, dtype=pixels.dtype)
    value = ds.PixelData
    tail = bytes(value[pixels.nbytes :])
    ds.PixelData = fixed.astype(pixels.dtype, copy=False).tobytes() + tail
    logger.debug("cleared unused high bits of native pixel data (high bit %d)", high_bit)
    return True


def _native_pixel_view(ds: Dataset) -> tuple[PixelArray, int, bool] | None:
    """Return a zero-copy view of native integer Pixel Data with unused high bits.

    The result is ``(pixels, high_bit, signed)``, or None when the data are compressed,
    have no unused bits above High Bit, or do not match the Image Pixel module.
    """
    elem = elements(ds).get(0x7FE00010)  # read without decoding: see decide_pixel_policy
    if elem is None:
        return None
    if (elem.length if type(elem) is RawDataElement else 0) == 0xFFFFFFFF or (
        type(elem) is not RawDataElement and elem.is_undefined_length
    ):
        return None
    bits_allocated = read_int(ds, 0x00280100, 0)
    bits_stored = read_int(ds, 0x00280101, 0)
    if bits_allocated not in (8, 16, 32) or not 0 < bits_stored < bits_allocated:
        return None
    high_bit = read_int(ds, 0x00280102, bits_stored - 1)
    if not 0 <= high_bit < bits_allocated - 1:
        return None
    transfer_syntax = _transfer_syntax(ds)
    if transfer_syntax is None or transfer_syntax.is_compressed:
        return None
    value = elem.value
    if not isinstance(value, bytes | bytearray):
        return None
    itemsize = bits_allocated // 8
    count = _pixel_count(ds)
    if count <= 0 or len(value) < count * itemsize:
        return None
    order = ">" if transfer_syntax == ExplicitVRBigEndian else "<"
    signed = read_int(ds, 0x00280103, 0) == 1
    dtype = np.dtype(f"{order}{'i' if signed else 'u'}{itemsize}")
    return np.frombuffer(value, dtype=dtype, count=count), high_bit, signed


def _has_stray_high_bits(pixels: PixelArray, high_bit: int, signed: bool) -> bool:
    """Whether any value has a bit above ``high_bit`` that is not its sign extension.

    Two reductions (or one), no temporary array: unsigned values fit iff max <= mask;
    signed values are properly sign-extended iff they lie in the high bit's range.
    """
    if pixels.size == 0:
        return False
    if signed:
        return int(pixels.min()) < -(1 << high_bit) or int(pixels.max()) > (1 << high_bit) - 1
    return int(pixels.max()) > (1 << (high_bit + 1)) - 1


def _pixel_count(ds: Dataset) -> int:
    frames = read_int(ds, 0x00280008, 1) or 1
    rows = read_int(ds, 0x00280010, 0)
    columns = read_int(ds, 0x00280011, 0)
    samples = read_int(ds, 0x00280002, 1) or 1
    return frames * rows * columns * samples


def _normalise_high_bits(arr: PixelArray, high_bit: int, signed: bool) -> PixelArray:
    """Return ``arr`` with bits above ``high_bit`` cleared or sign-extended (in place)."""
    if arr.dtype.kind not in "iu" or (arr.dtype.kind == "i") != signed:
        return arr
    bits = arr.dtype.itemsize * 8
    if not 0 <= high_bit < bits - 1 or not _has_stray_high_bits(arr, high_bit, signed):
        return arr
    if signed:
        shift = bits - 1 - high_bit
        arr[...] = np.left_shift(arr, shift) >> shift
    else:
        arr &= np.array((1 << (high_bit + 1)) - 1, dtype=arr.dtype)
    return arr


# --- cleaning ----------------------------------------------------------------------------


def apply_pixel_policy(
    ds: Dataset, profile: Profile, detector: TextDetector | None = None
) -> PixelRecord:
    """Decide the pixel policy for ``ds`` and carry it out.

    *pass* zeroes unused high bits, *clean* runs :func:`clean_pixel_data` with ``detector``
    (default: :func:`default_text_detector`), *none* does nothing.

    Raises
    ------
    QuarantineRequired
        When the policy is *quarantine* or cleaning cannot be done with confidence.
    """
    action, reason = decide_pixel_policy(ds, profile)
    if action is PixelAction.QUARANTINE:
        raise QuarantineRequired(f"pixel data: {reason}")
    if action is PixelAction.NONE:
        return PixelRecord(action=action, reason=reason)
    if action is PixelAction.PASS:
        zeroed = zero_unused_high_bits(ds)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return PixelRecord(action=action, reason=reason, frames=frames, high_bits_zeroed=zeroed)
    record = clean_pixel_data(ds, detector if detector is not None else default_text_detector())
    return PixelRecord(
        action=record.action,
        reason=f"{reason}; {record.reason}",
        frames=record.frames,
        regions_masked=record.regions_masked,
        high_bits_zeroed=record.high_bits_zeroed,
        reencoded_transfer_syntax=record.reencoded_transfer_syntax,
        residual_text_found=record.residual_text_found,
    )


def clean_pixel_data(
    ds: Dataset, detector: TextDetector, *, mask_outside_ultrasound_regions: bool = True
) -> PixelRecord:
    """Decode every frame, mask burned-in text on every frame, re-encode natively, re-check.

    1. Decode all frames with pydicom's pixel handlers (pylibjpeg, GDCM, Pillow), YBR to
       RGB; clear bits above High Bit.
    2. Render each frame to 8 bits (palette applied, MONOCHROME1 inverted) and run
       ``detector`` on every distinct frame; text that appears only on a late cine frame
       counts.
    3. Fill the union of the boxes (padded) on *every* frame with black: 0 for RGB, the
       darkest value present for MONOCHROME2, the brightest for MONOCHROME1, the darkest
       palette entry for PALETTE COLOR. For ultrasound with a Sequence of Ultrasound
       Regions that fits the frame, also blank everything outside the union of the
       regions, where the banners sit.
    4. Run ``detector`` again on every cleaned frame. Boxes found there are masked too
       (text merged with a masked neighbour shows up only then), up to two passes; a box
       found by the check after the second pass is residual text.
    5. Only then write native Explicit VR Little Endian Pixel Data, update Transfer
       Syntax (in ``ds.file_meta``), PhotometricInterpretation, PlanarConfiguration and
       LossyImageCompression (kept ``01`` if the source was lossy), byte-swap the other
       OW/OL/OF/OD values of a big-endian source (lookup tables, overlays) and set
       BurnedInAnnotation to ``NO``. ``ds`` is untouched when an exception is raised.

    Parameters
    ----------
    ds : Dataset
        The instance, mutated in place on success.
    detector : TextDetector
        The text finder (see :func:`default_text_detector`).
    mask_outside_ultrasound_regions : bool
        Whether to blank what lies outside the ultrasound regions (US only).

    Returns
    -------
    PixelRecord
        Action ``clean`` with the number of frames, the number of masked regions (distinct
        boxes, plus one when the outside of the ultrasound regions was blanked) and the new
        transfer syntax. An instance without pixel data gives action ``none``.

    Raises
    ------
    QuarantineRequired
        The pixels cannot be decoded or re-encoded, or text remains after masking.
    DeidentificationError
        The detector itself failed (e.g. the OCR engine is not installed).
    """
    if "PixelData" not in ds:
        if has_pixel_data(ds):
            raise QuarantineRequired(
                "float pixel data cannot be cleaned of burned-in text; hold the instance "
                "or clean it by hand"
            )
        return PixelRecord(action=PixelAction.NONE, reason="no pixel data")

    source_syntax = _transfer_syntax(ds)
    if source_syntax is None:
        raise QuarantineRequired(
            "pixel data: the transfer syntax is unknown (no file meta and no encoding); "
            "the pixels cannot be decoded for cleaning"
        )
    native = _native_pixel_view(ds)
    high_bits_zeroed = native is not None and _has_stray_high_bits(*native)
    frames, image_pixel = _decode(ds, source_syntax)
    photometric = str(image_pixel["photometric_interpretation"])
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR"):
        raise QuarantineRequired(
            f"pixel data: photometric interpretation {photometric} is not supported by the "
            "cleaner after decoding; the instance is held"
        )
    signed = int(image_pixel.get("pixel_representation", 0)) == 1
    bits_stored = int(image_pixel.get("bits_stored", ds.get("BitsStored", 8)))
    high_bit = int(ds.get("HighBit", bits_stored - 1))
    _normalise_high_bits(frames, high_bit, signed)
    renderer = _Renderer(ds, photometric, frames)

    n_frames, rows, columns = frames.shape[0], frames.shape[1], frames.shape[2]
    fill = _fill_value(ds, photometric, frames)
    keep = None
    if mask_outside_ultrasound_regions and str(ds.get("Modality", "")).upper() == "US":
        keep = _ultrasound_keep_mask(ds, rows, columns)
    outside = keep is not None and not keep.all()

    # Detect on every distinct original frame, then blank outside the ultrasound regions
    # and mask the union of the boxes on every frame. Re-check the cleaned frames: masking
    # can reveal text the detector had merged with a neighbour (the circled "G" next to
    # "P" and "R" in OBXXXX1A), so a second pass masks what the first check finds. Text
    # the check after the second pass still finds is residual.
    boxes = _detect_all(detector, renderer, frames)
    if keep is not None and outside:
        frames[:, ~keep, ...] = fill
    _mask(frames, boxes, fill)
    passes = 1 if boxes or outside else 0
    while passes:
        found = _detect_all(detector, renderer, frames)
        if not found:
            break
        if passes == _MASK_PASSES:
            raise QuarantineRequired(
                f"pixel data: text was still detected in {len(found)} place(s) after "
                f"{passes} masking pass(es) over {n_frames} frame(s); the instance is "
                "held for manual review"
            )
        _mask(frames, found, fill)
        boxes |= found
        passes += 1
    regions_masked = len(boxes) + int(outside)

    _write_native(ds, frames, image_pixel, source_syntax)
    ds.BurnedInAnnotation = "NO"
    logger.debug(
        "pixel data cleaned: %d frame(s), %d region(s) masked, from %s",
        n_frames,
        regions_masked,
        source_syntax.name,
    )
    reason = (
        f"burned-in text masked on every frame ({regions_masked} region(s))"
        if regions_masked
        else "no burned-in text detected"
    )
    return PixelRecord(
        action=PixelAction.CLEAN,
        reason=reason,
        frames=n_frames,
        regions_masked=regions_masked,
        high_bits_zeroed=high_bits_zeroed,
        reencoded_transfer_syntax=str(ExplicitVRLittleEndian),
        residual_text_found=False,
    )


def _transfer_syntax(ds: Dataset) -> UID | None:
    file_meta = getattr(ds, "file_meta", None)
    values = read_strings(file_meta, 0x00020010, "UI", []) if file_meta is not None else []
    uid = values[0] if values else None
    if uid:
        return UID(str(uid))
    encoding = getattr(ds, "original_encoding", (None, None))
    implicit, little = encoding
    if implicit is None or little is None:
        return None
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _decode(ds: Dataset, syntax: UID) -> tuple[PixelArray, dict[str, str | int]]:
    """Decode all frames to ``(frames, rows, columns[, samples])``, writable."""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise QuarantineRequired(
            f"pixel data: no decoder for transfer syntax {syntax} ({syntax.name}); the "
            "pixels cannot be cleaned"
        ) from exc
    try:
        options: dict[str, Any] = {"as_rgb": True}  # pydicom types **kwargs too narrowly
        arr, image_pixel = decoder.as_array(ds, **options)
    except Exception as exc:  # any decoder failure means we cannot look at the pixels
        raise QuarantineRequired(
            f"pixel data could not be decoded from {syntax.name} "
            f"({type(exc).__name__}); the instance is held"
        ) from exc
    n_frames = int(image_pixel.get("number_of_frames", 1) or 1)
    samples = int(image_pixel.get("samples_per_pixel", 1) or 1)
    rows, columns = int(image_pixel["rows"]), int(image_pixel["columns"])
    shape = (n_frames, rows, columns) + ((samples,) if samples > 1 else ())
    if arr.size != int(np.prod(shape)):
        raise QuarantineRequired(
            "pixel data: the decoded size does not match Rows, Columns, Samples per Pixel "
            "and Number of Frames; the instance is held"
        )
    frames = np.array(arr.reshape(shape), copy=None, order="C")
    if not frames.flags.writeable:
        frames = frames.copy()
    return frames, image_pixel


def _detect_all(detector: TextDetector, renderer: _Renderer, frames: PixelArray) -> set[Box]:
    """The padded boxes found on any distinct frame."""
    rows, columns = frames.shape[1], frames.shape[2]
    found: set[Box] = set()
    for image in renderer.distinct(frames):
        found.update(_clean_boxes(_detect(detector, image), rows, columns))
    return found


def _mask(frames: PixelArray, boxes: Iterable[Box], fill: int) -> None:
    """Fill every box on every frame."""
    for x0, y0, x1, y1 in boxes:
        frames[:, y0:y1, x0:x1, ...] = fill


def _detect(detector: TextDetector, image: npt.NDArray[np.uint8]) -> list[Box]:
    try:
        return list(detector.detect(image))
    except Exception as exc:
        raise DeidentificationError(
            f"the text detector {type(detector).__name__} failed ({type(exc).__name__}); "
            "check the OCR installation (rapidocr-onnxruntime or tesseract-ocr)"
        ) from exc


def _clean_boxes(boxes: Iterable[Sequence[float]], rows: int, columns: int) -> set[Box]:
    """Pad, order and clip boxes to the frame; drop empty ones."""
    out: set[Box] = set()
    for box in boxes:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        x0, x1 = min(x0, x1), max(x0, x1)
        y0, y1 = min(y0, y1), max(y0, y1)
        pad = max(_BOX_PAD_MIN, int(round((y1 - y0) * _BOX_PAD_FRACTION)))
        x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
        x1, y1 = min(columns, x1 + pad), min(rows, y1 + pad)
        if x1 > x0 and y1 > y0:
            out.add((x0, y0, x1, y1))
    return out


def _ultrasound_keep_mask(ds: Dataset, rows: int, columns: int) -> npt.NDArray[np.bool_] | None:
    """Return the union of the ultrasound regions, or None when they do not fit the frame."""
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions:
        return None
    keep = np.zeros((rows, columns), dtype=bool)
    for region in regions:
        try:
            x0 = int(region.RegionLocationMinX0)
            y0 = int(region.RegionLocationMinY0)
            x1 = int(region.RegionLocationMaxX1)
            y1 = int(region.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            logger.debug("ultrasound region without a usable location; regions not used")
            return None
        # Some devices write a maximum one past the last pixel (OBXXXX1A: 800 of 800
        # columns); a region further out describes another matrix (a resized image).
        slack_x, slack_y = max(2, columns // 100), max(2, rows // 100)
        if not (0 <= x0 <= x1 < columns + slack_x and 0 <= y0 <= y1 < rows + slack_y):
            logger.debug("ultrasound regions do not fit the pixel matrix; regions not used")
            return None
        keep[y0 : y1 + 1, x0 : x1 + 1] = True  # slicing clips to the frame
    return keep


class _Renderer:
    """Turns decoded frames into the 8-bit images a :class:`TextDetector` reads.

    The intensity mapping is fixed from the original frames, so a re-check after masking
    sees the pixels as the first pass did (stretching a masked frame anew would amplify
    the dim texture left once the bright text is gone).
    """

    def __init__(self, ds: Dataset, photometric: str, frames: PixelArray) -> None:
        self._ds = ds
        self._photometric = photometric
        self._low = 0.0
        self._high = 255.0
        if photometric in ("MONOCHROME1", "MONOCHROME2"):
            self._low, self._high = float(frames.min()), float(frames.max())
        elif photometric == "RGB" and frames.dtype != np.uint8:
            self._high = max(255.0, float(frames.max()))
        elif photometric == "PALETTE COLOR":
            self._high = -1.0  # set from the first rendered frame

    def render(self, frame: PixelArray) -> npt.NDArray[np.uint8]:
        data: PixelArray = frame
        if self._photometric == "PALETTE COLOR":
            try:
                data = apply_color_lut(frame, self._ds)
            except Exception as exc:
                raise QuarantineRequired(
                    f"pixel data: the palette colour lookup table cannot be applied "
                    f"({type(exc).__name__}); the instance is held"
                ) from exc
            if self._high < 0:
                self._high = 65535.0 if int(data.max()) > 255 else 255.0
        if data.dtype == np.uint8 and self._low == 0.0 and self._high == 255.0:
            image = np.ascontiguousarray(data)
        elif self._high <= self._low:
            image = np.zeros(data.shape, dtype=np.uint8)
        else:
            scaled = (data.astype(np.float32) - self._low) * (255.0 / (self._high - self._low))
            image = np.ascontiguousarray(np.clip(scaled, 0, 255).astype(np.uint8))
        return 255 - image if self._photometric == "MONOCHROME1" else image

    def distinct(self, frames: PixelArray) -> Iterable[npt.NDArray[np.uint8]]:
        """Yield the rendering of every frame, skipping exact repeats of an earlier frame."""
        seen: set[bytes] = set()
        for frame in frames:
            digest = hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16).digest()
            if digest in seen:
                continue
            seen.add(digest)
            yield self.render(frame)


def _fill_value(ds: Dataset, photometric: str, frames: PixelArray) -> int:
    """The stored value that displays as black."""
    if photometric == "MONOCHROME2":
        return int(frames.min())
    if photometric == "MONOCHROME1":
        return int(frames.max())
    if photometric == "PALETTE COLOR":
        descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
        if descriptor is None or len(descriptor) < 2:
            return 0
        entries = int(descriptor[0]) or 65536
        first = int(descriptor[1])
        info = np.iinfo(frames.dtype)
        start, stop = max(first, int(info.min)), min(first + entries, int(info.max) + 1)
        candidates = np.arange(start, stop).astype(frames.dtype)
        try:
            rgb = np.asarray(apply_color_lut(candidates, ds), dtype=np.float64)
        except Exception:
            return 0
        return int(candidates[int(rgb.reshape(len(candidates), -1).sum(axis=1).argmin())])
    return 0


def _source_is_lossy(ds: Dataset, syntax: UID) -> str | None:
    """Return the lossy compression method of the source, or None if it was lossless."""
    if syntax in _LOSSY_METHODS:
        return _LOSSY_METHODS[syntax]
    if syntax in _J2K_EITHER and _j2k_is_irreversible(ds):
        return "ISO_15444_1" if syntax != "1.2.840.10008.1.2.4.203" else "ISO_15444_15"
    return None


def _j2k_is_irreversible(ds: Dataset) -> bool:
    """Whether the first JPEG 2000 codestream uses the 9-7 irreversible wavelet (COD)."""
    try:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        first = next(generate_frames(ds.PixelData, number_of_frames=n_frames))
    except Exception:
        return False
    at = first.find(b"\xff\x52", 0, 4096)
    # COD: marker(2) Lcod(2) Scod(1) SGcod(4) levels, xcb, ycb, style, transformation
    return at >= 0 and len(first) > at + 13 and first[at + 13] == 0


def _write_native(
    ds: Dataset, frames: PixelArray, image_pixel: dict[str, str | int], source: UID
) -> None:
    """Write ``frames`` as native little-endian Pixel Data and fix the Image Pixel module."""
    bits_allocated = int(image_pixel.get("bits_allocated", ds.get("BitsAllocated", 8)))
    signed = int(image_pixel.get("pixel_representation", 0)) == 1
    samples = int(image_pixel.get("samples_per_pixel", 1) or 1)
    if bits_allocated == 1:
        data = pack_bits(frames.astype(np.uint8).ravel())
    elif bits_allocated in (8, 16, 32):
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
        data = np.ascontiguousarray(frames).astype(dtype, copy=False).tobytes()
    else:
        raise QuarantineRequired(
            f"pixel data: Bits Allocated {bits_allocated} cannot be re-encoded; the instance "
            "is held"
        )
    if len(data) % 2:
        data += b"\x00"

    lossy_method = _source_is_lossy(ds, source)
    if source == ExplicitVRBigEndian:
        _swap_other_words(ds, top_level=True)
    ds.PixelData = data
    elem = ds["PixelData"]
    elem.VR = "OB" if bits_allocated <= 8 else "OW"
    elem.is_undefined_length = False
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
    ds.PhotometricInterpretation = str(image_pixel["photometric_interpretation"])
    if samples > 1:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if lossy_method is not None or str(ds.get("LossyImageCompression", "")) == "01":
        ds.LossyImageCompression = "01"
        if lossy_method is not None and "LossyImageCompressionMethod" not in ds:
            ds.LossyImageCompressionMethod = lossy_method
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


_SWAP_SIZES: Final = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


def _swap_other_words(ds: Dataset, *, top_level: bool = False) -> None:
    """Byte-swap OW/OL/OF/OD/OV values of a big-endian data set about to be little endian.

    pydicom keeps these values as the bytes read and interprets them with the transfer
    syntax, so palette and segmented lookup tables, overlays and icon pixels of an Explicit
    VR Big Endian source would be misread once the syntax says little endian (the segmented
    palette of gdcm-US-ALOKA-16_big failed to expand). Pixel Data itself is rewritten.
    """
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_other_words(item)
            continue
        size = _SWAP_SIZES.get(str(elem.VR))
        if size is None or (top_level and elem.tag == 0x7FE00010):
            continue
        value = elem.value
        if isinstance(value, bytes | bytearray) and value and len(value) % size == 0:
            elem.value = np.frombuffer(value, dtype=f">u{size}").astype(f"<u{size}").tobytes()


__all__ = [
    "Box",
    "TextDetector",
    "apply_pixel_policy",
    "clean_pixel_data",
    "decide_pixel_policy",
    "default_text_detector",
    "has_pixel_data",
    "zero_unused_high_bits",
]

"""OCR text detectors: find burned-in text in one 8-bit rendering of a frame.

:func:`~biobank.deid.pixels.clean_pixel_data` masks what a :class:`TextDetector` finds; this
module holds that protocol and the engines behind it. The engines are imported on first use,
not with this module.

* :class:`RapidOcrTextDetector`: RapidOCR (PP-OCRv4 on ONNX, offline), the default.
* :class:`TesseractTextDetector`: the tesseract binary, the fallback when rapidocr is missing.
* :class:`UnionTextDetector`: the union of several detectors' boxes.
* :func:`default_text_detector`: the shared default, chosen as measured below.

OCR engine: why RapidOCR, measured on this machine
--------------------------------------------------
Debian tesseract 5.3.0 (pytesseract, ``--psm 11`` sparse text) against
``rapidocr-onnxruntime`` 1.4.4 (PP-OCRv4 detection and recognition; the ONNX models ship in
the wheel and run offline; opencv 5.0 imports). First frame rendered to 8 bits; 2 shared
CPUs under load, so seconds vary by +-50%. "PHI read" counts the burned-in name, ID, date,
time and institution strings a reader recovered.

================  =========================  ===========  ==========  ==================
file              tesseract 1x / 2x / 3x     RapidOCR     our         clean_pixel_data,
                  (s; PHI read)              read (s)     detector    PHI readable after
================  =========================  ===========  ==========  ==================
GREYSCALE_IMAGE   2.2 / 2.8 / 3.4; 7/7       3.7; 7/7     2.4 s       2.4 s; none
RGB_IMAGE         3.6 / 3.6 / 3.3; 7/7       2.9; 7/7     2.6 s       1.8 s; none
OBXXXX1A          1.1 / 1.0 / 2.2; 0/4 [1]   1.8; 4/4     1.6 s       2.2 s; none
gdcm-US-ALOKA-16  2.4 / 3.3 / 5.1; 0/3 [2]   1.6; 3/3     1.8 s       1.4 s; none
US1_J2KR          1.7 / 3.7 / 5.1; 2-3/3     2.9; 3/3     2.2 s       1.5 s; none
================  =========================  ===========  ==========  ==================

[1] The Philips banner (date, exam ID, time) is white on blue: tesseract read it only from
a luma grayscale at 1x, lost it at 2x and from a max-of-channels grayscale.
[2] "WESTWAY MEDICAL", "24-MAY-02" and the time were never read (garbled or missed at 1x,
2x, 3x, inverted, page segmentation modes 3, 11 and 12). Sparse modes also box speckle
inside the image as text ("ee", "— = ~"), which masks anatomy and fails the re-check.

RapidOCR read every PHI string on all five files, with recognition scores of 0.94-1.0, in
the time of one tesseract pass; its detector upscales the short side to 736 px, which is
the enlargement small banner fonts need (at 512 px it lost the ALOKA date). It is the
default (:class:`RapidOcrTextDetector`); :class:`TesseractTextDetector` is the fallback
when rapidocr is not installed. Detection runs on every frame, twice (the first pass and
the re-check): about 1 s per 640x480 frame here, so a 120-frame cine takes about 2 minutes
(deid-data ``ultrasound-multiframe.dcm``, 30 frames of 800x600: 29 s).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
"""A text box ``(x0, y0, x1, y1)`` in pixel coordinates of one frame; x1 and y1 exclusive."""


@runtime_checkable
class TextDetector(Protocol):
    """Something that finds text in one frame.

    ``image`` is an 8-bit display rendering of one frame: ``(rows, columns)`` grayscale or
    ``(rows, columns, 3)`` RGB, ``uint8``, bright text on a dark background or the reverse.
    The result lists boxes ``(x0, y0, x1, y1)`` in pixel coordinates of that frame (x1 and
    y1 exclusive). An implementation should favour recall: a masked label costs little,
    a missed name is a breach.
    """

    def detect(self, image: npt.NDArray[np.uint8]) -> list[tuple[int, int, int, int]]:
        """Return the boxes of the text found in ``image``."""
        ...


class RapidOcrTextDetector:
    """Text boxes from RapidOCR (``rapidocr-onnxruntime``, PP-OCRv4, ONNX, offline).

    The DBNet detection network proposes boxes on the whole frame; the recognition network
    then reads each box, which is kept when it reads as at least ``min_chars`` letters or
    digits with a score of at least ``min_text_score`` (see :meth:`_reads_as_text`).
    Identifying text (a name, an ID, a date) has two characters or more and was read at
    0.94-1.0 on every test file. The filter drops what the detector alone mistakes for
    text on moving anatomy over a 120-frame cine, speckle, Doppler blobs and the edges of
    earlier masks: one character, none, or two to eight at scores of 0.25-0.45 ("ie",
    "oG", "eaheg"); without it, residual "text" quarantined real cine loops. What is lost
    are tiny, badly read interface labels ("Ben" at 0.28 on a 320x240 toolbar).
    ``recognize=False`` returns every proposed box.

    Recognition verdicts are cached by a hash of the box's pixels (no text is kept), so the
    static overlay of a cine loop is read once, not once per frame. The engine is built on
    first use; calls are serialised because the engine keeps per-call state.

    Parameters
    ----------
    box_thresh : float
        Minimum mean text probability of a proposed box (RapidOCR's default is 0.5).
    unclip_ratio : float
        How far each detected text kernel is grown into a box.
    min_text_score : float
        Minimum recognition score of a kept box.
    min_chars : int
        Minimum number of letters or digits read in a kept box.
    recognize : bool
        Whether to filter the proposals with the recognition network.
    """

    _CACHE_SIZE: Final = 4096

    def __init__(
        self,
        *,
        box_thresh: float = 0.4,
        unclip_ratio: float = 1.6,
        min_text_score: float = 0.5,
        min_chars: int = 2,
        recognize: bool = True,
    ) -> None:
        self._box_thresh = box_thresh
        self._unclip_ratio = unclip_ratio
        self._min_text_score = min_text_score
        self._min_chars = min_chars
        self._recognize = recognize
        self._engine: Any = None
        self._verdicts: dict[bytes, bool] = {}
        self._lock = threading.Lock()

    def _get_engine(self) -> Any:
        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR  # heavy: loads onnxruntime and cv2

            self._engine = RapidOCR(
                det_box_thresh=self._box_thresh,
                det_unclip_ratio=self._unclip_ratio,
                text_score=0.0,
                print_verbose=False,
            )
        return self._engine

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Box]:
        """Return the boxes of the text found in ``image`` (see :class:`TextDetector`)."""
        rgb = _as_three_channels(image)
        with self._lock:
            engine = self._get_engine()
            result, _ = engine(rgb, use_det=True, use_cls=False, use_rec=False)
            boxes: list[Box] = []
            for quad in result or []:
                points = np.asarray(quad, dtype=np.float32).reshape(4, 2)
                if self._recognize and not self._is_text(rgb, points):
                    continue
                x0, y0 = (max(0, int(v)) for v in np.floor(points.min(axis=0)))
                x1, y1 = (int(v) for v in np.ceil(points.max(axis=0)))
                boxes.append((x0, y0, x1, y1))
        return boxes

    def _is_text(self, rgb: npt.NDArray[np.uint8], points: npt.NDArray[np.float32]) -> bool:
        crop = np.ascontiguousarray(self._engine.get_crop_img_list(rgb, [points])[0])
        if crop.size == 0:
            return False
        digest = hashlib.blake2b(np.asarray(crop.shape, dtype=np.int64).tobytes(), digest_size=16)
        digest.update(crop.data)
        key = digest.digest()
        verdict = self._verdicts.get(key)
        if verdict is None:
            result, _ = self._engine(crop, use_det=False, use_cls=False, use_rec=True)
            text, score = (str(result[0][0]), float(result[0][1])) if result else ("", 0.0)
            verdict = self._reads_as_text(text, score, min(crop.shape[:2]))
            if len(self._verdicts) >= self._CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def _reads_as_text(self, text: str, score: float, height: int) -> bool:
        """Whether a recognition result is text worth masking.

        Latin letters and digits count at ``min_text_score``. The recogniser is trained on
        Chinese as well, and reads speckle as CJK characters at high scores ("电话" at 0.69
        from a 7-pixel blob), so other scripts count only when read with confidence
        (>= 0.8) in a box at least 10 pixels high.
        """
        if score < self._min_text_score:
            return False
        latin = sum(ch.isascii() and ch.isalnum() for ch in text)
        if latin >= self._min_chars:
            return True
        other = sum(not ch.isascii() and ch.isalnum() for ch in text)
        return other > 0 and latin + other >= self._min_chars and score >= 0.8 and height >= 10


class TesseractTextDetector:
    """Word boxes from the tesseract binary (Debian ``tesseract-ocr``) via pytesseract.

    Each frame is reduced to grayscale (luma), stretched to full contrast and read at every
    scale in ``scales`` with every page segmentation mode in ``psms`` (11 is sparse text:
    scattered labels rather than paragraphs). A word counts when it has at least
    ``min_chars`` letters or digits and a confidence of at least ``min_confidence``.
    Tesseract gives real PHI low confidences (11 for "ZZZ TEST" on GREYSCALE_IMAGE) and
    speckle high ones (25-40 for "ee"), so the default keeps every word. Tesseract 5 inverts
    light-on-dark lines itself; an inverted copy read the same words. As the fallback it
    cleaned OBXXXX1A and RGB_IMAGE (4-8 s) but quarantined gdcm-US-ALOKA-16 with residual
    text: expect more quarantines than with RapidOCR.

    Parameters
    ----------
    psms : Sequence[int]
        Tesseract page segmentation modes to run.
    scales : Sequence[int]
        Upscaling factors to read at (1x kept the Philips banner that 2x lost; 2x read part
        of the ALOKA date that 1x missed).
    min_confidence : float
        Minimum tesseract word confidence (0-100).
    min_chars : int
        Minimum number of letters or digits in a word.
    """

    def __init__(
        self,
        *,
        psms: Sequence[int] = (11,),
        scales: Sequence[int] = (1, 2),
        min_confidence: float = 0.0,
        min_chars: int = 2,
    ) -> None:
        self._psms = tuple(psms)
        self._scales = tuple(scales)
        self._min_confidence = min_confidence
        self._min_chars = min_chars

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Box]:
        """Return the boxes of the words found in ``image`` (see :class:`TextDetector`)."""
        import pytesseract
        from PIL import Image

        gray = _as_gray(image)
        low, high = int(gray.min()), int(gray.max())
        if high > low:
            gray = ((gray.astype(np.float32) - low) * (255.0 / (high - low))).astype(np.uint8)
        base = Image.fromarray(gray)
        boxes: set[Box] = set()
        for scale in self._scales:
            size = (base.width * scale, base.height * scale)
            pil = base if scale == 1 else base.resize(size, Image.Resampling.LANCZOS)
            for psm in self._psms:
                data = pytesseract.image_to_data(
                    pil, config=f"--psm {psm}", output_type=pytesseract.Output.DICT
                )
                for i, text in enumerate(data["text"]):
                    if sum(ch.isalnum() for ch in str(text)) < self._min_chars:
                        continue
                    if float(data["conf"][i]) < self._min_confidence:
                        continue
                    x, y = int(data["left"][i]), int(data["top"][i])
                    w, h = int(data["width"][i]), int(data["height"][i])
                    box = (x // scale, y // scale, -(-(x + w) // scale), -(-(y + h) // scale))
                    boxes.add(box)
        return sorted(boxes)


class UnionTextDetector:
    """The union of the boxes of several detectors (more recall, more time)."""

    def __init__(self, detectors: Iterable[TextDetector]) -> None:
        self._detectors = tuple(detectors)

    def detect(self, image: npt.NDArray[np.uint8]) -> list[Box]:
        """Return every box any of the detectors found."""
        boxes: set[Box] = set()
        for detector in self._detectors:
            boxes.update(detector.detect(image))
        return sorted(boxes)


@functools.cache
def default_text_detector() -> TextDetector:
    """Return the shared default detector: RapidOCR, or tesseract if rapidocr is missing.

    See the module docstring for the measurements behind the choice. The engine itself
    loads lazily on the first :meth:`~TextDetector.detect` call.
    """
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        logger.warning(
            "rapidocr-onnxruntime is not installed; pixel cleaning falls back to tesseract, "
            "which misses small banner fonts; install rapidocr-onnxruntime"
        )
        return TesseractTextDetector()
    return RapidOcrTextDetector()


def _as_three_channels(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    return np.ascontiguousarray(image[:, :, :3])


def _as_gray(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    if image.ndim == 2:
        return image
    # ITU-R 601 luma: white text on a blue banner (OBXXXX1A) keeps its contrast, which the
    # maximum over channels loses
    rgb = image[:, :, :3].astype(np.float32)
    luma = rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114
    return np.asarray(np.clip(luma, 0, 255), dtype=np.uint8)


__all__ = [
    "Box",
    "RapidOcrTextDetector",
    "TesseractTextDetector",
    "TextDetector",
    "UnionTextDetector",
    "default_text_detector",
]

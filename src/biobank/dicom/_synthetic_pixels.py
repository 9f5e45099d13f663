"""Pixel phantoms of the synthetic corpus: ellipses painted slice by slice, with noise.

Part of :mod:`biobank.dicom.synthetic`: a thorax phantom for CT (in HU) and a head phantom
for MR, cheap enough for corpora of thousands of slices.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# (centre x, centre y, semi-axis x, semi-axis y, value, z half-extent) in a [-1, 1] field;
# later ellipses are painted over earlier ones. An ellipse shrinks like an ellipsoid with z.
_Ellipse = tuple[float, float, float, float, int, float]
CT_PHANTOM: tuple[_Ellipse, ...] = (
    (0.0, 0.05, 0.80, 0.58, 40, 9.0),  # body, soft tissue (HU)
    (0.0, 0.90, 0.95, 0.03, 300, 9.0),  # table
    (-0.38, 0.0, 0.27, 0.40, -850, 1.1),  # right lung
    (0.38, 0.0, 0.27, 0.40, -850, 1.1),  # left lung
    (0.08, 0.12, 0.22, 0.18, 45, 0.7),  # heart
    (-0.05, 0.30, 0.06, 0.06, 180, 9.0),  # aorta with contrast
    (0.0, 0.46, 0.10, 0.09, 700, 9.0),  # vertebral body
    (0.0, 0.46, 0.06, 0.055, 250, 9.0),  # marrow
    (0.30, -0.10, 0.035, 0.035, 20, 0.15),  # lung nodule
)
MR_PHANTOM: tuple[_Ellipse, ...] = (
    (0.0, 0.0, 0.78, 0.92, 1400, 1.3),  # scalp fat
    (0.0, 0.0, 0.72, 0.86, 120, 1.25),  # skull
    (0.0, 0.0, 0.68, 0.82, 1900, 1.2),  # CSF
    (0.0, 0.0, 0.65, 0.78, 900, 1.15),  # grey matter
    (0.0, 0.02, 0.50, 0.62, 1150, 0.95),  # white matter
    (-0.12, -0.05, 0.07, 0.22, 1900, 0.45),  # right ventricle
    (0.12, -0.05, 0.07, 0.22, 1900, 0.45),  # left ventricle
    (0.30, 0.30, 0.05, 0.05, 1700, 0.2),  # lesion
)
_NOISE_MARGIN = 32


class Phantom:
    """Precomputed ellipse maps and a noise pool for one series."""

    def __init__(
        self,
        ellipses: tuple[_Ellipse, ...],
        rows: int,
        cols: int,
        background: int,
        noise_sigma: float,
        rng: np.random.Generator,
    ) -> None:
        y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, np.newaxis]
        x = np.linspace(-1.0, 1.0, cols, dtype=np.float32)[np.newaxis, :]
        self.maps = [
            (((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2, value, extent)
            for cx, cy, ax, ay, value, extent in ellipses
        ]
        self.rows, self.cols, self.background = rows, cols, background
        pool = rng.normal(0.0, noise_sigma, (rows + _NOISE_MARGIN, cols + _NOISE_MARGIN))
        self.noise = pool.astype(np.int16)

    def slice(self, t: float, i: int) -> npt.NDArray[np.int16]:
        """Return the phantom at relative position ``t`` in [-1, 1] plus noise window ``i``."""
        img = np.full((self.rows, self.cols), self.background, dtype=np.int16)
        for r2, value, extent in self.maps:
            s2 = 1.0 - (t / extent) ** 2
            if s2 > 0.0:
                np.putmask(img, r2 <= s2, value)
        r0, c0 = divmod(i % (_NOISE_MARGIN * _NOISE_MARGIN), _NOISE_MARGIN)
        img += self.noise[r0 : r0 + self.rows, c0 : c0 + self.cols]
        return img


__all__ = ["CT_PHANTOM", "MR_PHANTOM", "Phantom"]

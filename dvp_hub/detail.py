"""How much of the real footage's fine detail a face carries, in ways a sharpening filter cannot fake alone.

- `band_energy`: the energy of a mid-frequency band (difference of Gaussians, sigma 1 and 2.5) over the
  face box, the box scaled to `FACE_WIDTH` px wide so that faces of any size compare; `laplacian_energy`: the
  finest band (variance of the Laplacian) the same way. A ratio to the real footage's energy says how much
  detail there is, not whether it is the right detail.
- `band_error`: the RMS difference of the mid band between a generated and a real frame of the same moment
  (held-out self-reenactment). A blur scores the real band's own RMS; a sharpened blur scores worse; only
  detail in the right place scores better.
"""

from __future__ import annotations

import cv2
import numpy as np

FACE_WIDTH = 192  # px: both sides' faces are scaled to this width before measuring
SIGMAS = (1.0, 2.5)


def face_patch(image: np.ndarray, box) -> np.ndarray:
    """Grey float32 face region of ``image`` (``H x W x 3`` uint8) inside ``box`` (x0, y0, x1, y1), scaled to
    `FACE_WIDTH` px wide (area when shrinking, cubic when enlarging)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise ValueError(f"face box {box} is empty in a {w}x{h} image")
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    s = FACE_WIDTH / (x1 - x0)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    return cv2.resize(grey, (FACE_WIDTH, max(8, int(round((y1 - y0) * s)))), interpolation=interp)


def mid_band(patch: np.ndarray) -> np.ndarray:
    """The difference of Gaussians (`SIGMAS`) of a grey patch."""
    a, b = (cv2.GaussianBlur(patch, (0, 0), s) for s in SIGMAS)
    return a - b


def band_energy(image: np.ndarray, box) -> float:
    """Mean squared mid band over the face box (grey levels squared)."""
    return float(np.mean(mid_band(face_patch(image, box)) ** 2))


def laplacian_energy(image: np.ndarray, box) -> float:
    """Variance of the Laplacian over the face box: the finest band."""
    return float(cv2.Laplacian(face_patch(image, box), cv2.CV_32F).var())


def band_error(fake: np.ndarray, real: np.ndarray, box) -> float:
    """RMS difference of the mid band of two frames of the same moment over the same face box."""
    return float(np.sqrt(np.mean((mid_band(face_patch(fake, box)) - mid_band(face_patch(real, box))) ** 2)))


def band_rms(image: np.ndarray, box) -> float:
    """RMS of the mid band over the face box: the `band_error` of a face that has no mid band at all."""
    return float(np.sqrt(np.mean(mid_band(face_patch(image, box)) ** 2)))


def detail_ratios(fakes, fake_boxes, reals, real_boxes) -> dict:
    """Mean mid-band and finest-band energy of the generated faces over that of the real faces.

    The two sets need not be the same frames (driven output against the target's own footage): each side's
    energies are averaged over its frames first.
    """
    fb = [band_energy(f, b) for f, b in zip(fakes, fake_boxes)]
    rb = [band_energy(r, b) for r, b in zip(reals, real_boxes)]
    fl = [laplacian_energy(f, b) for f, b in zip(fakes, fake_boxes)]
    rl = [laplacian_energy(r, b) for r, b in zip(reals, real_boxes)]
    return {
        "detail_mid_band": float(np.mean(fb) / max(np.mean(rb), 1e-9)),
        "detail_finest_band": float(np.mean(fl) / max(np.mean(rl), 1e-9)),
    }

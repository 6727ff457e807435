"""An invisible watermark on every generated frame, made to survive what happens to videos online.

Scheme (a spread-spectrum mark in the Haar low band, in the spirit of the DWT-DCT marks of
`invisible-watermark`, but built to survive crops and resizes, which those do not):

- The key is a pseudo-random +-1 pattern of ``TILE x TILE`` cells drawn from the payload string
  ``dvp_hub/<version>`` (`PAYLOAD`): the payload is what the key says, and a detector that knows the
  versions reads it back by finding which key is present.
- Embedding adds ``STRENGTH`` grey levels times the pattern to the luma of ``CELL x CELL`` pixel cells
  (the low band of a two-level Haar transform), tiled over the whole frame: the same change on R, G
  and B, so a conversion to grey keeps it; RMS change 2 grey levels, about 42 dB PSNR.
- Detection takes the luma's cell means (the same low band), removes the picture's own low
  frequencies (cell minus its 3 x 3 neighbourhood mean), folds the cells onto one tile (sum modulo
  ``TILE``) and cross-correlates the fold with the pattern over every circular shift with an FFT: a
  crop is only a shift of the tiling, so a crop that removes any corner keeps the mark. Half-size and
  other downscales are undone by trying the frame upscaled (`SCALES`), and cell-grid offsets by trying
  two offsets per axis. The score is the correlation peak in standard deviations of all the other
  shifts; a frame is marked when it exceeds `THRESHOLD`.

A numpy/OpenCV implementation (OpenCV comes with mediapipe): `invisible-watermark` needs
``opencv-python``, which conflicts with mediapipe's ``opencv-contrib-python``, and its DWT-DCT marks
do not survive a resize or a crop.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

VERSION = 1
PAYLOAD = f"dvp_hub/{VERSION}"
KNOWN_PAYLOADS = (PAYLOAD,)
CELL = 4  # pixels per cell side
TILE = 32  # cells per tile side: the pattern repeats every 128 pixels
STRENGTH = 2.0  # grey levels
SCALES = (1.0, 2.0, 1.5)  # detection tries the frame at these upscales (2.0 undoes a half-size resize)
THRESHOLD = 6.0  # correlation peak, in standard deviations of the other shifts


@lru_cache(maxsize=4)
def pattern(payload: str = PAYLOAD) -> np.ndarray:
    """The ``TILE x TILE`` +-1 key of a payload."""
    seed = int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).choice(np.array([-1.0, 1.0], np.float32), size=(TILE, TILE))


STEP = int(STRENGTH)  # the mark is a whole number of grey levels, so embedding is a saturating uint8 add
assert STEP == STRENGTH


@lru_cache(maxsize=4)
def _planes(height: int, width: int, payload: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The mark for a frame size as two ``H x W x channels`` uint8 planes, ``(up, down)``: ``STEP`` where the tiled
    pattern (each cell ``CELL`` pixels) is +1, resp. -1, else 0."""
    cells = np.kron(pattern(payload), np.ones((CELL, CELL), np.float32))
    reps = (-(-height // cells.shape[0]), -(-width // cells.shape[1]))
    signs = np.tile(cells, reps)[:height, :width, None]
    up = np.repeat((signs > 0).astype(np.uint8) * STEP, channels, axis=2)
    return up, np.ascontiguousarray(STEP - up)


def embed(frame: np.ndarray, payload: str = PAYLOAD, within: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A new ``frame`` (H x W x 3 uint8 RGB; H x W x 4 keeps its alpha unmarked) with the mark added to its luma:
    ``STEP`` grey levels up or down, the same on R, G and B, clipped to [0, 255] (OpenCV's saturating uint8 add
    and subtract). ``within``: ``frame`` is the window ``(x0, y0, W, H)`` of a ``W x H`` frame, and gets that
    frame's mark there (the mark is per pixel: marking windows and joining them marks the whole)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"embed takes H x W x 3 (or x 4) uint8 frames, got {frame.dtype} {frame.shape}")
    if frame.shape[2] == 4:
        out = frame.copy()
        out[..., :3] = embed(frame[..., :3], payload, within)
        return out
    frame = np.ascontiguousarray(frame)
    h, w = frame.shape[:2]
    x0, y0, width, height = within if within is not None else (0, 0, w, h)
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(f"a {w}x{h} window at ({x0}, {y0}) does not fit in a {width}x{height} frame")
    up, down = _planes(height, width, payload, 3)
    return cv2.subtract(cv2.add(frame, up[y0 : y0 + h, x0 : x0 + w]), down[y0 : y0 + h, x0 : x0 + w])


@dataclass
class Detection:
    detected: bool
    score: float  # correlation peak in standard deviations
    payload: str | None


def _luma(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame, np.float32)
    if f.ndim == 2:
        return f
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def _cell_means(y: np.ndarray, oy: int, ox: int) -> np.ndarray:
    y = y[oy:, ox:]
    h, w = (y.shape[0] // CELL) * CELL, (y.shape[1] // CELL) * CELL
    return y[:h, :w].reshape(h // CELL, CELL, w // CELL, CELL).mean(axis=(1, 3))


def _highpass(c: np.ndarray, whiten: bool = False) -> np.ndarray:
    """Cells minus their 3 x 3 neighbourhood mean; ``whiten`` also divides by the local spread, so that
    edges and texture (where the picture itself varies most) weigh less than smooth skin and background."""
    c = c.astype(np.float32)
    d = c - cv2.blur(c, (3, 3), borderType=cv2.BORDER_REFLECT)
    if not whiten:
        return d
    spread = np.sqrt(np.maximum(cv2.blur(d * d, (5, 5), borderType=cv2.BORDER_REFLECT), 0))
    return d / (spread + STRENGTH)


@lru_cache(maxsize=4)
def _key_spectrum(payload: str) -> np.ndarray:
    p = pattern(payload)
    k = _highpass(p.astype(np.float32))
    return np.conj(np.fft.rfft2(k))


def _fold(c: np.ndarray) -> np.ndarray:
    h, w = c.shape
    ii = (np.arange(h) % TILE)[:, None] * TILE + (np.arange(w) % TILE)[None, :]
    return np.bincount(ii.ravel(), weights=c.ravel(), minlength=TILE * TILE).reshape(TILE, TILE)


def _folds(frame: np.ndarray):
    """The whitened cell folds of a frame for every (scale, cell offset) the detector tries."""
    y0 = _luma(frame)
    out = {}
    for scale in SCALES:
        y = y0 if scale == 1.0 else cv2.resize(y0, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        if min(y.shape) < CELL * 8:
            continue
        for oy in (0, CELL // 2):
            for ox in (0, CELL // 2):
                out[(scale, oy, ox)] = _fold(_highpass(_cell_means(y, oy, ox), whiten=True))
    return out


def _best(folds: dict, payloads) -> Detection:
    best = Detection(False, 0.0, None)
    for fold in folds.values():
        spec = np.fft.rfft2(fold)
        for payload in payloads:
            corr = np.fft.irfft2(spec * _key_spectrum(payload), s=(TILE, TILE)).ravel()
            i = int(np.argmax(corr))
            rest = np.delete(corr, i)
            score = float((corr[i] - rest.mean()) / (rest.std() + 1e-9))
            if score > best.score:
                best = Detection(score > THRESHOLD, score, payload if score > THRESHOLD else None)
    return best


def detect(frame: np.ndarray, payloads=KNOWN_PAYLOADS) -> Detection:
    """Whether one frame (H x W x 3 or H x W, uint8) carries the mark, its score and payload."""
    return _best(_folds(frame), payloads)


def detect_clip(frames, payloads=KNOWN_PAYLOADS) -> Detection:
    """One decision for several frames of the same video: their folds are summed before correlating (an
    edit crops and resizes every frame alike), so the score grows with the square root of the frame count:
    small or heavily re-encoded videos where single frames fall short are still recognised."""
    total: dict = {}
    for frame in frames:
        for k, fold in _folds(frame).items():
            total[k] = total.get(k, 0) + fold
    return _best(total, payloads)

"""Paste-back: the generated crop composited into the target's full frame at its native size.

The person (head, hair, neck, torso) comes from the generated crop; the background from the target's
real reference frame, which is sharper than any generated background and never moves. The mask is the
union of a person segmentation of the generated crop and of the reference frame's crop (so the real
head of the reference never shows beside the generated one), widened a little, feathered, smoothed over
time and faded to zero at the crop's edge. The generated pixels are shifted in colour by the mean
difference between the generated and the real background just outside the person, so that the edge of
the mask does not show as a change of tone.

Below the jaw the reference frame is kept too (neck, collar, shirt, shoulders), blended over `TORSO_RAMP` of the
crop under the rendered face's lower edge: a person-specific generator driven by a mouth or a jaw its target never
made paints skin over the collar beneath it, and a speaker's torso barely moves while the head does. Where the
head is higher than the reference's, the reference's neck is stretched up to meet the generated jaw (`Torso`):
under a raised chin the generator paints its collar, a white blob, where the neck should be.

The person mask is mediapipe's selfie segmentation, which ships inside the pinned wheel.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import cv2
import numpy as np

from ..face.tracker import _QuietGraph, import_mediapipe
from ..logs import native_stderr_silenced
from .crop import Crop

SEGMENT_SIZE = 256  # the segmenter's input side (its general model's own size)
MAX_COLOUR_SHIFT = 16.0  # grey levels: a larger background difference is a wrong mask, not a colour cast
COLOUR_SIZE = 128  # the colour shift is a mean over the background, estimated on the crop at this side
TORSO_RAMP = 1 / 32  # of the crop's side: from the jaw down over this much, the generated pixels fade out
NECK_SPAN = 1 / 8  # of the crop's side: a lifted neck eases from this far above the jaw to this far below the lift


class Torso(NamedTuple):
    """Where paste-back keeps the reference frame's torso in one frame, in the crop's pixels.

    ``jaw``: ``[size]``, for each column the row where the reference frame takes over from the generated crop
    (fading in over `TORSO_RAMP` below it).
    ``lift``: ``[size]`` >= 0 or None, for each column how far the reference's rows are pulled up at that row: its
    neck is stretched to meet a generated jaw higher than its own, the shift easing to 0 `NECK_SPAN` of the crop
    above ``jaw`` and `NECK_SPAN` below ``jaw + lift`` (and at the crop's last row), so the reference never tears.
    """

    jaw: np.ndarray
    lift: np.ndarray | None = None


class PersonSegmenter:
    """``H x W x 3`` uint8 RGB -> person probability ``SEGMENT_SIZE`` px square, float32 in [0, 1] (thread-safe)."""

    def __init__(self):
        with native_stderr_silenced():
            mp = import_mediapipe()
        self._seg = _QuietGraph(mp.solutions.selfie_segmentation.SelfieSegmentation, model_selection=0)
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The mask at `SEGMENT_SIZE` px (callers resize it once, after their own filtering)."""
        small = cv2.resize(image, (SEGMENT_SIZE, SEGMENT_SIZE), interpolation=cv2.INTER_AREA)
        with self._lock:
            mask = self._seg.process(np.ascontiguousarray(small)).segmentation_mask
        return np.zeros((SEGMENT_SIZE, SEGMENT_SIZE), np.float32) if mask is None else mask.astype(np.float32)

    def close(self) -> None:
        self._seg.close()


def square_ramp(n: int, feather: float) -> np.ndarray:
    """``n x n`` weights: 1 inside, falling linearly to 0 over ``feather * n`` px at the square's edge."""
    ramp = np.clip(np.minimum(np.arange(n), np.arange(n)[::-1]) / max(feather * n, 1.0), 0, 1).astype(np.float32)
    return np.minimum(ramp[:, None], ramp[None, :])


class Compositor:
    """Generated crops (``size x size x 3`` uint8) -> the target's full frames (the reference's size).

    Args:
        background: the target's reference frame, ``H x W x 3`` uint8 at its native size.
        crop: the target's crop in that frame's pixels.
        size: the side of the crops that will be pasted (the generator's or the refiner's output).
        person_mask: composite by person mask (True) or by the crop's feathered square alone (False, the
            older paste-back; also the fallback where the segmenter finds no person).
        smooth: weight of the previous frame's mask in each frame's (0: none); call `reset` between clips.

    Guarantees: the output is the background outside the crop's square (inside it, a `Torso`'s lift may move
    the background's rows), the same size and dtype, and a pixel's weight changes continuously from the
    background to the generated crop.
    """

    def __init__(self, background, crop: Crop, size: int, person_mask=True, feather=0.06, widen=0.03, smooth=0.5):
        self.rows = np.arange(int(size), dtype=np.float32)
        self.background = np.ascontiguousarray(background)
        self.crop, self.size, self.smooth = crop, int(size), float(smooth)
        h, w = self.background.shape[:2]
        self.roi = (
            max(0, int(np.floor(crop.x0))),
            max(0, int(np.floor(crop.y0))),
            min(w, int(np.ceil(crop.x0 + crop.size))),
            min(h, int(np.ceil(crop.y0 + crop.size))),
        )
        x0, y0, x1, y1 = self.roi
        inv = cv2.invertAffineTransform(crop.matrix(self.size))
        inv[:, 2] -= (x0, y0)
        self.to_roi = inv
        self.square = square_ramp(self.size, feather)
        self.widen = max(1, int(round(widen * SEGMENT_SIZE)))  # at the segmenter's size
        self.segmenter = PersonSegmenter() if person_mask else None
        ref = crop.apply(self.background, self.size)  # the reference frame in the crop, cut once
        small = (COLOUR_SIZE, COLOUR_SIZE)
        self.ref_small = cv2.resize(ref, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        self.square_small = cv2.resize(self.square, small, interpolation=cv2.INTER_AREA)
        self.ref_mask = self.segmenter(ref) if self.segmenter else None
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous frame's mask (a new clip starts)."""
        self._previous = None

    def mask(self, image: np.ndarray) -> np.ndarray:
        """The blend weight of each crop pixel, ``size x size`` float32 in [0, 1]."""
        if self.segmenter is None:
            return self.square
        person = self.segmenter(image)
        if person.max() < 0.5:  # no person found: the square alone
            return self.square
        m = np.maximum(person, self.ref_mask)
        k = 2 * self.widen + 1
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        m = cv2.GaussianBlur(m, (0, 0), self.widen)
        if self._previous is not None and self.smooth > 0:
            m = (1 - self.smooth) * m + self.smooth * self._previous
        self._previous = m
        return cv2.resize(m, (self.size, self.size), interpolation=cv2.INTER_LINEAR) * self.square

    def colour_shift(self, image: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Per-channel mean of (real - generated) over the background inside the square, clipped (a mean: taken on
        the crop, its mask and the reference at `COLOUR_SIZE` px)."""
        small = (COLOUR_SIZE, COLOUR_SIZE)
        bg = (cv2.resize(m, small, interpolation=cv2.INTER_AREA) < 0.02) & (self.square_small > 0.99)
        if bg.sum() < 100 * (COLOUR_SIZE / self.size) ** 2:  # 100 pixels of the crop
            return np.zeros(3, np.float32)
        diff = self.ref_small[bg] - cv2.resize(image, small, interpolation=cv2.INTER_AREA)[bg].astype(np.float32)
        return np.clip(diff.mean(0), -MAX_COLOUR_SHIFT, MAX_COLOUR_SHIFT).astype(np.float32)

    def torso_weight(self, jaw: np.ndarray, top: int = 0) -> np.ndarray:
        """``(size - top) x size``, rows ``top:`` of the weight that is 1 down to row ``jaw[x]`` of each column x
        and falls linearly to 0 over `TORSO_RAMP` of the crop below it."""
        return np.clip(1 - (self.rows[top:, None] - jaw[None, :]) / (TORSO_RAMP * self.size), 0, 1)

    def _lifted(self, torso: Torso) -> tuple[int, np.ndarray] | None:
        """Rows ``r0:r1`` of the reference frame's part of the crop's region (frame pixels) with its neck pulled up
        by ``torso.lift`` (`Torso`), and r0; None where nothing is lifted by a pixel or more."""
        if torso.lift is None or torso.lift.max() * self.crop.size / self.size < 1:
            return None
        x0, y0, x1, y1 = self.roi
        s = self.crop.size / self.size  # frame pixels per crop pixel
        cols = (np.arange(x0, x1) - self.crop.x0) / s  # each region column in crop pixels, as `Crop.matrix` maps
        on = np.arange(self.size, dtype=np.float32)
        jaw = (np.interp(cols, on, torso.jaw) * s + self.crop.y0 - y0).astype(np.float32)  # region rows
        lift = (np.interp(cols, on, torso.lift) * s).astype(np.float32)
        span, last = NECK_SPAN * self.crop.size, y1 - y0 - 1
        bottom = np.minimum(jaw + lift + span, last)  # no shift at the region's last row: nothing below it moves
        r0, r1 = int(max(0, np.floor(jaw.min() - span))), int(min(last, np.ceil(bottom.max()))) + 1
        if r1 <= r0:
            return None
        rows = np.arange(r0, r1, dtype=np.float32)[:, None]
        above, below = (rows - (jaw - span)) / span, (bottom - rows) / np.maximum(bottom - jaw, 1.0)
        map_y = rows + lift * np.clip(np.minimum(above, below), 0, 1)  # a tent peaking at the jaw
        map_x = np.broadcast_to(np.arange(x1 - x0, dtype=np.float32), map_y.shape)
        region = self.background[y0:y1, x0:x1]
        return r0, cv2.remap(region, np.ascontiguousarray(map_x), map_y, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)

    def __call__(self, image: np.ndarray, torso: Torso | None = None) -> np.ndarray:
        """One ``size x size x 3`` crop -> the full frame. ``torso``: below its jaw the reference frame's torso is
        kept, its neck stretched by its lift (`Torso`; `finish.torso_line` makes one from the face rendered for this
        frame); None: the generated torso, as where no face was rendered."""
        if image.shape[:2] != (self.size, self.size):
            raise ValueError(f"expected a {self.size} px crop, got {image.shape[1]}x{image.shape[0]}")
        m = self.mask(image)
        lifted = None
        if torso is not None:
            jaw = np.asarray(torso.jaw, np.float32)
            top = int(np.clip(np.floor(jaw.min()), 0, self.size))  # above the jaw's highest point: all 1
            m = m.copy() if m is self.square else m
            m[top:] *= self.torso_weight(jaw, top)
            lifted = self._lifted(torso)
        if self.segmenter:  # OpenCV's uint8 arithmetic saturates and rounds, as the float round trip would
            image = cv2.add(np.ascontiguousarray(image), (*map(float, self.colour_shift(image, m)), 0.0))
        x0, y0, x1, y1 = self.roi
        size = (x1 - x0, y1 - y0)
        warped = cv2.warpAffine(image, self.to_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        weight = cv2.warpAffine(m, self.to_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        out = self.background.copy()
        if lifted is not None:
            out[y0 + lifted[0] : y0 + lifted[0] + len(lifted[1]), x0:x1] = lifted[1]
        region = np.ascontiguousarray(out[y0:y1, x0:x1])
        out[y0:y1, x0:x1] = cv2.blendLinear(warped, region, weight, 1.0 - weight)
        return out

    def close(self) -> None:
        if self.segmenter is not None:
            self.segmenter.close()

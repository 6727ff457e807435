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
MASK_SIZE = 128  # the person mask is widened, feathered, smoothed and colour-matched at this side
CLIP_SEGMENT_EVERY = 2  # a clip's frames are segmented every this many (`Compositor`'s ``every``)
MAX_COLOUR_SHIFT = 16.0  # grey levels: a larger background difference is a wrong mask, not a colour cast
TORSO_RAMP = 1 / 32  # of the crop's side: from the jaw down over this much, the generated pixels fade out
NECK_SPAN = 1 / 8  # of the crop's side: a lifted neck eases from this far above the jaw to this far below the lift


class ScaledResize:
    """An axis-aligned affine map (``x_src = scale * x + offset``, the same scale on both axes, source pixel centres
    at integers, borders replicated) as one `cv2.resize` where that lands within `TOLERANCE` source pixel of
    `cv2.warpAffine`, a tenth of the warp's time for a smooth mask enlarged to a paste-back region; the warp itself
    elsewhere. ``cv2.resize(fx=1 / scale)`` keeps the exact scale but puts output pixel ``n`` at
    ``(n + 0.5) * scale - 0.5``: the source is padded and cut at an integer ``p``, the output at an integer ``n``,
    the pair among `TRIES` whose offset comes nearest (a scale such as 1/2 offers only a few offsets: the warp)."""

    TRIES = 64
    TOLERANCE = 1 / 50  # source pixels; the warp rounds positions to 1/32

    def __init__(self, scale: float, offset: tuple[float, float], out_size: tuple[int, int]):
        self.scale, self.offset, self.out_size = float(scale), offset, out_size
        n = np.arange(self.TRIES) + max(0, int(np.ceil(0.5 / self.scale - 0.5)))  # no output pixel before the cut
        self.pad, self.cut, error = [], [], 0.0
        for off in offset:
            pad = int(np.ceil(abs(off) + (n[-1] + 1) * self.scale)) + 2  # the cut p >= 0 for every n tried
            need = off + pad - (n + 0.5) * self.scale + 0.5  # the source start each output start n would need
            miss = np.abs(need - np.round(need))
            k = int(np.argmin(miss))
            self.pad.append(pad)
            self.cut.append((int(np.round(need[k])), int(n[k])))
            error = max(error, float(miss[k]))
        self.resizes = error <= self.TOLERANCE

    def __call__(self, src: np.ndarray) -> np.ndarray:
        w, h = self.out_size
        if not self.resizes:
            m = np.float32([[self.scale, 0, self.offset[0]], [0, self.scale, self.offset[1]]])
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            return cv2.warpAffine(src, m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        (px, nx), (py, ny) = self.cut
        # the far sides padded past the last output pixel's source position (the resize clamps there)
        far = [
            max(pad, int(np.ceil(self.scale * (size - 1) + off - (length - 1))) + 2)
            for pad, off, size, length in zip(self.pad, self.offset, (w, h), (src.shape[1], src.shape[0]))
        ]
        padded = cv2.copyMakeBorder(src, self.pad[1], far[1], self.pad[0], far[0], cv2.BORDER_REPLICATE)
        out = cv2.resize(padded[py:, px:], None, fx=1 / self.scale, fy=1 / self.scale, interpolation=cv2.INTER_LINEAR)
        return out[ny : ny + h, nx : nx + w]


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
        every: segment every this many frames of a clip and reuse the segmentation in between (the first frame after
            `reset` is always segmented; 1: every frame, for frames that are not consecutive). The mask is the union with the reference's, widened and feathered: one
            frame old, it differs from the frame's own only at the person's edge.

    Guarantees: the output is the background outside the crop's square (inside it, a `Torso`'s lift may move
    the background's rows), the same size and dtype, and a pixel's weight changes continuously from the
    background to the generated crop.

    Cost: the blend weight is made where it is used, in the frame's pixels of the crop's region: the person mask is
    widened, feathered and smoothed at `MASK_SIZE` px (it is smooth there: blurred by ``widen``) and reaches the
    region in one resize (`ScaledResize`); the square's ramp is warped once; a `Torso`'s ramp is evaluated at each region pixel.
    """

    def __init__(
        self, background, crop: Crop, size: int, person_mask=True, feather=0.06, widen=0.03, smooth=0.5, every=1
    ):
        self.background = np.ascontiguousarray(background)
        self.every = int(every)
        self.crop, self.size, self.smooth = crop, int(size), float(smooth)
        h, w = self.background.shape[:2]
        self.roi = (
            max(0, int(np.floor(crop.x0))),
            max(0, int(np.floor(crop.y0))),
            min(w, int(np.ceil(crop.x0 + crop.size))),
            min(h, int(np.ceil(crop.y0 + crop.size))),
        )
        x0, y0, x1, y1 = self.roi
        self.region = (x1 - x0, y1 - y0)
        inv = cv2.invertAffineTransform(crop.matrix(self.size))
        inv[:, 2] -= (x0, y0)
        self.to_roi = inv
        s = self.size / crop.size  # crop pixels per frame pixel
        self.cols = ((np.arange(x0, x1) - crop.x0) * s).astype(np.float32)  # each region column in crop pixels
        self.rows = ((np.arange(y0, y1) - crop.y0) * s).astype(np.float32)  # each region row in crop pixels
        # region pixel -> `MASK_SIZE` mask pixel (OpenCV's resize samples pixel centres: x_m = (x + 0.5) k - 0.5)
        k = MASK_SIZE / self.size
        tx, ty = ((s * (x0 - crop.x0) + 0.5) * k - 0.5, (s * (y0 - crop.y0) + 0.5) * k - 0.5)
        self.mask_to_roi = ScaledResize(s * k, (tx, ty), self.region)
        self.mask_grid = ((np.arange(MASK_SIZE) + 0.5) / k - 0.5).astype(np.float32)  # mask pixels in crop pixels
        square = square_ramp(self.size, feather)
        self.square_roi = self._warp(square, self.to_roi, cv2.BORDER_CONSTANT, inverse=False)
        self.square_small = cv2.resize(square, (MASK_SIZE, MASK_SIZE), interpolation=cv2.INTER_AREA)
        self.widen = max(1, round(widen * MASK_SIZE))  # at the mask's size
        self.segmenter = PersonSegmenter() if person_mask else None
        ref = crop.apply(self.background, self.size)  # the reference frame in the crop, cut once
        small = (MASK_SIZE, MASK_SIZE)
        self.ref_small = cv2.resize(ref, small, interpolation=cv2.INTER_AREA).astype(np.float32)
        self.ref_mask = self._small(self.segmenter(ref)) if self.segmenter else None
        self._previous: np.ndarray | None = None
        self._person: np.ndarray | None = None  # the last segmentation, and frames since it
        self._since = 0

    def reset(self) -> None:
        """Forget the previous frame's mask (a new clip starts)."""
        self._previous = self._person = None

    @staticmethod
    def _small(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask, (MASK_SIZE, MASK_SIZE), interpolation=cv2.INTER_AREA)

    def _warp(self, image: np.ndarray, matrix: np.ndarray, border: int, inverse: bool = True) -> np.ndarray:
        """``image`` into the crop's region of the frame; ``matrix`` maps region pixels to ``image``'s (``inverse``)
        or back."""
        flags = cv2.INTER_LINEAR | (cv2.WARP_INVERSE_MAP if inverse else 0)
        return cv2.warpAffine(image, matrix, self.region, flags=flags, borderMode=border)

    def person(self, image: np.ndarray) -> np.ndarray | None:
        """The person's blend weight ``MASK_SIZE`` px square, float32 in [0, 1]: the union of the crop's and the
        reference's person masks, widened, feathered and smoothed over time; None: the square alone (no segmenter,
        or no person found)."""
        if self.segmenter is None:
            return None
        person = self._person  # read once: a `reset` from another thread may clear it meanwhile
        if person is None or self._since >= self.every:
            person, self._since = self.segmenter(image), 0
            self._person = person
        self._since += 1
        if person.max() < 0.5:  # no person found: the square alone
            return None
        m = np.maximum(self._small(person), self.ref_mask)
        k = 2 * self.widen + 1
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        m = cv2.GaussianBlur(m, (0, 0), self.widen)
        if self._previous is not None and self.smooth > 0:
            m = (1 - self.smooth) * m + self.smooth * self._previous
        self._previous = m
        return m

    def colour_shift(self, image: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Per-channel mean of (real - generated) over the background inside the square (``m``: the crop's blend
        weight at `MASK_SIZE` px, below 0.02 there), clipped."""
        bg = (m < 0.02) & (self.square_small > 0.99)
        if bg.sum() < 100 * (MASK_SIZE / self.size) ** 2:  # 100 pixels of the crop
            return np.zeros(3, np.float32)
        small = cv2.resize(image, (MASK_SIZE, MASK_SIZE), interpolation=cv2.INTER_AREA)
        diff = self.ref_small[bg] - small[bg].astype(np.float32)
        return np.clip(diff.mean(0), -MAX_COLOUR_SHIFT, MAX_COLOUR_SHIFT).astype(np.float32)

    def torso_weight(self, jaw: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``len(rows) x len(cols)``: at crop coordinates ``rows`` x ``cols``, the weight that is 1 down to the jaw
        (``jaw[x]`` at each crop column x, interpolated) and falls linearly to 0 over `TORSO_RAMP` of the crop below."""
        line = np.interp(cols, np.arange(self.size, dtype=np.float32), jaw).astype(np.float32)
        return np.clip(1 - (rows[:, None] - line[None, :]) / np.float32(TORSO_RAMP * self.size), 0, 1)

    def weights(self, image: np.ndarray, torso: Torso | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(weight of the crop in the region, H x W float32; the same at `MASK_SIZE` px in the crop, or None without
        a segmenter)`` for one crop."""
        person = self.person(image)
        if person is None:
            weight, small = self.square_roi.copy(), self.square_small.copy()
        else:
            weight = self.mask_to_roi(person) * self.square_roi
            small = person * self.square_small
        if torso is not None:
            jaw = np.asarray(torso.jaw, np.float32)
            top = int(np.searchsorted(self.rows, np.floor(jaw.min())))  # above the jaw's highest point: all 1
            weight[top:] *= self.torso_weight(jaw, self.rows[top:], self.cols)
            small *= self.torso_weight(jaw, self.mask_grid, self.mask_grid)
        return weight, small if self.segmenter is not None else None  # the colour shift needs a segmenter

    def _lifted(self, torso: Torso) -> tuple[int, np.ndarray] | None:
        """Rows ``r0:r1`` of the reference frame's part of the crop's region (frame pixels) with its neck pulled up
        by ``torso.lift`` (`Torso`), and r0; None where nothing is lifted by a pixel or more."""
        if torso.lift is None or torso.lift.max() * self.crop.size / self.size < 1:
            return None
        x0, y0, x1, y1 = self.roi
        s = self.crop.size / self.size  # frame pixels per crop pixel
        on = np.arange(self.size, dtype=np.float32)
        jaw = (np.interp(self.cols, on, torso.jaw) * s + self.crop.y0 - y0).astype(np.float32)  # region rows
        lift = (np.interp(self.cols, on, torso.lift) * s).astype(np.float32)
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
        weight, small = self.weights(image, torso)
        if small is not None:  # OpenCV's uint8 arithmetic saturates and rounds, as the float round trip would
            image = cv2.add(np.ascontiguousarray(image), (*map(float, self.colour_shift(image, small)), 0.0))
        warped = self._warp(image, self.to_roi, cv2.BORDER_REPLICATE, inverse=False)
        x0, y0, x1, y1 = self.roi
        out = self.background.copy()
        lifted = None if torso is None else self._lifted(torso)
        if lifted is not None:
            out[y0 + lifted[0] : y0 + lifted[0] + len(lifted[1]), x0:x1] = lifted[1]
        region = np.ascontiguousarray(out[y0:y1, x0:x1])
        out[y0:y1, x0:x1] = cv2.blendLinear(warped, region, weight, 1.0 - weight)
        return out

    def close(self) -> None:
        if self.segmenter is not None:
            self.segmenter.close()

"""Mouth and eye regions of the crop, from the fitted landmarks: where a viewer looks first.

Used by training (a heavier L1 on the mouth and eyes, as Head2Head weighs them) and by evaluation
(PSNR / SSIM of the mouth region). Boxes are in crop pixels at the generator's resolution. `feature_mask` finds
the same regions in a rendered frame from its correspondence image (the detail bank leaves them as generated).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..face import topology as topo
from ..face.model import load_face_model
from .crop import Crop
from .shaders import canonical_positions

OUTER_LIPS = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
REGIONS = {"mouth": (OUTER_LIPS, 0.35), "right_eye": (topo.RIGHT_EYE_RING, 0.6), "left_eye": (topo.LEFT_EYE_RING, 0.6)}


def region_boxes(landmarks: np.ndarray, crop: Crop, size: int) -> np.ndarray:
    """``[T, 3, 4]`` float32 boxes ``(x0, y0, x1, y1)`` of the mouth, right eye and left eye in crop pixels.

    landmarks: ``[T, 478, 2]`` in source-frame pixels. Each box is its landmarks' bounding box grown by a
    margin (35% of its size for the mouth, 60% for the eyes, so brows and lids are in), clipped to the crop.
    """
    m = crop.matrix(size)
    pts = landmarks[..., :2] @ m[:, :2].T + m[:, 2]
    boxes = []
    for idx, margin in REGIONS.values():
        p = pts[:, idx]
        lo, hi = p.min(1), p.max(1)
        grow = (hi - lo) * margin / 2
        boxes.append(np.concatenate([lo - grow, hi + grow], 1))
    return np.clip(np.stack(boxes, 1), 0, size).astype(np.float32)


def box_mask(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, K, 4]`` boxes -> ``[B, 1, size, size]`` float mask, 1 inside any box."""
    r = torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5
    inx = (r >= boxes[..., 0, None]) & (r < boxes[..., 2, None])  # [B, K, W]
    iny = (r >= boxes[..., 1, None]) & (r < boxes[..., 3, None])  # [B, K, H]
    return (iny[..., :, None] & inx[..., None, :]).any(1, keepdim=True).to(boxes.dtype)


FEATURE_MARGINS = {"mouth": 0.35, "right_eye": 0.3, "left_eye": 0.3}  # eyes: the lids, not the brows


@lru_cache(maxsize=1)
def canonical_boxes() -> np.ndarray:
    """``[3, 4]`` boxes of `REGIONS` (mouth, right eye, left eye) in the correspondence image's canonical x, y
    (the face model's mean shape scaled to [0, 1], as `ConditioningRenderer` shades it), grown by
    `FEATURE_MARGINS`."""
    c01 = canonical_positions(load_face_model().mean_shape)
    boxes = []
    for (idx, _), margin in zip(REGIONS.values(), FEATURE_MARGINS.values()):
        lo, hi = c01[idx, :2].min(0), c01[idx, :2].max(0)
        grow = (hi - lo) * margin / 2
        boxes.append(np.concatenate([lo - grow, hi + grow]))
    return np.stack(boxes).astype(np.float32)


@lru_cache(maxsize=1)
def _feature_table(n: int = 256) -> np.ndarray:
    """``[n, n]`` bool over canonical (y, x) in [0, 1]: inside one of `canonical_boxes`."""
    c = (np.arange(n) + 0.5) / n
    b = canonical_boxes()
    return ((c[None, :, None] >= b[:, None, None, 0]) & (c[None, :, None] < b[:, None, None, 2])
            & (c[None, None, :] >= b[:, 1, None, None]) & (c[None, None, :] < b[:, 3, None, None])).any(0).T  # fmt: skip


def feature_mask(correspondence: torch.Tensor, rendered: np.ndarray | None = None) -> np.ndarray:
    """``[3, R, R]`` correspondence channels of one render (in [-1, 1], -1 where no face) -> ``[R, R]`` bool: the
    rendered pixels of the mouth and the eyes (`canonical_boxes`, looked up at 1/256 of the face). ``rendered``:
    where the face is rendered, when known (`finish.rendered_face`)."""
    table = _feature_table()  # 256 x 256: the index fits in uint8, the cheapest for numpy to gather with
    # channels last first, then in place (a strided read of bf16 conditioning costs three times a copy)
    xy = correspondence[:2].movedim(0, -1).contiguous().float()
    idx = (xy + 1).mul_(128).clamp_(max=255).to(torch.uint8).cpu().numpy()  # truncated, as the table's cells
    if rendered is None:
        rendered = (correspondence.amax(0) > -1).cpu().numpy()
    return table[idx[..., 1], idx[..., 0]] & rendered

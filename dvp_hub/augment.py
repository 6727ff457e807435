"""Training augmentation: one random shift and zoom applied alike to a batch's conditioning and real frames.

A person-specific generator sees its target's head only where the training clip put it; driven by someone who
moves more, it meets face renders at new places and sizes and paints a doubled head or a shattered collar there.
Shifting and zooming each (conditioning, frame) pair together (pix2pix's "random jitter", as an affine warp)
teaches it that the picture moves with the face render. The mouth and eye boxes move with the pixels.

Off by default; the demo is trained without it. The bilinear warp resamples the real frames, which leaves them
softer than the generator's: the discriminator can then tell the two apart by sharpness, and the generator answers
with checkerboards (why: docs/figures-2026-11.md, 'Design measurements').

``whole_pixels``: the shift rounded to whole pixels and no zoom, so every pixel is copied, not resampled: the real
frames stay as sharp as the clip. The band the shift brings in from outside the crop (the edge replicated) is marked
in ``batch["valid"]``; the training steps put the real frame's band into the generated one (`composite_valid`), so
the band weighs nothing in the L1 loss and the discriminator sees it alike in both. Any whole-frame shift also
teaches that the background moves with the face: on a static-camera target, a driven head off its trained positions
may drag the background along, which a driven video shows more plainly than stills.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

WARPED = ("conditioning", "frame", "prev_conditioning", "prev_frame")


def shift_zoom(
    batch: dict, shift: float, zoom: float, generator: torch.Generator | None = None, whole_pixels: bool = False
) -> dict:
    """``batch`` with every image warped by one random affine per item: a translation of up to ``shift`` of the
    crop's side on each axis and a zoom factor within ``[1 / (1 + zoom), 1 + zoom]`` about the centre (edges
    replicated). ``regions`` boxes (crop pixels) are moved alike. ``shift = zoom = 0`` returns ``batch``.
    ``whole_pixels``: the translation in whole pixels, copied exactly, and ``batch["valid"]`` ``[B, 1, H, W]``
    marks the pixels that come from inside the crop (``zoom`` must be 0)."""
    if not shift and not zoom:
        return batch
    if whole_pixels and zoom:
        raise ValueError("whole-pixel shifts copy pixels; a zoom would resample them: use zoom 0 with whole_pixels")
    ref = batch["frame"]
    b, dev, size = ref.shape[0], ref.device, ref.shape[-1]
    u = torch.rand(b, 3, generator=generator).to(dev)
    s = torch.exp((2 * u[:, 0] - 1) * math.log1p(zoom))  # zoom factor
    t = (2 * u[:, 1:] - 1) * shift * 2  # translation in normalised coordinates (the crop spans 2)
    if whole_pixels:
        t = torch.round(t * size / 2) * 2 / size  # a pixel is 2 / size in normalised coordinates
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
    theta[:, :, 2] = -t / s[:, None]  # output x = s * input x + t
    mode = "nearest" if whole_pixels else "bilinear"  # whole pixels: each output pixel centre is an input one
    grid = F.affine_grid(theta, [b, 1, *ref.shape[-2:]], align_corners=False)  # the same for every image here
    out = dict(batch)
    for key in WARPED:
        if key in batch:
            img = batch[key]
            out[key] = F.grid_sample(img, grid.to(img.dtype), mode=mode, padding_mode="border", align_corners=False)
    if whole_pixels:
        ones = torch.ones(b, 1, *ref.shape[-2:], device=dev)
        out["valid"] = F.grid_sample(ones, grid, mode="nearest", padding_mode="zeros", align_corners=False) > 0.5
    if "regions" in batch:
        boxes = batch["regions"].to(torch.float32) / size * 2 - 1  # [B, K, 4] normalised (x0, y0, x1, y1)
        boxes = boxes * s[:, None, None] + t.repeat(1, 2)[:, None, :]
        out["regions"] = ((boxes + 1) / 2 * size).to(batch["regions"].dtype)
    return out


def composite_valid(batch: dict, fake: torch.Tensor, real_key: str = "frame") -> torch.Tensor:
    """``fake`` with the real frame's pixels where ``batch["valid"]`` is False (the band a whole-pixel shift brought
    in): no loss there for the generator, the same band in real and generated frames for the discriminator.
    ``fake`` itself where the batch has no ``valid`` mask."""
    valid = batch.get("valid")
    if valid is None:
        return fake
    return torch.where(valid, fake, batch[real_key].to(fake.dtype))

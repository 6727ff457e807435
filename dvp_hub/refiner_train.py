"""The library parts of `training/train_refiner.py`: patch sampling, the losses and held-out validation."""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import detail
from .errors import DVPError
from .models.refiner import FaceRefiner
from .pipelines.finish import tensor_to_uint8
from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline
from .pipelines.target_folder import weights_variant


class PatchSampler:
    """Aligned (generated, real) patch pairs from a pair folder's training frames.

    ``patch``: the real patch's side (even); the generated patch is ``patch / scale``. With probability
    ``face_prob`` the patch holds a random part of the face box, otherwise any part of the crop. ``blur``:
    the largest Gaussian sigma (px) the generated patch is blurred by, drawn uniformly per pair from
    ``[0, blur]`` with probability one half: driven faces come out softer than self-reenacted training frames.
    ``correspondence``: the pair folder's correspondence images, cut with the generated patch (for a refiner
    with a neural texture), or None.
    """

    def __init__(
        self, generated, real, boxes, train_frames, patch=192, scale=2, face_prob=0.7, blur=1.0, seed=0,
        correspondence=None,
    ):
        self.gen, self.real, self.boxes, self.corr = generated, real, boxes, correspondence
        self.n, self.patch, self.scale = int(train_frames), int(patch), int(scale)
        self.face_prob, self.blur = face_prob, blur
        self.rng = np.random.default_rng(seed)

    def _corner(self, i: int) -> tuple[int, int]:
        size, p = self.real.shape[1], self.patch
        if self.rng.random() < self.face_prob:
            x0, y0, x1, y1 = self.boxes[i]
            cx, cy = self.rng.uniform(x0, x1), self.rng.uniform(y0, y1)
            x, y = cx - p / 2, cy - p / 2
        else:
            x, y = self.rng.uniform(0, size - p, 2)
        s = self.scale
        x, y = (int(np.clip(v, 0, size - p)) // s * s for v in (x, y))
        return x, y

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(generated [B, 3, p/s, p/s], real [B, 3, p, p], correspondence [B, 3, p/s, p/s] or None)`` in [-1, 1]."""
        gens, reals, corrs = [], [], []
        q = self.patch // self.scale
        for i in self.rng.integers(0, self.n, size):
            x, y = self._corner(int(i))
            cut = (i, slice(y // self.scale, y // self.scale + q), slice(x // self.scale, x // self.scale + q))
            g = np.array(self.gen[cut])
            c = None if self.corr is None else np.array(self.corr[cut], np.float32)
            if self.blur > 0 and self.rng.random() < 0.5:
                g = cv2.GaussianBlur(g, (0, 0), float(self.rng.uniform(0.3, self.blur)))
            r = np.array(self.real[i, y : y + self.patch, x : x + self.patch])
            if self.rng.random() < 0.5:  # a mirrored face is still the person (the texture lookup is mirrored too)
                g, r = g[:, ::-1], r[:, ::-1]
                c = None if c is None else c[:, ::-1]
            gens.append(g)
            reals.append(r)
            corrs.append(c)
        corr = None if self.corr is None else torch.from_numpy(np.ascontiguousarray(np.stack(corrs))).permute(0, 3, 1, 2)
        return to_tensor(np.stack(gens)), to_tensor(np.stack(reals)), corr


def initial_refiner(spec: str) -> FaceRefiner:
    """``--init_from``: a refiner folder (fp32, or fp16 only as targets ship it), or a target (``demo``, a
    pipeline folder, a Hub id) whose refiner to start from; in fp32."""
    if os.path.isfile(os.path.join(spec, "config.json")):
        return FaceRefiner.from_pretrained(spec, variant=weights_variant(spec)).float()
    pipe = DeepVideoPortraitPipeline.from_pretrained(spec)
    if pipe.refiner is None:
        raise DVPError(f"--init_from {spec}: this target has no refiner; give a refiner folder or leave it out.")
    return pipe.refiner.float()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``[N, H, W, 3]`` uint8 -> ``[N, 3, H, W]`` in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def lsgan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss against the label 1 (real) or 0 (generated)."""
    return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))


def feature_matching(fake_feats, real_feats) -> torch.Tensor:
    """pix2pixHD's feature matching: mean L1 between the discriminator's activations, level by level."""
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats)) / len(fake_feats)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` with reflected borders (differentiable; torchvision is not a
    dependency and this is the one blur the losses need)."""
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).repeat(x.shape[1], 1, 1)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k[:, :, None, :], groups=x.shape[1])
    return F.conv2d(x, k[:, :, :, None], groups=x.shape[1])


def split_bands(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)`` with ``low + high == x``: the Gaussian low pass at ``sigma`` px and what it removes."""
    low = gaussian_blur(x, sigma)
    return low, x - low


def upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


@torch.no_grad()
def validate(refiner, generated, real, boxes, frames, correspondence=None) -> tuple[dict, np.ndarray]:
    """Held-out scores of ``refiner`` on ``frames`` (indices into the pair folder) against the real crops,
    beside the plain bilinear upsampling of the same generated crops (the refiner's starting point).
    ``correspondence``: the pair folder's correspondence images (needed by a refiner with a neural texture).

    Returns ``(scores, refined crops)``: PSNR over the crop, mid-band and finest-band detail ratios over the face
    box, and the mid band's RMS error (`detail.band_error`), for ``refined`` and ``bilinear``; and the refined
    crops ``[N, 2R, 2R, 3]`` uint8.
    """
    refiner.eval()
    scale = refiner.config.scale
    out: dict = {"refined": [], "bilinear": []}
    reals = [np.asarray(real[i]) for i in frames]
    for j in range(0, len(frames), 4):
        x = to_tensor(np.stack([generated[i] for i in frames[j : j + 4]])).to(refiner.device)
        corr = None
        if refiner.uses_texture:
            corr = torch.from_numpy(np.stack([correspondence[i] for i in frames[j : j + 4]]).astype(np.float32))
            corr = corr.permute(0, 3, 1, 2).to(refiner.device)
        out["refined"].append(tensor_to_uint8(refiner(x, corr)))
        out["bilinear"].append(tensor_to_uint8(upsample(x, scale)))
    scores = {}
    for name, chunks in out.items():
        fakes = np.concatenate(chunks)
        mse = np.mean([(f.astype(np.float32) - r) ** 2 for f, r in zip(fakes, reals)])
        b = [boxes[i] for i in frames]
        scores[name] = {
            "psnr": float(10 * np.log10(255.0**2 / mse)),
            **detail.detail_ratios(fakes, b, reals, b),
            "band_error": float(np.mean([detail.band_error(f, r, bx) for f, r, bx in zip(fakes, reals, b)])),
        }
    scores["real_band_rms"] = float(np.mean([detail.band_rms(r, bx) for r, bx in zip(reals, b)]))
    refiner.train()
    return scores, np.concatenate(out["refined"])

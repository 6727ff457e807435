"""Training pairs for a target's `FaceRefiner`: the generator's crop of each target frame and the real crop.

For every frame of the target's sequence the generator is driven by that frame's own fitted parameters
(self-reenactment, the pipeline's own render-and-generate step), and the real frame is cut with the
target's crop at ``scale`` times the generator's resolution. The last ``num_frames - train_frames``
frames are the target's held-out frames: the refiner never trains on them either.

A pair folder holds ``generated.npy`` ``[N, R, R, 3]`` uint8, ``real.npy`` ``[N, sR, sR, 3]`` uint8,
``face_boxes.npy`` ``[N, 4]`` (x0, y0, x1, y1 of the landmarks in the real crop's pixels),
``correspondence.npy`` ``[N, R, R, 3]`` float16 (the conditioning's correspondence channels of the same frames,
for a refiner with a neural texture; folders built before it lack it) and ``pairs.json`` (sizes, the held-out
split, the target's name).
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np
import torch

from .detail_bank import DetailBank, bank_scale
from .errors import DVPError
from .pipelines import steps
from .pipelines.finish import face_window, tensor_to_uint8
from .render.conditioning import CORRESPONDENCE, ConditioningRenderer
from .video import VideoReader


class Pairs(NamedTuple):
    """A pair folder's arrays (memory-mapped) and its ``pairs.json``; ``correspondence`` is None in folders built
    before it was stored."""

    generated: np.ndarray
    real: np.ndarray
    boxes: np.ndarray
    meta: dict
    correspondence: np.ndarray | None


def generated_crops(pipe, frames: slice | None = None) -> np.ndarray:
    """The generator's output for the target's own frames, ``[N, R, R, 3]`` uint8 (no marks)."""
    seq = pipe.target_state.sequence
    if frames is not None:
        seq = seq.slice(frames.start or 0, frames.stop)
    out: list[np.ndarray] = []
    steps.render_generate_write(pipe, seq, lambda x, cond: out.extend(tensor_to_uint8(x)), batch_size=8, chunk_size=64)
    return np.stack(out)


@torch.no_grad()
def correspondence_crops(pipe, n: int) -> np.ndarray:
    """The correspondence channels of the target's first ``n`` frames as the pipeline renders them,
    ``[n, R, R, 3]`` float16 in [-1, 1] (-1 where no face)."""
    seq = pipe.target_state.sequence
    res = int(pipe.target.config.resolution)
    renderer = ConditioningRenderer()
    out = np.empty((n, res, res, 3), np.float16)
    for s in range(0, n, 64):
        e = min(n, s + 64)
        cond = renderer.render(seq, pipe.target.crop, res, frames=slice(s, e), albedo=seq.albedo)
        out[s:e] = cond[:, CORRESPONDENCE].permute(0, 2, 3, 1).cpu().numpy()
    return out


def real_crop_frames(pipe, target_video: str, size: int, max_frames: int | None = None):
    """``(n, frames)``: how many of the target's real frames there are (all, or the first ``max_frames``) and an
    iterator of them cut with its crop at ``size`` px, each ``size x size x 3`` uint8; DVPError at once when the
    video is shorter than the target's frames."""
    cfg = pipe.target.config
    start = pipe.target.source_start
    n = cfg.num_frames if max_frames is None else min(cfg.num_frames, max_frames)
    reader = VideoReader(target_video)
    if len(reader) < start + n:
        raise DVPError(f"{target_video}: {len(reader)} frames, the target needs {start + n}; give its own video.")
    crop = pipe.target.crop

    def frames():
        for i, frame in enumerate(reader):
            if i >= start + n:
                break
            if i >= start:
                yield crop.apply(frame, size)

    return n, frames()


def real_crops(pipe, target_video: str, size: int, max_frames: int | None = None) -> np.ndarray:
    """The target's real frames cut with its crop at ``size`` px, ``[N, size, size, 3]`` uint8."""
    n, frames = real_crop_frames(pipe, target_video, size, max_frames)
    out = np.empty((n, size, size, 3), np.uint8)
    for i, img in enumerate(frames):
        out[i] = img
    return out


def detail_bank_from_video(pipe, target_video: str) -> DetailBank:
    """The target's `DetailBank` from its own video: its training frames cut as its crop at the refined size, in
    the refiner's face window (`finish.face_window`), twice the generator's size without a refiner; DVPError with
    a video too short."""
    scale = bank_scale(pipe.refiner)
    size = int(pipe.target.config.resolution) * scale
    _, frames = real_crop_frames(pipe, target_video, size, int(pipe.target.config.train_frames))
    return DetailBank.build(frames, tuple(scale * v for v in face_window(pipe)), size)


def face_boxes(pipe, size: int, n: int) -> np.ndarray:
    """Each frame's landmark box in the crop's pixels at ``size`` px, ``[n, 4]`` float32."""
    crop = pipe.target.crop
    lm = pipe.target_state.sequence.landmarks[:n]  # [n, 478, 2] video pixels
    s = size / crop.size
    xy = (lm - np.array([crop.x0, crop.y0])) * s
    return np.concatenate([xy.min(1), xy.max(1)], axis=1).astype(np.float32)


def build_pairs(pipe, target_video: str, out_dir: str, scale: int = 2, max_frames: int | None = None) -> dict:
    """Write a pair folder (see the module's docstring) for ``pipe``'s target; returns its ``pairs.json``."""
    cfg = pipe.target.config
    n = cfg.num_frames if max_frames is None else min(cfg.num_frames, max_frames)
    size = cfg.resolution * scale
    real = real_crops(pipe, target_video, size, n)
    gen = generated_crops(pipe, slice(0, n))
    os.makedirs(out_dir, exist_ok=True)
    np.save(os.path.join(out_dir, "generated.npy"), gen)
    np.save(os.path.join(out_dir, "real.npy"), real)
    np.save(os.path.join(out_dir, "face_boxes.npy"), face_boxes(pipe, size, n))
    np.save(os.path.join(out_dir, "correspondence.npy"), correspondence_crops(pipe, n))
    meta = {
        "target": cfg.name,
        "frames": int(n),
        "train_frames": int(min(cfg.train_frames, n)),
        "resolution": int(cfg.resolution),
        "scale": int(scale),
        "crop_size_native": float(pipe.target.crop.size),
    }
    with open(os.path.join(out_dir, "pairs.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return meta


def load_pairs(folder: str) -> Pairs:
    """A pair folder's `Pairs`, the arrays memory-mapped."""
    if not os.path.isfile(os.path.join(folder, "pairs.json")):
        raise DVPError(f"{folder}: no pairs.json; build it first with training/train_refiner.py --target_video.")
    with open(os.path.join(folder, "pairs.json")) as f:
        meta = json.load(f)
    load = lambda name: np.load(os.path.join(folder, name), mmap_mode="r")  # noqa: E731
    has_corr = os.path.isfile(os.path.join(folder, "correspondence.npy"))
    corr = load("correspondence.npy") if has_corr else None
    return Pairs(load("generated.npy"), load("real.npy"), load("face_boxes.npy"), meta, corr)

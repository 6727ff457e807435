"""A lighter refiner distilled from a target's own (`training/distill_refiner.py`).

The refiner runs on every offline frame, inside the face window, after the generator; on two CPU cores its 32
channels cost about as much as the int8 generator. A student with fewer channels (`student_refiner`) is taught the
teacher's refined face window on the generator's frames of the target's own motion and of motion retargeted from
other people (`distill.build_clips`, the same clips the live generator's distillation reads): it learns the teacher's
output, not the footage, so it keeps the detail the teacher was trained (adversarially) to paint.

- `teacher_windows`: the teacher's refined window of every stored frame, written once as uint8;
- `WindowPatchSampler`: random (generated patch, teacher patch, loss weight) batches from them;
- `validate`: PSNR of the student against the teacher on whole windows, with the bilinear enlargement's beside it.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import torch

from .distill import to_uint8, weights_digest
from .errors import DVPError
from .models.refiner import FaceRefiner
from .pipelines.target_folder import load_component


def student_refiner(teacher: FaceRefiner, channels: int = 16, num_blocks: int = 4) -> FaceRefiner:
    """A texture-less `FaceRefiner` with ``teacher``'s scale and the given width and depth (its detail branch starts
    at zero: a plain enlargement)."""
    if teacher.uses_texture:
        raise ValueError("a refiner with a neural texture cannot be distilled into a texture-less one.")
    return FaceRefiner(channels=channels, num_blocks=num_blocks, scale=teacher.config.scale)


def load_refiner(target: str) -> FaceRefiner:
    """The refiner of ``target`` (``demo``, a targets-folder name, a folder or a Hub id) alone, float32, in eval mode;
    `DVPError` where it has none."""
    refiner = load_component(target, "refiner", FaceRefiner)
    if refiner is None:
        raise DVPError(f"{target} has no refiner to distil: train one first (training/train_refiner.py).")
    return refiner


def receptive_radius(refiner: FaceRefiner) -> int:
    """Input px on each side that a detail-branch output pixel reads (its 3x3 convolutions)."""
    return 2 + 2 * refiner.config.num_blocks


def refined_shape(frames: int, window, scale: int) -> tuple[int, int, int, int]:
    """The shape of ``frames`` refined windows: ``(T, 3, s h, s w)`` for a ``window`` (x0, y0, x1, y1) of h x w px."""
    x0, y0, x1, y1 = window
    return (frames, 3, scale * (y1 - y0), scale * (x1 - x0))


def _to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(images)).float().div_(127.5).sub_(1)


@torch.no_grad()
def refined_windows(refiner: FaceRefiner, frames: np.ndarray, window, out: np.ndarray | None = None, batch: int = 8):
    """``refiner``'s output inside ``window`` (x0, y0, x1, y1) for generator frames ``[T, 3, R, R]`` uint8:
    ``[T, 3, s h, s w]`` uint8 (`FaceRefiner.refined_window`, float32, on the refiner's device), written into ``out``
    (an array of that shape, e.g. memory-mapped) batch by batch, or into a new array."""
    if out is None:
        out = np.empty(refined_shape(len(frames), window, refiner.config.scale), np.uint8)
    for b in range(0, len(frames), batch):
        x = _to_float(frames[b : b + batch]).to(refiner.device)
        out[b : b + batch] = to_uint8(refiner.refined_window(x, window))
    return out


def teacher_windows(teacher: FaceRefiner, clips: dict, window, folder: str, log=print) -> dict:
    """The teacher's `refined_windows` of each clip (``{name: frames [T, 3, R, R]}``), stored once in ``folder``
    (``NAME.npy`` and ``teacher.json``; the folder is written beside and renamed, so a killed run leaves none) and
    returned memory-mapped by name. Raises `DVPError` where the folder holds another teacher's windows or other clips."""
    meta = {"teacher": weights_digest(teacher), "window": list(window), "clips": {n: len(f) for n, f in clips.items()}}
    if not os.path.isdir(folder):
        tmp = folder + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for name, frames in clips.items():
            log(f"the teacher's refined windows of {name} ({len(frames)})")
            shape = refined_shape(len(frames), window, teacher.config.scale)
            out = np.lib.format.open_memmap(os.path.join(tmp, f"{name}.npy"), "w+", np.uint8, shape)
            refined_windows(teacher, frames, window, out)
            out.flush()
            del out
        with open(os.path.join(tmp, "teacher.json"), "w") as f:
            json.dump(meta, f)
        os.replace(tmp, folder)
    try:
        with open(os.path.join(folder, "teacher.json")) as f:
            stored = json.load(f)
    except (OSError, ValueError):
        stored = None
    if stored != meta:
        raise DVPError(f"{folder} holds another teacher's windows or other clips: remove it (it is rebuilt).")
    return {name: np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r") for name in clips}


class WindowPatchSampler:
    """Random ``(generated [B, 3, P, P], teacher [B, 3, sP, sP], weights [B, 1, sP, sP])`` batches in [-1, 1].

    Each patch lies inside the face ``window`` of a frame drawn in proportion to its clip's length. ``weights`` are 0
    within ``margin`` input px of a patch side that is not the window's own side (there the student lacks the context
    the teacher had) and 1 elsewhere, normalised to mean 1.
    """

    def __init__(self, frames: list, refined: list, window, patch: int, scale: int, margin: int, seed: int = 0):
        self.frames, self.refined, self.window, self.scale, self.margin = frames, refined, window, scale, margin
        x0, y0, x1, y1 = window
        self.patch = min(patch, x1 - x0, y1 - y0)
        for f, r in zip(frames, refined):
            if r.shape != refined_shape(len(f), window, scale):
                raise ValueError(f"refined windows {r.shape} do not match {len(f)} frames of window {window} x{scale}")
        lengths = np.array([len(f) for f in frames], np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def item(self, k: int, t: int, px: int, py: int):
        x0, y0, x1, y1 = self.window
        p, s, m = self.patch, self.scale, self.margin
        gen = self.frames[k][t, :, y0 + py : y0 + py + p, x0 + px : x0 + px + p]
        ref = self.refined[k][t, :, s * py : s * (py + p), s * px : s * (px + p)]
        w = np.ones((s * p, s * p), np.float32)
        if px > 0:
            w[:, : s * m] = 0
        if py > 0:
            w[: s * m] = 0
        if x0 + px + p < x1:
            w[:, s * (p - m) :] = 0
        if y0 + py + p < y1:
            w[s * (p - m) :] = 0
        return gen, ref, w

    def batch(self, size: int):
        x0, y0, x1, y1 = self.window
        items = []
        for _ in range(size):
            k = int(self.rng.choice(len(self.frames), p=self.p))
            t = int(self.rng.integers(len(self.frames[k])))
            px = int(self.rng.integers(x1 - x0 - self.patch + 1))
            py = int(self.rng.integers(y1 - y0 - self.patch + 1))
            items.append(self.item(k, t, px, py))
        gen, ref, w = (np.stack(parts) for parts in zip(*items))
        w = torch.from_numpy(w)[:, None]
        return _to_float(gen), _to_float(ref), w / w.mean().clamp(min=1e-6)


@torch.no_grad()
def validate(student: FaceRefiner, frames: np.ndarray, refined: np.ndarray, window, every: int = 4) -> dict:
    """PSNR (dB, frames in [-1, 1]) against the teacher's stored windows over every ``every``-th frame of one clip:
    the student's (``student``, on whole windows) and the bilinear enlargement's (what no refiner gives)."""
    was_training = student.training
    student.eval()
    idx = np.arange(0, len(frames), every)
    x0, y0, x1, y1 = window
    errs = {"student": [], "bilinear": []}
    for s in range(0, len(idx), 8):
        pick = idx[s : s + 8]
        x, ref = _to_float(frames[pick]).to(student.device), _to_float(refined[pick]).to(student.device)
        part = x[:, :, y0:y1, x0:x1]
        up = torch.nn.functional.interpolate(part, scale_factor=student.config.scale, mode="bilinear")
        ours = student.refined_window(x, window)
        for name, img in (("student", ours), ("bilinear", up)):
            quantised = img.add(1).mul(127.5).round().div(127.5).sub(1)  # what a frame shows
            errs[name].append(((quantised - ref) ** 2).mean(dim=(1, 2, 3)).cpu())
    student.train(was_training)
    return {k: float((10 * torch.log10(4 / torch.cat(v).clamp(min=1e-10))).mean()) for k, v in errs.items()}

"""A lighter generator for the live path, distilled from a target's own generator.

On two CPU cores the target's generator (16 M parameters at 256 px) takes most of a live frame's time. A student
with half the channels at every level, a quarter of the work (`student_generator`; started from the teacher's
most active channels, `prune`), is taught to give the same frame as the teacher for the same space-time window
of conditioning images, over the target's own training motion and over motion retargeted from other people (what
the live path sees). The student is exported as the pipeline's optional
``live_generator`` component, which `DeepVideoPortraitPipeline.live` runs when the target has one.

- `teacher_clip`: one drive's conditioning and the teacher's frames, as uint8 arrays;
- `build_clips` / `stored_clips` / `load_clips`: those of every drive, stored once in a folder (``clips.json`` +
  ``.npy``); the refiner's distillation (`refiner_distill`) reads the same clips;
- `WindowSampler`: random ``(window, teacher frame)`` batches from the stored clips; `face_weights`: the loss's
  per-pixel weights;
- `student_generator`: the student's architecture, from the teacher's config.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import torch

from .errors import DVPError
from .face.sequence import FaceSequence
from .models.generator import RenderingToVideoGenerator
from .models.windows import window_indices
from .pipelines.finish import face_window
from .pipelines.options import RunOptions
from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline
from .pipelines.steps import render_generate_write, retarget_motion, track_source
from .video import VideoReader


def student_generator(teacher, base_channels: int = 16, max_channels: int = 128) -> RenderingToVideoGenerator:
    """A `RenderingToVideoGenerator` like ``teacher`` (a generator or its config: resolution, window, levels) with
    fewer channels and no dropout (the student regresses the teacher's deterministic output)."""
    cfg = getattr(teacher, "config", teacher)
    if isinstance(cfg, dict):
        cfg = RenderingToVideoGenerator.from_config(cfg).config
    return RenderingToVideoGenerator(
        in_channels=cfg.in_channels,
        temporal_window=cfg.temporal_window,
        base_channels=base_channels,
        max_channels=max_channels,
        resolution=cfg.resolution,
        num_levels=cfg.num_levels,
        dropout=0.0,
        out_channels=cfg.out_channels,
        innermost_norm=cfg.innermost_norm,
    )


def weights_digest(module: torch.nn.Module) -> str:
    """A name for a network's shape and weights (a store of a teacher's outputs refuses another teacher's), the same
    wherever the network was loaded from (diffusers' own ``_``-keys, such as the folder, are left out)."""
    config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[..., C, R, R]`` in [-1, 1] -> uint8 of the same shape (the dataset's storage of conditioning)."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).contiguous().cpu().numpy()


@torch.no_grad()
def teacher_clip(pipe, drive: FaceSequence) -> tuple[np.ndarray, np.ndarray]:
    """The conditioning ``[T, 9, R, R]`` and the teacher's frames ``[T, 3, R, R]`` (uint8) of one drive, rendered
    and generated as the offline pipeline does (`steps.render_generate_write`, float32)."""
    conds, outs = [], []

    def keep(out, cond):
        outs.append(to_uint8(out))
        conds.append(to_uint8(cond))

    render_generate_write(pipe, drive, keep, batch_size=8, chunk_size=64, fast=True, overlap=False)
    return np.concatenate(conds), np.concatenate(outs)


def source_drive(pipe, video: str, max_frames: int | None = None) -> FaceSequence:
    """The drive that reenacts the target with ``video``'s motion, as the offline pipeline makes it (defaults)."""
    source = track_source(VideoReader(video, max_frames=max_frames))
    drive, _ = retarget_motion(pipe, source, RunOptions())
    return drive


def build_clips(pipe, sources: list[str], folder: str, validation: list[str] = (), max_frames=None, log=print) -> None:
    """Store the teacher's clips in ``folder`` (written beside it, then renamed: a killed build leaves nothing).

    Training clips: the target's own training motion (``target``; its held-out frames excluded) and one clip per
    video in ``sources``. Validation clips, never sampled for training: the target's held-out frames
    (``heldout``) and one clip per video in ``validation``. ``clips.json`` names them and gives the face window
    the loss weighs.
    """
    tmp = folder + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    seq, n = pipe.target_state.sequence, pipe.target.config.train_frames
    train = [("target", seq.slice(0, min(n, max_frames or n)))]
    val = [("heldout", seq.slice(n, len(seq)))] if len(seq) > n else []
    for names, videos in ((train, sources), (val, validation)):
        for video in videos:
            name = os.path.splitext(os.path.basename(video))[0]
            if name in {
                taken for taken, _ in train + val
            }:  # the clips are stored by name: one may not replace another
                raise DVPError(f"{video}: a clip named {name!r} is already taught or held out; give each video once.")
            log(f"tracking {video}")
            names.append((name, source_drive(pipe, video, max_frames)))
    for name, drive in train + val:
        log(f"teacher frames of {name} ({len(drive)})")
        cond, out = teacher_clip(pipe, drive)
        np.save(os.path.join(tmp, f"{name}.cond.npy"), cond)
        np.save(os.path.join(tmp, f"{name}.frames.npy"), out)
    meta = {
        "clips": [c for c, _ in train],
        "validation": [c for c, _ in val],
        "face_window": list(face_window(pipe)),
        "sources": list(sources),
        "train_frames": int(n),
        "teacher": dict(pipe.generator.config),  # the student's shape comes from it, also on a resumed run
        "teacher_digest": weights_digest(pipe.generator),  # `distill_live.py --init pruned` cuts the same teacher
    }
    with open(os.path.join(tmp, "clips.json"), "w") as f:
        json.dump(meta, f, indent=1)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def add_distill_arguments(parser, max_train_steps: int, every: int) -> None:
    """The options both distillation scripts share: where the teacher's clips come from (`stored_clips`) and how a
    run is stepped, checkpointed, validated and resumed (``--max_train_steps`` is also the cosine's length)."""
    p = parser
    p.add_argument("--output_dir", required=True)
    p.add_argument("--source", action="append", default=[], help="a video whose retargeted motion is taught too")
    p.add_argument("--validation_source", action="append", default=[], help="a video held out for validation")
    p.add_argument("--max_frames", type=int, default=None, help="at most N frames of each clip (tests)")
    p.add_argument("--clips_dir", help="the teacher's clips (default OUTPUT_DIR/clips; built there when missing)")
    p.add_argument(
        "--max_train_steps", type=int, default=max_train_steps, help="also the learning rate's cosine length"
    )
    p.add_argument("--max_train_minutes", type=float, default=None)
    p.add_argument("--checkpointing_steps", type=int, default=every)
    p.add_argument("--checkpoints_total_limit", type=int, default=2)
    p.add_argument("--validation_steps", type=int, default=every)
    p.add_argument("--resume_from_checkpoint", help="a checkpoint folder, or 'latest'")
    p.add_argument("--seed", type=int, default=0)


def stored_clips(accelerator, args) -> str:
    """``args.clips_dir`` (None: ``args.output_dir/clips``), built once by the main process when missing
    (`build_clips` of ``args.target``'s generator with ``args.source``, ``args.validation_source`` and
    ``args.max_frames``). Both distillation scripts read it: one folder serves both."""
    folder = args.clips_dir or os.path.join(args.output_dir, "clips")
    if accelerator.is_main_process and not os.path.isfile(os.path.join(folder, "clips.json")):
        pipe = DeepVideoPortraitPipeline.from_pretrained(args.target)
        pipe.set_progress_bar_config(disable=True)
        build_clips(pipe, args.source, folder, args.validation_source, args.max_frames, log=accelerator.print)
    accelerator.wait_for_everyone()
    return folder


def load_clips(folder: str, which: str = "clips") -> tuple[list[tuple[np.ndarray, np.ndarray]], dict]:
    """The stored clips of ``which`` (``"clips"``: training, ``"validation"``) as ``[(cond [T, 9, R, R], frames
    [T, 3, R, R])]`` uint8, memory-mapped, and ``clips.json``."""
    with open(os.path.join(folder, "clips.json")) as f:
        meta = json.load(f)

    def arr(name, kind):
        return np.load(os.path.join(folder, f"{name}.{kind}.npy"), mmap_mode="r")

    return [(arr(c, "cond"), arr(c, "frames")) for c in meta[which]], meta


class WindowSampler:
    """Random training items from stored clips: ``(windows [B, 9*Nw, R, R], teacher frames [B, 3, R, R])`` in
    [-1, 1], each clip drawn in proportion to its length, each window clamped at its clip's start as in training."""

    def __init__(self, clips, window: int, seed: int = 0):
        self.clips, self.window = clips, window
        lengths = np.array([len(c[0]) for c in clips], np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)

    def item(self, k: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        cond, frames = self.clips[k]
        c = torch.from_numpy(np.array(cond[window_indices(t, self.window)]))  # [Nw, 9, R, R]
        x = c.reshape(-1, *c.shape[2:]).float() / 127.5 - 1
        y = torch.from_numpy(np.array(frames[t])).float() / 127.5 - 1
        return x, y

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        items = []
        for _ in range(size):
            k = int(self.rng.choice(len(self.clips), p=self.p))
            items.append(self.item(k, int(self.rng.integers(len(self.clips[k][0])))))
        return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])


def face_weights(size: int, window: tuple[int, int, int, int], face_weight: float) -> torch.Tensor:
    """``[1, 1, R, R]`` per-pixel loss weights: 1 + ``face_weight`` inside the face window, 1 elsewhere."""
    w = torch.ones(1, 1, size, size)
    x0, y0, x1, y1 = window
    w[..., y0:y1, x0:x1] += face_weight
    return w / w.mean()

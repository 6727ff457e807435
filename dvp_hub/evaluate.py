"""`dvp evaluate`: how good is a target? Self-reenactment quality and expression / pose fidelity.

- Self-reenactment on the target's validation frames (the last 10%, never trained on): the target's own
  fitted parameters of those frames drive the generator; PSNR and SSIM (torchmetrics) against the real
  frames (cropped as in training), over the whole frame and over the face region (where the face model
  renders).
- Driven by each source: the output is tracked again; the correlation of its mouth opening and eye
  openness with the source's, the mean error between the source's head rotation relative to its
  neutral frame and the output's (degrees), and the landmark jitter of the output against the source's.

- Torso novelty: the output's lower centre (collar, tie, shoulders in a head-and-shoulders crop), compared at
  128 px with the same region of every training frame; a frame whose nearest training frame is farther than
  any real held-out frame's is counted (a torn collar, a smeared neck: what a viewer sees first, which PSNR
  on the face does not measure).

- Identity (with an `identity.FaceEmbedder`, dlib's 128-D face-recognition embeddings): the mean distance of
  the output's embeddings to the centroid of the target's real frames (same person below ~0.6; goal <= 0.45)
  and to the source's (goal > 0.6), plus the distance between the two real people for scale.
"""

from __future__ import annotations

import torch

from . import evaluate_native
from .errors import DVPError
from .evaluate_measures import (
    contact_sheet,
    crop_scores,
    embed_spread,
    nearest_frames,
    torso_novelty,
    torso_patches,
    tracking_floor,
)
from .evaluate_native import RealFootage, self_scores, torso_lines
from .identity import identity_distance, spread_indices
from .models.inference import generate_windows
from .pipelines.finish import FrameFinisher, rendered_face, tensor_to_uint8
from .render.conditioning import ConditioningRenderer
from .render.regions import box_mask, region_boxes
from .video import VideoReader, to_uint8


def held_out_outputs(pipe, seq, start: int, stop: int, generator8=None):
    """Conditioning ``[stop - start + Nw - 1, 9, R, R]`` (history first) and the generator's output of frames
    ``[start, stop)``, as the pipeline calls it: 8 frames at a time, the history before frame 0 repeating it.
    ``generator8``: an int8 generator (`live_generator.offline_int8`) to run instead of the float one."""

    size, window = pipe.target.config.resolution, pipe.generator.config.temporal_window
    first = max(0, start - window + 1)
    cond = ConditioningRenderer().render(seq, pipe.target.crop, size, frames=slice(first, stop))
    pad = window - 1 - (start - first)
    cond = torch.cat([cond[:1].expand(pad, -1, -1, -1), cond]) if pad else cond
    # cond index j is frame start - window + 1 + j
    if generator8 is not None:
        return cond, generator8.clip(cond, window)
    raw = torch.cat(
        [
            generate_windows(pipe.generator, cond[s - start : min(stop, s + 8) - start + window - 1])
            for s in range(start, stop, 8)
        ]
    )
    return cond, raw


def _real_crops(reader, crop, size: int, offset: int, start: int, stop: int):
    """The target's real frames in its crop: training frames ``[N, 3, R, R]`` uint8 and held-out frames (list)."""
    train, real = [], []
    for i, frame in enumerate(reader):
        if i >= offset + stop:
            break
        if i >= offset:
            img = torch.from_numpy(crop.apply(frame, size)).permute(2, 0, 1)
            (real if i >= offset + start else train).append(img)
    return torch.stack(train), real  # uint8: a minute of 256 px frames is ~200 MB


def _self_sheet(pipe, path, real, cond, fake, refined, footage, torsos=None) -> None:
    """real | diffuse render | output for 6 held-out frames; at native size (the crop's square cut from the full
    frames, pasted back with ``torsos`` as `evaluate_native.pasted`) when the target has its full frame
    (``footage``)."""

    picks = spread_indices(len(real), 6).tolist()
    rows = [[real[i], (cond[i, :3] + 1) / 2, fake[i]] for i in picks]
    height = 192
    if footage is not None:
        crop = pipe.target.crop
        shown = evaluate_native.pasted(
            pipe, refined[picks], torsos=None if torsos is None else [torsos[i] for i in picks]
        )
        rows = [[crop.cut(footage.held_out[i]), r[1], crop.cut(shown[k])] for k, (i, r) in enumerate(zip(picks, rows))]
        height = rows[0][0].shape[0]
    contact_sheet(rows, path, ["real (held out)", "diffuse render", "output"], height=height)


def self_reenactment(
    pipe,
    target_video: str,
    max_frames: int | None = None,
    embedder=None,
    sheet: str | None = None,
    torso: dict | None = None,
    native: dict | None = None,
    reference_torso: bool = True,
) -> dict:
    """The target's own validation frames (never trained on), driven by their own fitted parameters.

    Scores (PSNR / SSIM over the whole crop, the face region and the mouth region) for the model and for two
    baselines in the same crop: the mean training frame, and the training frame nearest to each validation
    frame by pixel error (an oracle lookup: a target is worth something only where it beats it). ``sheet``:
    write a contact sheet there (real frame | diffuse render | output, 6 frames). ``torso``: a dict that receives
    the training frames' `torso_patches` and the held-out real frames' largest `torso_novelty`, for `driven`.
    With a reference frame (paste-back), ``result["native"]`` holds `evaluate_native.self_scores` (the full frame
    at native size, face detail, band error) and ``native["real"]`` receives the `RealFootage` for `driven`.
    The crop scores use the pipeline's crops (refined when the target has a refiner) taken to the crop's size.
    ``reference_torso``: pasted back as the pipeline does by default (the reference frame's torso below the jaw);
    where the target has a reference frame, the novel-torso count is taken on the frames as pasted back.
    """

    cfg = pipe.target.config
    reader = VideoReader(target_video)
    offset = pipe.target.source_start  # the video frame of target frame 0 (the shot kept for training)
    if len(reader) < offset + cfg.num_frames:
        named = cfg.get("source_video") or "its own training video"
        raise DVPError(
            f"{target_video}: {len(reader)} frames, but the target was trained on frames {offset}-"
            f"{offset + cfg.num_frames - 1} of a video; give the target's own training video ({named})."
        )
    seq = pipe.target.to_sequence()
    start = cfg.train_frames
    stop = cfg.num_frames if max_frames is None else min(cfg.num_frames, start + max_frames)
    crop, size, window = pipe.target.crop, cfg.resolution, pipe.generator.config.temporal_window
    cond, raw = held_out_outputs(pipe, seq, start, stop)
    refined = FrameFinisher(pipe, False, watermark=False, invisible_watermark=False).crops(raw, cond[window - 1 :])
    fake = torch.from_numpy(refined).permute(0, 3, 1, 2).float() / 255
    if fake.shape[-1] != size:  # the crop scores at the generator's size, as the baselines
        fake = torch.nn.functional.interpolate(fake, size=(size, size), mode="area")
    train, real = _real_crops(reader, crop, size, offset, start, stop)
    real = torch.stack(real).float() / 255
    mean = (train.sum(0, keepdim=True, dtype=torch.float32) / (255 * len(train))).expand_as(real)
    nearest_index = nearest_frames(train, real)
    nearest = train[nearest_index].float() / 255
    face = (cond[window - 1 :, 3:6].amax(1, keepdim=True) > -1).float()  # where the correspondence is rendered
    boxes = torch.from_numpy(region_boxes(seq.landmarks[start:stop], crop, size))
    mouth = box_mask(boxes[:, :1], size)
    result = {
        "validation_frames": int(stop - start),
        "source_frames": [offset + start, offset + stop],
        **crop_scores(fake, real, face, mouth),
        "baseline_mean_frame": crop_scores(mean, real, face, mouth),
        "baseline_nearest_frame": crop_scores(nearest, real, face, mouth),
    }
    result.update(tracking_floor(real, fake, seq.slice(start, stop), pipe.target.config.fps))
    faces, footage = [rendered_face(c) for c in cond[window - 1 :]], None
    torsos = torso_lines(pipe, faces, refined.shape[1]) if reference_torso else None
    if pipe.has_reference:
        footage = RealFootage.read(pipe, target_video, start, stop, nearest_index.tolist())
        result["native"] = self_scores(pipe, refined, tensor_to_uint8(raw), footage, torsos)
        if native is not None:
            native["real"] = footage
    train_torso = torso_patches(train)
    limit = float(torso_novelty(train_torso, torso_patches(real)).max())
    result["torso_novelty_real_max"] = limit  # real held-out frames are never farther than this
    shown = evaluate_native.viewed_crops(pipe, refined, torsos) if pipe.has_reference else fake
    result["torso_novel_frames"] = int((torso_novelty(train_torso, torso_patches(shown)) > limit).sum())
    if torso is not None:
        torso.update(train=train_torso, limit=limit)
    if sheet:
        _self_sheet(pipe, sheet, real, cond[window - 1 :], fake, refined, footage, torsos)
    if embedder is not None:  # generated vs real validation frames: the same frames, the same person
        ref, _ = embed_spread(embedder, to_uint8(real.permute(0, 2, 3, 1).numpy()))
        emb, found = embed_spread(embedder, to_uint8(fake.permute(0, 2, 3, 1).numpy()))
        result.update({"identity_to_real_frames": identity_distance(emb, ref), "identity_faces_found": found})
    return result

"""`dvp evaluate`: how good is a target? Self-reenactment quality and expression / pose fidelity.

- Self-reenactment on the target's validation frames (the last 10%, never trained on): the target's own
  fitted parameters of those frames drive the generator; PSNR and SSIM (torchmetrics) against the real
  frames (cropped as in training), over the whole frame and over the face region (where the face model
  renders).
- Driven by each source: the output is tracked again; the correlation of its mouth opening and eye
  openness with the source's, the mean error between the source's head rotation relative to its
  neutral frame and the output's (degrees), and the landmark jitter of the output against the source's.

- Identity (with an `identity.FaceEmbedder`, dlib's 128-D face-recognition embeddings): the mean distance of
  the output's embeddings to the centroid of the target's real frames (same person below ~0.6; goal <= 0.45)
  and to the source's (goal > 0.6), plus the distance between the two real people for scale.
"""

from __future__ import annotations

import numpy as np
import torch

from .face import topology as topo
from .geometry import axis_angle_to_matrix, matrix_to_axis_angle

IDENTITY_FRAMES = 24  # frames embedded per set: dlib's detector + ResNet cost ~0.1 s a frame on CPU


def _embed_spread(embedder, frames) -> tuple[np.ndarray, str]:
    """Embeddings of `IDENTITY_FRAMES` frames spread over ``frames``, and "found/tried"."""
    from .identity import spread

    picked = spread(frames, IDENTITY_FRAMES)
    emb, found = embedder.embed_frames(picked)
    return emb, f"{found}/{len(picked)}"


def target_reference(embedder, target_video: str) -> np.ndarray:
    """Embeddings of the target's real frames, spread over its whole video."""
    from .identity import sample_frames

    return embedder.embed_frames(sample_frames(target_video, IDENTITY_FRAMES))[0]


def self_reenactment(pipe, target_video: str, max_frames: int | None = None, embedder=None) -> dict:
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    from .errors import DVPError
    from .models.inference import generate_windows
    from .render.conditioning import ConditioningRenderer
    from .video import VideoReader

    cfg = pipe.target.config
    reader = VideoReader(target_video)
    if len(reader) != cfg.num_frames:
        raise DVPError(
            f"{target_video}: {len(reader)} frames, but the target was trained on a video of "
            f"{cfg.num_frames}; give the target's own training video."
        )
    seq = pipe.target.to_sequence()
    start = cfg.train_frames
    stop = cfg.num_frames if max_frames is None else min(cfg.num_frames, start + max_frames)
    crop, size, window = pipe.target.crop, cfg.resolution, pipe.generator.config.temporal_window
    first = max(0, start - window + 1)
    cond = ConditioningRenderer().render(seq, crop, size, frames=slice(first, stop))
    pad = window - 1 - (start - first)  # history before frame 0 repeats frame 0, as in training
    cond = torch.cat([cond[:1].expand(pad, -1, -1, -1), cond]) if pad else cond
    # the pipeline's generator call, 8 frames at a time: cond index j is frame start - window + 1 + j
    fake = torch.cat(
        [
            ((generate_windows(pipe.generator, cond[s - start : min(stop, s + 8) - start + window - 1]) + 1) / 2)
            for s in range(start, stop, 8)
        ]
    ).clamp(0, 1)
    real = []
    for i, frame in enumerate(reader):
        if i >= stop:
            break
        if i >= start:
            real.append(torch.from_numpy(crop.apply(frame, size)).permute(2, 0, 1).float() / 255)
    real = torch.stack(real)
    mask = (cond[window - 1 :, 3:6].amax(1, keepdim=True) > -1).float()  # face region: correspondence rendered
    mse_face = (((fake - real) ** 2) * mask).sum() / (mask.sum() * 3).clamp(min=1)
    ys, xs = torch.nonzero(mask.amax(0)[0], as_tuple=True)
    box = (slice(None), slice(None), slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
    result = {
        "validation_frames": int(stop - start),
        "psnr": float(peak_signal_noise_ratio(fake, real, data_range=1.0)),
        "ssim": float(structural_similarity_index_measure(fake, real, data_range=1.0)),
        "psnr_face": float(10 * torch.log10(1 / mse_face)),
        "ssim_face": float(structural_similarity_index_measure(fake[box], real[box], data_range=1.0)),
    }
    if embedder is not None:  # generated vs real validation frames: the same frames, the same person
        from .identity import identity_distance
        from .video import to_uint8

        ref, _ = _embed_spread(embedder, to_uint8(real.permute(0, 2, 3, 1).numpy()))
        emb, found = _embed_spread(embedder, to_uint8(fake.permute(0, 2, 3, 1).numpy()))
        result.update({"identity_to_real_frames": identity_distance(emb, ref), "identity_faces_found": found})
    return result


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def driven(pipe, source_video: str, max_frames: int | None = None, embedder=None, target_embeddings=None) -> dict:
    """Drive ``pipe`` with a source video and measure expression, pose, jitter (and identity with an embedder)."""
    from .face.fitting import fit_sequence
    from .face.model import load_face_model
    from .face.smoothing import landmark_jitter
    from .face.tracker import FaceTracker, track_video

    src = fit_sequence(track_video(source_video, max_frames=max_frames))  # tracked once, drives the pipeline too
    out = pipe(source_parameters=src, watermark=False, progress=False, output_type="np")
    frames = (out.frames[0] * 255).round().astype(np.uint8)
    with FaceTracker() as tracker:
        track = tracker.track(list(frames), fps=out.fps, name="output")
    got = fit_sequence(track)
    model = load_face_model()
    sv = model.shape(src.identity, src.expression)
    gv = model.shape(got.identity, got.expression)
    ref = out.stats["source_reference_frame"]
    rs, rg = axis_angle_to_matrix(src.rotation), axis_angle_to_matrix(got.rotation)
    rel_s = rs @ rs[ref].T
    rel_g = rg @ rg[ref].T
    pose_err = np.rad2deg(np.linalg.norm(matrix_to_axis_angle(rel_g @ np.swapaxes(rel_s, 1, 2)), axis=-1))
    result = {
        "source": source_video,
        "frames": len(frames),
        "mouth_opening_correlation": _corr(topo.mouth_opening(sv), topo.mouth_opening(gv)),
        "eye_openness_correlation": _corr(topo.eye_openness(sv).mean(1), topo.eye_openness(gv).mean(1)),
        "head_pose_error_deg": float(pose_err.mean()),
        "output_jitter_iod": landmark_jitter(got.landmarks, topo.interocular_distance(got.landmarks)),
        "source_jitter_iod": landmark_jitter(src.landmarks, topo.interocular_distance(src.landmarks)),
        "interpolated_output_frames": int((~track.detected).sum()),
    }
    if embedder is not None:
        from .identity import identity_distance, sample_frames

        src_emb, _ = embedder.embed_frames(sample_frames(source_video, IDENTITY_FRAMES, max_frames))
        out_emb, found = _embed_spread(embedder, frames)
        result.update(
            {
                "identity_to_target": identity_distance(out_emb, target_embeddings),
                "identity_to_source": identity_distance(out_emb, src_emb),
                "identity_source_to_target": identity_distance(src_emb, target_embeddings),
                "identity_faces_found": found,
            }
        )
    return result

"""`dvp evaluate` on a driven run: a source video drives the target; its output is tracked again and compared with
the source (mouth and eye correlation, pose error, jitter), the target's training torsos and its real footage."""

from __future__ import annotations

import numpy as np
import torch

from . import evaluate_native
from .evaluate_measures import (
    IDENTITY_FRAMES,
    contact_sheet,
    corr,
    embed_spread,
    jitter,
    pose_error_deg,
    retracked,
    torso_novelty,
    torso_patches,
)
from .evaluate_native import driven_scores
from .face import topology as topo
from .face.fitting import fit_sequence
from .face.model import load_face_model
from .face.tracker import track_video
from .identity import identity_distance, sample_frames, spread_indices
from .pipelines.finish import rendered_face
from .render.conditioning import ConditioningRenderer
from .video import VideoReader


def _driven_sheet(pipe, path, source_video, drive, frames, torsos=None) -> None:
    """source | diffuse render | output for 6 frames over the clip; at native size where the target has its full
    frame (the crop's square cut from the pasted-back frames)."""

    picks = spread_indices(len(frames), 6).tolist()
    size, renderer = pipe.target.config.resolution, ConditioningRenderer()
    albedo = pipe.target.albedo.numpy()
    diffuse = [
        (renderer.render(drive, pipe.target.crop, size, frames=slice(i, i + 1), albedo=albedo)[0, :3] + 1) / 2
        for i in picks
    ]
    sources = [f for i, f in enumerate(VideoReader(source_video, max_frames=picks[-1] + 1)) if i in picks]
    shown = frames[picks]
    if pipe.has_reference:  # at the target's native size: the crop's square cut from the full frames
        torsos = None if torsos is None else [torsos[i] for i in picks]
        shown = [pipe.target.crop.cut(f) for f in evaluate_native.pasted(pipe, shown, torsos=torsos)]
    contact_sheet(
        [[sources[k], diffuse[k], shown[k]] for k in range(len(picks))],
        path,
        ["source", "diffuse render", "output"],
        height=shown[0].shape[0],
    )


def _identity(embedder, source_video, max_frames, frames, target_embeddings) -> dict:
    """dlib identity distances of the output to the target's real frames and to the source."""

    src_emb, _ = embedder.embed_frames(sample_frames(source_video, IDENTITY_FRAMES, max_frames))
    out_emb, found = embed_spread(embedder, frames)
    return {
        "identity_to_target": identity_distance(out_emb, target_embeddings),
        "identity_to_source": identity_distance(out_emb, src_emb),
        "identity_source_to_target": identity_distance(src_emb, target_embeddings),
        "identity_faces_found": found,
    }


def driven(
    pipe,
    source_video: str,
    max_frames: int | None = None,
    embedder=None,
    target_embeddings=None,
    sheet=None,
    torso: dict | None = None,
    limit_pose: bool = True,
    limit_expression: bool = True,
    native: dict | None = None,
    reference_torso: bool = True,
) -> dict:
    """Drive ``pipe`` with a source video and measure expression, pose, jitter (and identity with an embedder).

    ``sheet``: write a contact sheet there (source frame | diffuse render | output, 6 frames over the clip).
    ``torso``: what `self_reenactment` put in its ``torso`` dict: count the frames with a novel torso.
    ``limit_pose``, ``limit_expression``: as in the pipeline's call. ``native``: what `self_reenactment` put in
    its ``native`` dict: face detail against the target's real frames at native size (`evaluate_native`).
    Measured on the pipeline's crops (refined when the target has a refiner); the sheet, the detail and (where the
    target has its full frame) the novel-torso count on them pasted back, with the reference frame's torso below
    the jaw unless ``reference_torso`` is False (as the pipeline's option).
    """

    src = fit_sequence(track_video(source_video, max_frames=max_frames))  # tracked once, drives the pipeline too
    faces: list = []  # each frame's rendered face, for where paste-back keeps the reference torso
    out = pipe(
        source_parameters=src,
        watermark=False,
        progress=False,
        output_type="np",
        limit_pose=limit_pose,
        limit_expression=limit_expression,
        paste_back=False,
        invisible_watermark=False,
        int8=False,  # the model's own frames: int8's sub-grey-level noise alone moves face KID (offline_int8_default)
        callback_on_frame=lambda i, frame, cond: faces.append(rendered_face(cond)),
    )
    frames = (out.frames[0] * 255).round().astype(np.uint8)
    torsos = evaluate_native.torso_lines(pipe, faces, frames.shape[1]) if reference_torso else None
    if sheet:
        _driven_sheet(pipe, sheet, source_video, out.parameters, frames, torsos)
    track, got = retracked(frames, out.fps, "output")
    model = load_face_model()
    sv = model.shape(src.identity, src.expression)
    gv = model.shape(got.identity, got.expression)
    pose_err = pose_error_deg(src.rotation, got.rotation, out.stats["source_reference_frame"])
    result = {
        "source": source_video,
        "frames": len(frames),
        "mouth_opening_correlation": corr(topo.mouth_opening(sv), topo.mouth_opening(gv)),
        "eye_openness_correlation": corr(topo.eye_openness(sv).mean(1), topo.eye_openness(gv).mean(1)),
        "head_pose_error_deg": pose_err,
        "output_jitter_iod": jitter(got),
        "source_jitter_iod": jitter(src),
        "interpolated_output_frames": int((~track.detected).sum()),
        "frames_pose_limited": int(out.stats.get("frames_pose_limited", 0)),
        "frames_expression_limited": int(out.stats.get("frames_expression_limited", 0)),
    }
    if native and native.get("real") is not None:
        result["native"] = driven_scores(pipe, frames, track.landmarks[..., :2], native["real"], out.stats, torsos)
    if torso:
        shown = torch.from_numpy(frames).permute(0, 3, 1, 2)
        if pipe.has_reference:  # as a viewer sees them
            shown = evaluate_native.viewed_crops(pipe, frames, torsos)
        d = torso_novelty(torso["train"], torso_patches(shown))
        result.update(
            {"torso_novel_frames": int((d > torso["limit"]).sum()), "torso_novelty_median": float(np.median(d))}
        )
    if embedder is not None:
        result.update(_identity(embedder, source_video, max_frames, frames, target_embeddings))
    return result

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

import numpy as np
import torch

from . import evaluate_native
from .evaluate_native import RealFootage, driven_scores, self_scores
from .face import topology as topo
from .geometry import axis_angle_to_matrix, matrix_to_axis_angle
from .pipelines.finish import FrameFinisher
from .pipelines.finish import to_uint8 as tensor_to_uint8

IDENTITY_FRAMES = 24  # frames embedded per set: dlib's detector + ResNet cost ~0.1 s a frame on CPU
TORSO_ROWS, TORSO_COLS, TORSO_SIZE = (0.72, 1.0), (0.2, 0.8), 128  # the lower centre of the crop, at 128 px


def torso_patches(frames: torch.Tensor) -> torch.Tensor:
    """``[T, 3, H, W]`` frames (uint8, or floats in [0, 1]) -> their lower-centre regions ``[T, D]`` in grey levels."""
    out = []
    for s in range(0, len(frames), 128):
        x = frames[s : s + 128].float()
        x = x if frames.dtype == torch.uint8 else x * 255
        x = torch.nn.functional.interpolate(x, size=(TORSO_SIZE, TORSO_SIZE), mode="area")
        r0, c0, c1 = (int(f * TORSO_SIZE) for f in (TORSO_ROWS[0], *TORSO_COLS))
        out.append(x[:, :, r0:, c0:c1].flatten(1))
    return torch.cat(out)


def torso_novelty(train: torch.Tensor, query: torch.Tensor) -> np.ndarray:
    """Mean absolute difference (grey levels) of each `torso_patches` row of ``query`` to its nearest in ``train``."""
    return np.concatenate(
        [torch.cdist(query[s : s + 64], train, p=1).amin(1).numpy() / train.shape[1] for s in range(0, len(query), 64)]
    )


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


def _region_scores(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """PSNR inside ``mask`` ``[T, 1, H, W]`` and SSIM over the box that holds every masked pixel."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    mse = (((fake - real) ** 2) * mask).sum() / (mask.sum() * 3).clamp(min=1)
    ys, xs = torch.nonzero(mask.amax(0)[0], as_tuple=True)
    box = (slice(None), slice(None), slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
    return float(10 * torch.log10(1 / mse)), float(
        structural_similarity_index_measure(fake[box], real[box], data_range=1.0)
    )


def _scores(fake: torch.Tensor, real: torch.Tensor, face: torch.Tensor, mouth: torch.Tensor) -> dict:
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    psnr_face, ssim_face = _region_scores(fake, real, face)
    psnr_mouth, ssim_mouth = _region_scores(fake, real, mouth)
    return {
        "psnr": float(peak_signal_noise_ratio(fake, real, data_range=1.0)),
        "ssim": float(structural_similarity_index_measure(fake, real, data_range=1.0)),
        "psnr_face": psnr_face,
        "ssim_face": ssim_face,
        "psnr_mouth": psnr_mouth,
        "ssim_mouth": ssim_mouth,
    }


def nearest_frames(train: torch.Tensor, query: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Index of the training frame with the smallest pixel error to each query frame (compared at ``size`` px).

    train: ``[N, 3, H, W]`` uint8 (converted 128 frames at a time); query: ``[M, 3, H, W]`` in [0, 1].
    """

    def small(x):
        return torch.nn.functional.interpolate(x, size=(size, size), mode="area").flatten(1)

    t = torch.cat([small(train[i : i + 128].float() / 255) for i in range(0, len(train), 128)])
    q = small(query)
    dist = (q * q).sum(1, keepdim=True) - 2 * q @ t.T + (t * t).sum(1)[None]
    return dist.argmin(1)


def _retracked(frames: np.ndarray, fps: float, name: str):
    """``[T, H, W, 3]`` uint8 frames tracked and fitted as a source is: ``(track, FaceSequence)``."""
    from .face.fitting import fit_sequence
    from .face.tracker import FaceTracker

    with FaceTracker() as tracker:
        track = tracker.track(list(frames), fps=fps, name=name)
    return track, fit_sequence(track)


def _jitter(seq) -> float:
    """Landmark jitter of a fitted sequence, in inter-ocular distances."""
    from .face.smoothing import landmark_jitter

    return landmark_jitter(seq.landmarks, topo.interocular_distance(seq.landmarks))


def _pose_error_deg(reference_rotation: np.ndarray, rotation: np.ndarray, ref: int) -> float:
    """Mean angle (degrees) between two sequences' head rotations, each taken relative to its frame ``ref``."""
    ra, rb = axis_angle_to_matrix(reference_rotation), axis_angle_to_matrix(rotation)
    rel_a, rel_b = ra @ ra[ref].T, rb @ rb[ref].T
    return float(np.rad2deg(np.linalg.norm(matrix_to_axis_angle(rel_b @ np.swapaxes(rel_a, 1, 2)), axis=-1)).mean())


def _tracking_floor(real: torch.Tensor, fake: torch.Tensor, fitted, fps: float) -> dict:
    """What the re-tracking itself reads on the held-out frames at the crop's size: the floor a driven output's
    jitter and head-pose error are to be read against.

    The real held-out frames and their self-reenactment are re-tracked and fitted as `driven` re-tracks its
    output: their landmark jitter (a driven output is tracked at the crop's 256 px and its source at its own size,
    so a steady source filmed large, talking-d3: 0.009, can lie far below what the tracker reads on real footage
    of the target at the crop's size, the demo: 0.020-0.023), and their head-pose error against ``fitted``, the
    target's own fit of those frames in the full video (relative to its median-pose frame, as `driven` measures
    it against the source)."""
    from .errors import FaceTrackingError
    from .pipelines.retarget import median_pose_frame

    ref = median_pose_frame(fitted)
    out = {}
    for key, frames in (("real", real), ("self_output", fake)):
        imgs = (frames * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        try:
            _, seq = _retracked(imgs, fps, key)
        except FaceTrackingError:  # an untrained generator's output shows no face: nothing to read there
            out[f"{key}_jitter_iod"] = out[f"{key}_head_pose_error_deg"] = None
            continue
        out[f"{key}_jitter_iod"] = _jitter(seq)
        out[f"{key}_head_pose_error_deg"] = _pose_error_deg(fitted.rotation, seq.rotation, ref)
    return out


def self_reenactment(
    pipe,
    target_video: str,
    max_frames: int | None = None,
    embedder=None,
    sheet: str | None = None,
    torso: dict | None = None,
    native: dict | None = None,
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
    """
    from .errors import DVPError
    from .models.inference import generate_windows
    from .render.conditioning import ConditioningRenderer
    from .render.regions import box_mask, region_boxes
    from .video import VideoReader

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
    first = max(0, start - window + 1)
    cond = ConditioningRenderer().render(seq, crop, size, frames=slice(first, stop))
    pad = window - 1 - (start - first)  # history before frame 0 repeats frame 0, as in training
    cond = torch.cat([cond[:1].expand(pad, -1, -1, -1), cond]) if pad else cond
    # the pipeline's generator call, 8 frames at a time: cond index j is frame start - window + 1 + j
    raw = torch.cat(
        [generate_windows(pipe.generator, cond[s - start : min(stop, s + 8) - start + window - 1]) for s in range(start, stop, 8)]
    )
    refined = FrameFinisher(pipe, False, watermark=False, invisible_watermark=False).crops(raw)
    fake = torch.from_numpy(refined).permute(0, 3, 1, 2).float() / 255
    if fake.shape[-1] != size:  # the crop scores at the generator's size, as the baselines
        fake = torch.nn.functional.interpolate(fake, size=(size, size), mode="area")
    train, real = [], []
    for i, frame in enumerate(reader):
        if i >= offset + stop:
            break
        if i >= offset:
            img = torch.from_numpy(crop.apply(frame, size)).permute(2, 0, 1)
            (real if i >= offset + start else train).append(img)
    train = torch.stack(train)  # uint8: a minute of 256 px frames is ~200 MB
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
        **_scores(fake, real, face, mouth),
        "baseline_mean_frame": _scores(mean, real, face, mouth),
        "baseline_nearest_frame": _scores(nearest, real, face, mouth),
    }
    result.update(_tracking_floor(real, fake, seq.slice(start, stop), pipe.target.config.fps))
    if pipe.has_reference:
        footage = RealFootage.read(pipe, target_video, start, stop, nearest_index.tolist())
        result["native"] = self_scores(pipe, refined, tensor_to_uint8(raw), footage)
        if native is not None:
            native["real"] = footage
    train_torso = torso_patches(train)
    limit = float(torso_novelty(train_torso, torso_patches(real)).max())
    result["torso_novelty_real_max"] = limit  # real held-out frames are never farther than this
    result["torso_novel_frames"] = int((torso_novelty(train_torso, torso_patches(fake)) > limit).sum())
    if torso is not None:
        torso.update(train=train_torso, limit=limit)
    if sheet:
        from .identity import spread_indices

        picks = spread_indices(len(real), 6).tolist()
        rows = [[real[i], (cond[window - 1 + i, :3] + 1) / 2, fake[i]] for i in picks]
        height = 192
        if pipe.has_reference:  # at the target's native size: the crop's square cut from the full frames
            shown = evaluate_native.pasted(pipe, refined[picks])
            rows = [[crop.cut(footage.held_out[i]), r[1], crop.cut(shown[k])] for k, (i, r) in enumerate(zip(picks, rows))]
            height = rows[0][0].shape[0]
        contact_sheet(rows, sheet, ["real (held out)", "diffuse render", "output"], height=height)
    if embedder is not None:  # generated vs real validation frames: the same frames, the same person
        from .identity import identity_distance
        from .video import to_uint8

        ref, _ = _embed_spread(embedder, to_uint8(real.permute(0, 2, 3, 1).numpy()))
        emb, found = _embed_spread(embedder, to_uint8(fake.permute(0, 2, 3, 1).numpy()))
        result.update({"identity_to_real_frames": identity_distance(emb, ref), "identity_faces_found": found})
    return result


def contact_sheet(rows, path: str, titles: list[str] | None = None, height: int = 192) -> str:
    """One PNG of ``rows`` of images (``[3, H, W]`` tensors in [0, 1] or ``H x W x 3`` uint8), side by side.

    For a person to look at: source | diffuse render | output, a few frames spread over a clip.
    """
    from PIL import Image, ImageDraw

    def tile(img):
        a = img.permute(1, 2, 0).numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        a = (a * 255).round().clip(0, 255).astype(np.uint8) if a.dtype != np.uint8 else a
        im = Image.fromarray(a)
        return im.resize((round(im.width * height / im.height), height), Image.BILINEAR)

    tiles = [[tile(x) for x in row] for row in rows]
    head = 18 if titles else 0
    widths = [max(r[j].width for r in tiles) for j in range(len(tiles[0]))]
    sheet = Image.new("RGB", (sum(widths), head + height * len(tiles)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(titles or []):
        draw.text((sum(widths[:j]) + 4, 3), title, fill="black")
    for i, row in enumerate(tiles):
        for j, im in enumerate(row):
            sheet.paste(im, (sum(widths[:j]), head + i * height))
    sheet.save(path)
    return path


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


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
) -> dict:
    """Drive ``pipe`` with a source video and measure expression, pose, jitter (and identity with an embedder).

    ``sheet``: write a contact sheet there (source frame | diffuse render | output, 6 frames over the clip).
    ``torso``: what `self_reenactment` put in its ``torso`` dict: count the frames with a novel torso.
    ``limit_pose``, ``limit_expression``: as in the pipeline's call. ``native``: what `self_reenactment` put in
    its ``native`` dict: face detail against the target's real frames at native size (`evaluate_native`).
    Measured on the pipeline's crops (refined when the target has a refiner); the sheet shows them pasted back.
    """
    from .face.fitting import fit_sequence
    from .face.model import load_face_model
    from .face.tracker import track_video

    src = fit_sequence(track_video(source_video, max_frames=max_frames))  # tracked once, drives the pipeline too
    out = pipe(
        source_parameters=src,
        watermark=False,
        progress=False,
        output_type="np",
        limit_pose=limit_pose,
        limit_expression=limit_expression,
        paste_back=False,
        invisible_watermark=False,
    )
    frames = (out.frames[0] * 255).round().astype(np.uint8)
    if sheet:
        from .identity import spread_indices
        from .render.conditioning import ConditioningRenderer
        from .video import VideoReader

        picks = spread_indices(len(frames), 6).tolist()
        size, renderer = pipe.target.config.resolution, ConditioningRenderer()
        albedo = pipe.target.albedo.numpy()
        diffuse = [
            (renderer.render(out.parameters, pipe.target.crop, size, frames=slice(i, i + 1), albedo=albedo)[0, :3] + 1)
            / 2
            for i in picks
        ]
        sources = [f for i, f in enumerate(VideoReader(source_video, max_frames=picks[-1] + 1)) if i in picks]
        shown = frames[picks]
        if pipe.has_reference:  # at the target's native size: the crop's square cut from the full frames
            shown = [pipe.target.crop.cut(f) for f in evaluate_native.pasted(pipe, shown)]
        contact_sheet(
            [[sources[k], diffuse[k], shown[k]] for k in range(len(picks))],
            sheet,
            ["source", "diffuse render", "output"],
            height=shown[0].shape[0],
        )
    track, got = _retracked(frames, out.fps, "output")
    model = load_face_model()
    sv = model.shape(src.identity, src.expression)
    gv = model.shape(got.identity, got.expression)
    pose_err = _pose_error_deg(src.rotation, got.rotation, out.stats["source_reference_frame"])
    result = {
        "source": source_video,
        "frames": len(frames),
        "mouth_opening_correlation": _corr(topo.mouth_opening(sv), topo.mouth_opening(gv)),
        "eye_openness_correlation": _corr(topo.eye_openness(sv).mean(1), topo.eye_openness(gv).mean(1)),
        "head_pose_error_deg": pose_err,
        "output_jitter_iod": _jitter(got),
        "source_jitter_iod": _jitter(src),
        "interpolated_output_frames": int((~track.detected).sum()),
        "frames_pose_limited": int(out.stats.get("frames_pose_limited", 0)),
        "frames_expression_limited": int(out.stats.get("frames_expression_limited", 0)),
    }
    if native and native.get("real") is not None:
        result["native"] = driven_scores(pipe, frames, track.landmarks[..., :2], native["real"], out.stats)
    if torso:
        d = torso_novelty(torso["train"], torso_patches(torch.from_numpy(frames).permute(0, 3, 1, 2)))
        result.update(
            {"torso_novel_frames": int((d > torso["limit"]).sum()), "torso_novelty_median": float(np.median(d))}
        )
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

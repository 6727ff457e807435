"""The measures `dvp evaluate` shares between self-reenactment and driven runs: crop scores, nearest frames,
torso novelty (torn collars), re-tracking, jitter, pose error, identity sampling and contact sheets."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .errors import FaceTrackingError
from .face import topology as topo
from .face.fitting import fit_sequence
from .face.smoothing import landmark_jitter
from .face.tracker import FaceTracker
from .geometry import axis_angle_to_matrix, matrix_to_axis_angle
from .identity import sample_frames, spread
from .motion.retarget import median_pose_frame

IDENTITY_FRAMES = 24  # frames embedded per set: a sample, as dlib's detector + ResNet are slow on a CPU
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


def embed_spread(embedder, frames) -> tuple[np.ndarray, str]:
    """Embeddings of `IDENTITY_FRAMES` frames spread over ``frames``, and "found/tried"."""

    picked = spread(frames, IDENTITY_FRAMES)
    emb, found = embedder.embed_frames(picked)
    return emb, f"{found}/{len(picked)}"


def target_reference(embedder, target_video: str) -> np.ndarray:
    """Embeddings of the target's real frames, spread over its whole video."""

    return embedder.embed_frames(sample_frames(target_video, IDENTITY_FRAMES))[0]


def region_scores(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """PSNR inside ``mask`` ``[T, 1, H, W]`` and SSIM over the box that holds every masked pixel."""

    mse = (((fake - real) ** 2) * mask).sum() / (mask.sum() * 3).clamp(min=1)
    ys, xs = torch.nonzero(mask.amax(0)[0], as_tuple=True)
    box = (slice(None), slice(None), slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
    return float(10 * torch.log10(1 / mse)), float(
        structural_similarity_index_measure(fake[box], real[box], data_range=1.0)
    )


def crop_scores(fake: torch.Tensor, real: torch.Tensor, face: torch.Tensor, mouth: torch.Tensor) -> dict:

    psnr_face, ssim_face = region_scores(fake, real, face)
    psnr_mouth, ssim_mouth = region_scores(fake, real, mouth)
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


def retracked(frames: np.ndarray, fps: float, name: str):
    """``[T, H, W, 3]`` uint8 frames tracked and fitted as a source is: ``(track, FaceSequence)``."""

    with FaceTracker() as tracker:
        track = tracker.track(list(frames), fps=fps, name=name)
    return track, fit_sequence(track)


def jitter(seq) -> float:
    """Landmark jitter of a fitted sequence, in inter-ocular distances."""
    return landmark_jitter(seq.landmarks, topo.interocular_distance(seq.landmarks))


def pose_error_deg(reference_rotation: np.ndarray, rotation: np.ndarray, ref: int) -> float:
    """Mean angle (degrees) between two sequences' head rotations, each taken relative to its frame ``ref``."""
    ra, rb = axis_angle_to_matrix(reference_rotation), axis_angle_to_matrix(rotation)
    rel_a, rel_b = ra @ ra[ref].T, rb @ rb[ref].T
    return float(np.rad2deg(np.linalg.norm(matrix_to_axis_angle(rel_b @ np.swapaxes(rel_a, 1, 2)), axis=-1)).mean())


def tracking_floor(real: torch.Tensor, fake: torch.Tensor, fitted, fps: float) -> dict:
    """What the re-tracking itself reads on the held-out frames at the crop's size: the floor a driven output's
    jitter and head-pose error are to be read against.

    ``real`` (the held-out frames) and ``fake`` (their self-reenactment), ``[T, 3, H, W]`` in [0, 1] at ``fps``,
    are re-tracked and fitted as `driven` re-tracks its output. Returns ``{"real_jitter_iod",
    "real_head_pose_error_deg", "self_output_jitter_iod", "self_output_head_pose_error_deg"}``: the landmark jitter
    (`jitter`, in inter-ocular distances) and the mean head-pose error in degrees against ``fitted``, the target's
    own fit of those frames in the full video (`pose_error_deg`, relative to its median-pose frame, as `driven`
    measures it against the source); both None for a set where no face is tracked. A driven output is tracked at
    the crop's size and its source at its own size, so a source's jitter is no floor for its output's: a steady
    source filmed large can read far below the target's real frames at the crop's size
    (why: benchmarks/results/evaluate_demo_tracking_floor.json)."""

    ref = median_pose_frame(fitted)
    out = {}
    for key, frames in (("real", real), ("self_output", fake)):
        imgs = (frames * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        try:
            _, seq = retracked(imgs, fps, key)
        except FaceTrackingError:  # an untrained generator's output shows no face: nothing to read there
            out[f"{key}_jitter_iod"] = out[f"{key}_head_pose_error_deg"] = None
            continue
        out[f"{key}_jitter_iod"] = jitter(seq)
        out[f"{key}_head_pose_error_deg"] = pose_error_deg(fitted.rotation, seq.rotation, ref)
    return out


def contact_sheet(rows, path: str, titles: list[str] | None = None, height: int = 192) -> str:
    """One PNG of ``rows`` of images (``[3, H, W]`` tensors in [0, 1] or ``H x W x 3`` uint8), side by side.

    For a person to look at: source | diffuse render | output, a few frames spread over a clip.
    """

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


def corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])

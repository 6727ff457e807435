"""Motion transfer: the source's relative head pose, expression and gaze applied to the target.

Reenactment (the paper's full-head reenactment): with ``ref`` the source's reference (most neutral)
frame, ``pref`` its median-pose frame and ``tref`` the target's reference (median-pose) frame,

    R_out[t] = (R_src[t] R_src[pref]^T) R_tgt[tref]                  rotation change, in camera axes
    T_out[t] = T_tgt[tref] + (T_src[t] - T_src[pref]) * Z_tgt / Z_src  translation change, rescaled by depth
    e_out[t] = e_tgt[neutral] + (e_src[t] - e_src[ref])              relative expression
    g_out[t] = g_tgt[neutral] + (g_src[t] - g_src[ref])              relative gaze

then, by default, each pose is held near the target's trained poses (`pose_limits.PoseLimits`) and each
expression near its trained expressions outside the mouth and eyes (`expression_limits.ExpressionLimits`).
Dubbing keeps the target's own head motion, where the generator does not tear the collar, and passes the
expression on whole.

Identity, albedo and illumination stay the target's. Using the source's most neutral frame as the
reference (rather than its first frame) keeps a source that starts smiling from making the target
smile less for the rest of the clip.

Dubbing: the target keeps its own head pose, gaze and lighting, replayed from its training sequence
forwards and backwards to the source's length; the expression follows the source.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..face.fitting import project_sequence
from ..face.model import load_face_model
from ..face.mouth import close_mouth
from ..face.neutral import neutral_index
from ..face.sequence import FaceSequence
from ..geometry import axis_angle_to_matrix, matrix_to_axis_angle, unwrap_axis_angle
from .expression_limits import ExpressionLimits
from .pose_limits import SMOOTHING, PoseLimits

TRANSFERABLE = ("pose", "expression", "gaze")


def neutral_frame(seq: FaceSequence, frames: slice | None = None) -> int:
    """The most neutral frame: expression closest to the person's median, eyes open, mouth closed."""
    return neutral_index(seq.identity, seq.expression[frames] if frames is not None else seq.expression)


def median_pose_frame(seq: FaceSequence) -> int:
    """The frame whose head rotation and position are nearest the sequence's medians (each axis in its own
    spread): the centre of the motion, where relative pose transfer anchors the source."""
    pose = np.concatenate([seq.rotation, seq.translation], 1)
    z = (pose - np.median(pose, 0)) / (pose.std(0) + 1e-9)
    return int(np.argmin(np.linalg.norm(z, axis=1)))


def closed_neutral(seq: FaceSequence, frame: int, k: int | None = None) -> np.ndarray:
    """The expression of ``seq``'s neutral ``frame`` (first ``k`` modes) with closed lips (`face.mouth`): expressions
    are transferred as differences from it, so a closed source mouth drives a closed target mouth."""
    expr = seq.expression[frame] if k is None else seq.expression[frame, :k]
    return close_mouth(load_face_model(), seq.identity, expr)


def pingpong_index(k: int, length: int) -> int:
    """Which of ``length`` frames plays at step ``k`` of a forwards-then-backwards loop (0, 1, .., length-1,
    length-2, .., 1, 0, 1, ..): dubbing replays the target's own training frames this way, offline and live."""
    if length <= 1:
        return 0
    j = int(k) % (2 * length - 2)
    return j if j < length else 2 * length - 2 - j


def pingpong(n: int, length: int) -> np.ndarray:
    """`pingpong_index` of steps 0..n-1."""
    return np.array([pingpong_index(k, length) for k in range(n)], dtype=int)


@dataclass(frozen=True)
class SourceAnchor:
    """Where the source's relative motion is measured from: its rotation [3, 3] and translation [3] at its pose
    reference frame, and its closed-lip expression [K] (the target's K modes) and gaze [2] at its neutral frame."""

    rotation: np.ndarray
    translation: np.ndarray
    expression: np.ndarray
    gaze: np.ndarray

    @classmethod
    def of(cls, source: FaceSequence, k: int, ref: int, pose_ref: int) -> "SourceAnchor":
        """Offline: the anchor of a whole source sequence (its neutral frame ``ref``, its pose reference)."""
        return cls(
            axis_angle_to_matrix(source.rotation[pose_ref]),
            source.translation[pose_ref].copy(),
            closed_neutral(source, ref, k),
            source.gaze[ref].copy(),
        )

    @classmethod
    def of_frame(cls, frame: dict, identity: np.ndarray, k: int) -> "SourceAnchor":
        """Live: one reference frame (a per-frame dict, the calibration's) is both the neutral and the pose
        reference."""
        expression = close_mouth(load_face_model(), identity, frame["expression"][:k])
        return cls(axis_angle_to_matrix(frame["rotation"]), frame["translation"].copy(), expression, frame["gaze"].copy())


@dataclass(frozen=True)
class TargetAnchor:
    """What the driven frames start from on the target's side: its sequence, its reference (median-pose) frame
    ``ref``, its most neutral frame ``neutral`` and that frame's closed-lip expression."""

    sequence: FaceSequence
    ref: int
    neutral: int
    neutral_expression: np.ndarray

    @classmethod
    def of(cls, target: FaceSequence, ref: int, neutral: int | None = None, neutral_expression=None) -> "TargetAnchor":
        neutral = int(ref if neutral is None else neutral)
        expr = closed_neutral(target, neutral) if neutral_expression is None else neutral_expression
        return cls(target, int(ref), neutral, expr)


def reenact_frame(frame: dict, source: SourceAnchor, target: TargetAnchor, transfer=TRANSFERABLE) -> dict:
    """One source frame's parameters (``rotation`` axis-angle [3], ``translation`` [3], ``expression`` [>=K],
    ``gaze`` [2]) transferred to the target as the module docstring says, before any limits: the target's
    ``rotation``, ``translation``, ``expression`` and ``gaze`` for that frame."""
    tgt, r, n = target.sequence, target.ref, target.neutral
    if "pose" in transfer:
        rel = axis_angle_to_matrix(frame["rotation"]) @ source.rotation.T
        rotation = matrix_to_axis_angle(rel @ axis_angle_to_matrix(tgt.rotation[r]))
        scale = tgt.translation[r, 2] / source.translation[2]
        translation = tgt.translation[r] + (frame["translation"] - source.translation) * scale
    else:
        rotation, translation = tgt.rotation[r].copy(), tgt.translation[r].copy()
    k = tgt.expression.shape[1]
    if "expression" in transfer:
        expression = target.neutral_expression + (frame["expression"][:k] - source.expression)
    else:
        expression = tgt.expression[n].copy()
    gaze = tgt.gaze[n] + (frame["gaze"] - source.gaze) if "gaze" in transfer else tgt.gaze[n].copy()
    return {"rotation": rotation, "translation": translation, "expression": expression, "gaze": gaze}


def dub_frame(frame: dict, step: int, source: SourceAnchor, target: TargetAnchor, train_frames: int) -> dict:
    """Dubbing at ``step``: the target's own pose, gaze and lighting of training frame `pingpong_index`, and the
    source frame's expression relative to its anchor; also that frame's ``sh`` and its index ``frame``."""
    tgt = target.sequence
    i = pingpong_index(step, train_frames)
    k = tgt.expression.shape[1]
    return {
        "rotation": tgt.rotation[i].copy(),
        "translation": tgt.translation[i].copy(),
        "expression": target.neutral_expression + (frame["expression"][:k] - source.expression),
        "gaze": tgt.gaze[i].copy(),
        "sh": tgt.sh[i].copy(),
        "frame": i,
    }


def source_frames(source: FaceSequence):
    """The source's frames as the per-frame dicts `reenact_frame` and `dub_frame` take."""
    for t in range(len(source)):
        yield {
            "rotation": source.rotation[t],
            "translation": source.translation[t],
            "expression": source.expression[t],
            "gaze": source.gaze[t],
        }


def apply_limits(
    frames: dict, limits=None, expression_limits=None, smoothing: float = SMOOTHING, state: dict | None = None
) -> tuple[dict, int, int]:
    """``frames`` (``rotation``, ``translation``, ``expression`` stacked ``[T, ...]``) held near the target's
    trained poses (`pose_limits.PoseLimits`) and expressions (`expression_limits.ExpressionLimits`), where given;
    also how many frames each held visibly (`PoseLimits.held`, `ExpressionLimits.held`). Offline (``state`` None) the
    pulls are smoothed over ``smoothing`` frames both ways; live, one frame per call, ``state`` (a dict the caller
    keeps) smooths them causally across calls, and nothing is counted (0, 0): a live caller has no clip to report on."""
    out, pose_n, expr_n = dict(frames), 0, 0
    if limits is not None:
        sub = None if state is None else state.setdefault("pose", {})
        rot, out["translation"], _ = limits.apply(frames["rotation"], frames["translation"], smoothing, sub)
        out["rotation"] = unwrap_axis_angle(rot)
        if state is None:
            before, after = (frames["rotation"], frames["translation"]), (out["rotation"], out["translation"])
            pose_n = int(limits.held(before, after).sum())
    if expression_limits is not None:
        sub = None if state is None else state.setdefault("expression", {})
        out["expression"], _ = expression_limits.apply(frames["expression"], smoothing, sub)
        if state is None:
            expr_n = int(expression_limits.held(frames["expression"], out["expression"]).sum())
    return out, pose_n, expr_n


def _stack(frames: list[dict]) -> dict:
    return {key: np.stack([f[key] for f in frames]) for key in frames[0]}


def reenact(
    source: FaceSequence,
    target: FaceSequence,
    target_ref: int,
    source_ref: int | None = None,
    target_neutral: int | None = None,
    transfer=TRANSFERABLE,
    target_neutral_expression: np.ndarray | None = None,
    limits: PoseLimits | None = None,
    source_pose_ref: int | None = None,
    limit_smoothing: float = SMOOTHING,
    expression_limits: ExpressionLimits | None = None,
) -> FaceSequence:
    """The target's parameters driven by ``source``: `reenact_frame` on every frame, then `apply_limits`; one
    entry per source frame. ``source_ref``: the source's neutral frame (default `neutral_frame`);
    ``source_pose_ref``: the source frame whose head pose maps to the target's reference pose (default: the source's
    median pose, `median_pose_frame`, so that the source's motion is centred on the target's; the neutral
    expression frame can be anywhere in it). ``target_neutral`` (default ``target_ref``) and
    ``target_neutral_expression`` (its `closed_neutral`, where the caller has it): where the target's relative
    expression starts. ``limits`` / ``expression_limits``: keep the driven head and expressions within the
    target's trained range, smoothed over ``limit_smoothing`` frames; the frames each held visibly
    (`PoseLimits.held`, `ExpressionLimits.held`) are counted in the result's ``info["frames_pose_limited"]`` and
    ``info["frames_expression_limited"]``."""
    bad = set(transfer) - set(TRANSFERABLE)
    if bad:
        raise ValueError(f"transfer must be a subset of {TRANSFERABLE}, got {sorted(bad)}")
    ref = neutral_frame(source) if source_ref is None else int(source_ref)
    pref = median_pose_frame(source) if source_pose_ref is None else int(source_pose_ref)
    tgt = TargetAnchor.of(target, target_ref, target_neutral, target_neutral_expression)
    anchor = SourceAnchor.of(source, target.expression.shape[1], ref, pref)
    driven = _stack([reenact_frame(f, anchor, tgt, transfer) for f in source_frames(source)])
    driven["rotation"] = unwrap_axis_angle(driven["rotation"])
    driven, limited, expr_limited = apply_limits(driven, limits, expression_limits, limit_smoothing)
    info = {
        "mode": "reenact",
        "source_reference_frame": ref,
        "target_reference_frame": int(target_ref),
        "transfer": list(transfer),
        "frames_pose_limited": limited,
        "frames_expression_limited": expr_limited,
    }
    sh = np.repeat(target.sh[target_ref][None], len(source), 0)
    return assemble(target, {**driven, "sh": sh}, source.fps, source.eye_openness, info)


def dub(
    source: FaceSequence,
    target: FaceSequence,
    train_frames: int,
    source_ref: int | None = None,
    target_neutral: int | None = None,
    target_neutral_expression: np.ndarray | None = None,
) -> FaceSequence:
    """Visual dubbing: `dub_frame` on every source frame (the target's own head motion and lighting, the source's
    relative expression). ``target_neutral_expression``: `closed_neutral` of the target's neutral frame, where the
    caller has it."""
    ref = neutral_frame(source) if source_ref is None else int(source_ref)
    tneu = neutral_frame(target, slice(0, train_frames)) if target_neutral is None else target_neutral
    tgt = TargetAnchor.of(target, tneu, tneu, target_neutral_expression)
    anchor = SourceAnchor.of(source, target.expression.shape[1], ref, ref)
    driven = _stack([dub_frame(f, t, anchor, tgt, train_frames) for t, f in enumerate(source_frames(source))])
    driven.pop("frame")
    info = {"mode": "dub", "source_reference_frame": ref, "target_neutral": tneu}
    return assemble(target, driven, source.fps, source.eye_openness, info)


def assemble(target: FaceSequence, driven: dict, fps: float, openness: np.ndarray, info: dict) -> FaceSequence:
    """The driving `FaceSequence`: the target's identity, albedo and camera with the driven ``rotation``,
    ``translation``, ``expression``, ``gaze`` and ``sh`` (``[T, ...]`` each), the source's eye openness, and
    the landmarks these project to."""
    n = len(driven["rotation"])
    out = replace(
        target,
        rotation=driven["rotation"],
        translation=driven["translation"],
        expression=driven["expression"],
        gaze=driven["gaze"],
        sh=driven["sh"],
        eye_openness=openness,
        landmarks=np.zeros((n, 478, 2)),
        detected=np.ones(n, bool),
        fps=fps,
        info=info,
    )
    out.landmarks = project_sequence(out)
    return out


POSE_MARGIN_DEG = 5.0


def pose_range(drive: FaceSequence, target: FaceSequence, target_ref: int, train_frames: int) -> dict:
    """How far the driven head turns from the target's reference pose, against how far the target's own training
    frames turned: frames beyond that range (plus a margin) are extrapolated by the generator and look worse.
    """

    def angles(rot: np.ndarray) -> np.ndarray:
        rel = axis_angle_to_matrix(rot) @ axis_angle_to_matrix(target.rotation[target_ref]).T
        return np.rad2deg(np.linalg.norm(matrix_to_axis_angle(rel), axis=-1))

    trained = float(angles(target.rotation[:train_frames]).max())
    driven = angles(drive.rotation)
    return {
        "target_pose_range_deg": round(trained, 1),
        "max_pose_offset_deg": round(float(driven.max()), 1) if len(driven) else 0.0,
        "frames_beyond_target_pose_range": int((driven > trained + POSE_MARGIN_DEG).sum()),
    }

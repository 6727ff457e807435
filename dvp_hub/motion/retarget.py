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

from dataclasses import replace

import numpy as np

from ..face.model import load_face_model
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
    from ..face.mouth import close_mouth

    expr = seq.expression[frame] if k is None else seq.expression[frame, :k]
    return close_mouth(load_face_model(), seq.identity, expr)


def pingpong(n: int, length: int) -> np.ndarray:
    """Indices 0..length-1 played forwards then backwards, repeated to ``n`` entries."""
    if length <= 1:
        return np.zeros(n, dtype=int)
    period = np.concatenate([np.arange(length), np.arange(length - 2, 0, -1)])
    return period[np.arange(n) % len(period)]


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
    limit_state: dict | None = None,
    expression_limits: ExpressionLimits | None = None,
) -> FaceSequence:
    """The target's parameters driven by ``source`` (see the module docstring); one entry per source frame.
    ``target_neutral_expression``: `closed_neutral` of the target's neutral frame, where the caller has it.
    ``limits``: keep the driven head within the target's trained range (`pose_limits`); the number of frames it
    changed is in the result's ``info["frames_pose_limited"]``; ``limit_smoothing`` (frames) smooths the
    pull over time; a live caller, one frame per call, passes a ``limit_state`` dict that it keeps, and the
    pulls of both limits are smoothed causally across calls. ``source_pose_ref``: the source frame whose head
    pose maps to the target's reference pose (default: the source's median pose, `median_pose_frame`, so that
    the source's motion is centred on the target's; the neutral expression frame can be anywhere in it).
    ``expression_limits``: keep the driven expressions near the target's trained ones (counted in
    ``info["frames_expression_limited"]``), smoothed like the pose."""
    bad = set(transfer) - set(TRANSFERABLE)
    if bad:
        raise ValueError(f"transfer must be a subset of {TRANSFERABLE}, got {sorted(bad)}")
    n = len(source)
    ref = neutral_frame(source) if source_ref is None else int(source_ref)
    tneu = target_ref if target_neutral is None else target_neutral
    r_tref = axis_angle_to_matrix(target.rotation[target_ref])
    limited = expr_limited = 0
    if "pose" in transfer:
        pref = median_pose_frame(source) if source_pose_ref is None else int(source_pose_ref)
        r_src = axis_angle_to_matrix(source.rotation)
        rel = r_src @ r_src[pref].T
        rot = unwrap_axis_angle(matrix_to_axis_angle(rel @ r_tref))
        scale = target.translation[target_ref, 2] / source.translation[pref, 2]
        trans = target.translation[target_ref] + (source.translation - source.translation[pref]) * scale
        if limits is not None:
            state = None if limit_state is None else limit_state.setdefault("pose", {})
            rot, trans, changed = limits.apply(rot, trans, limit_smoothing, state)
            rot, limited = unwrap_axis_angle(rot), int(changed.sum())
    else:
        rot = np.repeat(target.rotation[target_ref][None], n, 0)
        trans = np.repeat(target.translation[target_ref][None], n, 0)
    k = target.expression.shape[1]
    if "expression" in transfer:
        t0 = closed_neutral(target, tneu) if target_neutral_expression is None else target_neutral_expression
        expr = t0 + (source.expression[:, :k] - closed_neutral(source, ref, k))
        if expression_limits is not None:
            state = None if limit_state is None else limit_state.setdefault("expression", {})
            expr, changed = expression_limits.apply(expr, limit_smoothing, state)
            expr_limited = int(changed.sum())
    else:
        expr = np.repeat(target.expression[tneu][None], n, 0)
    if "gaze" in transfer:
        gaze = target.gaze[tneu] + (source.gaze - source.gaze[ref])
    else:
        gaze = np.repeat(target.gaze[tneu][None], n, 0)
    return _assemble(
        target,
        rot,
        trans,
        expr,
        gaze,
        np.repeat(target.sh[target_ref][None], n, 0),
        source.fps,
        source.eye_openness,
        {
            "mode": "reenact",
            "source_reference_frame": ref,
            "target_reference_frame": int(target_ref),
            "transfer": list(transfer),
            "frames_pose_limited": limited,
            "frames_expression_limited": expr_limited,
        },
    )


def dub(
    source: FaceSequence,
    target: FaceSequence,
    train_frames: int,
    source_ref: int | None = None,
    target_neutral: int | None = None,
    target_neutral_expression: np.ndarray | None = None,
) -> FaceSequence:
    """Visual dubbing: the target's own head motion and lighting, the source's (relative) expression.
    ``target_neutral_expression``: `closed_neutral` of the target's neutral frame, where the caller has it."""
    n = len(source)
    ref = neutral_frame(source) if source_ref is None else int(source_ref)
    tneu = neutral_frame(target, slice(0, train_frames)) if target_neutral is None else target_neutral
    idx = pingpong(n, train_frames)
    k = target.expression.shape[1]
    t0 = closed_neutral(target, tneu) if target_neutral_expression is None else target_neutral_expression
    expr = t0 + (source.expression[:, :k] - closed_neutral(source, ref, k))
    return _assemble(
        target,
        target.rotation[idx],
        target.translation[idx],
        expr,
        target.gaze[idx],
        target.sh[idx],
        source.fps,
        source.eye_openness,
        {"mode": "dub", "source_reference_frame": ref, "target_neutral": tneu},
    )


def _assemble(target, rot, trans, expr, gaze, sh, fps, openness, info) -> FaceSequence:
    n = len(rot)
    out = replace(
        target,
        rotation=rot,
        translation=trans,
        expression=expr,
        gaze=gaze,
        sh=sh,
        eye_openness=openness,
        landmarks=np.zeros((n, 478, 2)),
        detected=np.ones(n, bool),
        fps=fps,
        info=info,
    )
    from ..face.fitting import project_sequence

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

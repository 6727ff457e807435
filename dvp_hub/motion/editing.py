"""Interactive editing: named expression controls learned from the target's own training sequence.

A control is a direction in expression space: the least-squares regression of the expression
coefficients on a measured quantity of the fitted face over the training frames (mouth opening for
``jaw_open``, mouth width for ``smile``, brow height for ``brows``, eye closure for ``blink``). One unit
is one standard deviation of that quantity in the training clip, so sliders mean the same for every
target.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import InputError
from ..face import topology as topo
from ..face.model import load_face_model
from ..face.sequence import FaceSequence
from ..geometry import axis_angle_to_matrix, euler_to_matrix, matrix_to_axis_angle, matrix_to_euler

CONTROLS = ("jaw_open", "smile", "brows", "blink")


def _measures(verts: np.ndarray) -> dict:
    brow = verts[:, [105, 334], 1].mean(1) - verts[:, [159, 386], 1].mean(1)  # y down: more negative = higher
    width = np.linalg.norm(verts[:, 61] - verts[:, 291], axis=-1) / np.linalg.norm(
        verts[:, 33] - verts[:, 263], axis=-1
    )
    return {
        "jaw_open": topo.mouth_opening(verts),
        "smile": width,
        "brows": -brow,
        "blink": -topo.eye_openness(verts).mean(1),
    }


def control_directions(seq: FaceSequence, frames: slice = slice(None)) -> dict[str, np.ndarray]:
    """Expression-space directions of the named controls (one standard deviation each)."""
    model = load_face_model()
    expr = seq.expression[frames]
    verts = model.shape(seq.identity, expr)
    out = {}
    centred = expr - expr.mean(0)
    for name, m in _measures(verts).items():
        mc = m - m.mean()
        var = float((mc**2).mean())
        if var < 1e-12:
            out[name] = np.zeros(expr.shape[1])
            continue
        out[name] = (centred * mc[:, None]).mean(0) / np.sqrt(var)  # E[e | m + 1 sd] - E[e | m]
    return out


def pose_ranges(seq: FaceSequence, index: int, frames: slice = slice(None), spread=(5, 95)) -> dict:
    """How far the head of training frame ``index`` can be turned and still be a pose the target was trained on:
    ``{"yaw": (lo, hi), "pitch": ..., "roll": ...}`` in degrees (camera axes, as `edited_frame` takes them), the
    ``spread`` percentiles of the training frames' rotations relative to that frame's, always including 0."""
    r0 = axis_angle_to_matrix(seq.rotation[index])
    rel = axis_angle_to_matrix(seq.rotation[frames]) @ r0.T
    angles = matrix_to_euler(rel)  # [T, 3] yaw, pitch, roll
    lo, hi = np.percentile(angles, spread, axis=0)
    return {k: (float(min(0.0, a)), float(max(0.0, b))) for k, a, b in zip(("yaw", "pitch", "roll"), lo, hi)}


def control_ranges(seq: FaceSequence, index: int, frames: slice = slice(None), spread=(0.2, 99.8)) -> dict:
    """How far each named control can move training frame ``index`` and stay within the expressions the target
    was trained on: ``{"jaw_open": (lo, hi), ...}`` in the controls' units (one standard deviation of the measure
    over ``frames``, as `control_directions`), the ``spread`` percentiles of the training frames' measures relative
    to that frame's, always including 0. The spread reaches into the tails on purpose: a blink is a few percent of
    a speech clip's frames, and its closed eyes are what the blink control is for."""
    model = load_face_model()
    train = _measures(model.shape(seq.identity, seq.expression[frames]))
    here = _measures(model.shape(seq.identity, seq.expression[index : index + 1]))
    out = {}
    for name, m in train.items():
        sd = float(m.std())
        if sd < 1e-12:
            out[name] = (0.0, 0.0)
            continue
        lo, hi = (np.percentile(m, spread) - float(here[name][0])) / sd
        out[name] = (float(min(0.0, lo)), float(max(0.0, hi)))
    return out


def pose_coupling(seq: FaceSequence, frames: slice = slice(None), ridge_deg: float = 1.0) -> np.ndarray:
    """How the target's head centre moves as its head turns, learned from its training frames: the ``[3, 3]`` map
    (ridge least squares) from a change of head rotation (yaw, pitch, roll in degrees, camera axes, as
    `edited_frame` takes them) to the change of the head centre's position in camera space. A head turns about the
    neck, not about its own centre, and a person-specific generator renders a turned head well only where the
    footage had it (its torso and collar follow the head's place). Rotations spread less than ``ridge_deg``
    degrees shrink the map towards zero (the head turns in place)."""
    model = load_face_model()
    rot = axis_angle_to_matrix(seq.rotation[frames])
    local = model.shape(seq.identity, seq.expression[frames]).mean(1)  # [T, 3] the face's centroid, model space
    centre = np.einsum("tij,tj->ti", rot, local) + seq.translation[frames]
    mean = axis_angle_to_matrix(matrix_to_axis_angle(rot.mean(0, keepdims=True)))[0]  # near the clip's mean pose
    angles = matrix_to_euler(rot @ mean.T)  # each frame as an edit of the mean pose would turn it
    e, c = angles - angles.mean(0), centre - centre.mean(0)
    return np.linalg.solve(e.T @ e + len(e) * ridge_deg**2 * np.eye(3), e.T @ c)


def edited_frame(
    seq: FaceSequence,
    index: int,
    yaw: float,
    pitch: float,
    roll: float,
    expression: dict,
    gaze: tuple[float, float],
    directions: dict[str, np.ndarray] | None = None,
    coupling: np.ndarray | None = None,
) -> FaceSequence:
    """A one-frame `FaceSequence`: frame ``index`` of ``seq`` with the edits applied.

    The head turns about its centre, and the centre moves as the target's own head moved when it turned
    (`pose_coupling`). directions, coupling: `control_directions` and `pose_coupling` of the target (computed
    from all of ``seq``'s frames when not given; callers making many edits compute them once, from the trained
    frames).
    """
    one = seq.slice(index, index + 1)
    r0 = axis_angle_to_matrix(one.rotation[0])
    rot = euler_to_matrix(yaw, pitch, roll) @ r0
    model = load_face_model()
    centre = model.shape(one.identity, one.expression).mean(1)[0]
    moved = 0.0
    if yaw or pitch or roll:
        coupling = pose_coupling(seq) if coupling is None else coupling
        moved = np.array([yaw, pitch, roll], np.float64) @ coupling
    trans = one.translation[0] + r0 @ centre + moved - rot @ centre
    expr = one.expression.copy()
    for key, amount in expression.items():
        if key.startswith("c") and key[1:].isdigit():
            k = int(key[1:])
            expr[0, k] += amount * model.std[k]
        else:
            if key not in CONTROLS:
                raise InputError(f"unknown expression control {key!r}; use one of {CONTROLS} or 'c<k>'.")
            if directions is None:
                directions = control_directions(seq)
            expr[0] += amount * directions[key]
    g = one.gaze + np.asarray(gaze, dtype=np.float64)[None, None, :]
    return replace(one, rotation=matrix_to_axis_angle(rot)[None], translation=trans[None], expression=expr, gaze=g)

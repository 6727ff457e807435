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


def edited_frame(
    seq: FaceSequence,
    index: int,
    yaw: float,
    pitch: float,
    roll: float,
    expression: dict,
    gaze: tuple[float, float],
    directions: dict[str, np.ndarray] | None = None,
) -> FaceSequence:
    """A one-frame `FaceSequence`: frame ``index`` of ``seq`` with the edits applied.

    directions: `control_directions` of the target (needed for named controls; computed once by the caller).
    """
    one = seq.slice(index, index + 1)
    rot = euler_to_matrix(yaw, pitch, roll) @ axis_angle_to_matrix(one.rotation[0])
    # rotate about the head centre, not the camera: keep the translation of the face's centroid
    model = load_face_model()
    centre = model.shape(one.identity, one.expression).mean(1)[0]
    r0 = axis_angle_to_matrix(one.rotation[0])
    trans = one.translation[0] + r0 @ centre - rot @ centre
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

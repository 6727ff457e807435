"""The most neutral frame of an expression sequence: expressions near the clip's median, lips closed, eyes open.

Retargeting measures expressions from it (offline, `motion.retarget.neutral_frame`) and live calibration picks its
reference with it (`face.live_fit`).
"""

from __future__ import annotations

import numpy as np

from . import topology as topo
from .model import load_face_model


def neutral_index(identity: np.ndarray, expr: np.ndarray) -> int:
    """`neutral_frame` of expressions ``[T, K]`` of one identity."""
    model = load_face_model()
    k = expr.shape[1]
    z = (expr - np.median(expr, 0)) / model.std[:k]
    score = np.sqrt((z**2).mean(1))
    mouth = np.empty(len(expr))
    eyes = np.empty(len(expr))
    for s in range(0, len(expr), 256):  # bounded temporaries whatever the length
        verts = model.shape(identity, expr[s : s + 256])
        mouth[s : s + 256] = topo.mouth_opening(verts)
        eyes[s : s + 256] = topo.eye_openness(verts).mean(1)
    score = score + 4.0 * np.maximum(mouth - np.percentile(mouth, 20), 0) + 4.0 * np.maximum(np.median(eyes) - eyes, 0)
    return int(np.argmin(score))

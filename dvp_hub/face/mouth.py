"""Closed lips for the neutral expressions that retargeting measures from (`close_mouth`)."""

from __future__ import annotations

import numpy as np

from . import topology as topo

# Mouth opening (inner-lip gap over mouth width, `topology.mouth_opening`) of closed lips: the 1st percentile of
# the offline fit over 300 frames of six shared clips is 0.003-0.031.
CLOSED_MOUTH = 0.02


def close_mouth(model, identity, expr, closed: float = CLOSED_MOUTH, steps: int = 6) -> np.ndarray:
    """``expr`` with its lips closed: the nearest expression (in the model's standard deviations) whose mouth
    opening is ``closed``; ``expr`` itself where the mouth is closed already.

    Expressions are transferred as differences from a neutral frame, and neither person's most neutral frame
    need have closed lips (the demo target's has an opening of 0.08; a live calibration often catches the
    source mid-word). Measured from closed-lip neutrals on both sides, a closed source mouth drives a closed
    target mouth.
    """
    e = np.asarray(expr, np.float64).copy()
    var = model.std[: len(e)] ** 2
    eps = 1e-3 * model.std[: len(e)]
    for _ in range(steps):
        o = topo.mouth_opening(model.shape(identity, e[None]))[0]
        if o - closed <= 5e-3:  # closed already (the common case: one shape, not the gradient's 64 more)
            break
        g = (topo.mouth_opening(model.shape(identity, e + np.diag(eps))) - o) / eps  # finite differences
        e -= (o - closed) * var * g / max(float(g @ (var * g)), 1e-12)
    return e

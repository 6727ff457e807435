"""Temporal smoothing of the fitted parameters, and the jitter measure used to check it.

Filter: a zero-phase Savitzky-Golay filter (a local least-squares polynomial fit, scipy's
``savgol_filter``) applied along time to each parameter: head rotation (axis-angle, unwrapped) and
translation with a 7-frame window, expression and gaze with a 5-frame window, both with quadratic
polynomials. A quadratic keeps the peaks of fast motions (a 3-frame blink keeps most of its depth)
while removing frame-to-frame tracker noise, and being zero-phase it adds no lag. Windows are in
frames at 30 fps and scale with the frame rate.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter

POSE_WINDOW_S = 7 / 30
EXPRESSION_WINDOW_S = 5 / 30
POLYORDER = 2


def _window(seconds: float, fps: float, n: int) -> int:
    w = max(int(round(seconds * fps)) | 1, POLYORDER + 1 + (POLYORDER + 1) % 2)
    while w > n:
        w -= 2
    return w


def smooth(x: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """Savitzky-Golay smoothing of ``[T, ...]`` along axis 0 (returned unchanged if too short)."""
    n = x.shape[0]
    w = _window(seconds, fps, n)
    if w <= POLYORDER:
        return x.copy()
    return savgol_filter(x, w, POLYORDER, axis=0, mode="interp")


def landmark_jitter(points: np.ndarray, scale: np.ndarray | None = None) -> float:
    """Mean magnitude of the second temporal difference (acceleration) of ``[T, V, 2]`` points.

    Divided per frame by ``scale`` (for example the inter-ocular distance) when given. Smooth motion
    has small acceleration; tracker noise shows up as large frame-to-frame acceleration.
    """
    if points.shape[0] < 3:
        return 0.0
    acc = np.linalg.norm(points[2:] - 2 * points[1:-1] + points[:-2], axis=-1).mean(-1)
    if scale is not None:
        acc = acc / scale[1:-1]
    return float(acc.mean())

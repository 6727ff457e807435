"""The nearest-example leash shared by the pose and the expression limits.

Each driven frame is a point in some space (a head pose in units of a just-visible change, an expression in
inter-ocular distances of mesh displacement); the target's training frames are points in the same space. A
driven point farther than ``radius`` from every training point is pulled straight towards the nearest one until
it is exactly ``radius`` away; nearer points are left alone. The pull is then smoothed over time, so that the
nearest training point switching from one frame to the next does not make the face jump: a Gaussian over the
clip offline, a one-pole filter across calls for a caller that sends one frame at a time (live). Offline, the
pull can be made again where smoothing left a frame beyond the radius (``passes``: in fast motion the nearest
training point changes every frame, and the smoothed pulls cancel).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

BLOCK_VALUES = 1 << 22  # at most this many floats in one [rows, N, D] difference block


def nearest(q: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``q`` ``[T, D]``: the index of the nearest row of ``points`` ``[N, D]`` and the distance."""
    index = np.zeros(len(q), dtype=int)
    dist = np.empty(len(q))
    rows = max(1, BLOCK_VALUES // max(1, points.size))  # bounded temporaries whatever the lengths
    for s in range(0, len(q), rows):
        d2 = ((q[s : s + rows, None] - points[None]) ** 2).sum(-1)
        index[s : s + rows] = np.argmin(d2, 1)
        dist[s : s + rows] = np.sqrt(d2.min(1))
    return index, dist


def toward(offset: np.ndarray, dist: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``offset`` (each row's way to its nearest training point, ``dist`` long) that leaves the row
    ``radius`` from it, and which rows move; rows within ``radius`` do not."""
    over = dist > radius
    f = np.where(over, radius / np.maximum(dist, 1e-12), 1.0)[:, None]
    return offset * (1 - f), over


def smooth(
    move: np.ndarray, changed: np.ndarray, smoothing: float, state: dict | None
) -> tuple[np.ndarray, np.ndarray]:
    """``move`` smoothed over time: a Gaussian of ``smoothing`` frames (offline), or with a ``state`` dict kept by a
    caller that sends one frame at a time, causally, each call going ``1 / (1 + smoothing)`` of the way from the
    last call's move to this one's (rows matched by position). Also which rows now move."""
    if state is not None:  # causal: one-pole filter over calls
        last = state.get("pull")
        if last is not None and last.shape == move.shape and smoothing > 0:
            move = last + (move - last) / (1 + smoothing)
        state["pull"] = move
        changed = np.abs(move).max(1) > 1e-6
    elif smoothing > 0 and len(move) > 1:
        move = gaussian_filter1d(move, smoothing, axis=0, mode="nearest")
        changed = np.abs(move).max(1) > 1e-6
    return move, changed


def pull(
    q: np.ndarray,
    points: np.ndarray,
    radius: float,
    smoothing: float = 0.0,
    state: dict | None = None,
    passes: int = 1,
    cap: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The move ``[T, D]`` that brings each row of ``q`` within ``radius`` of its nearest row of ``points``
    (smoothed, see `smooth`), and which rows it moves. Offline, a smoothed pull can leave a row of fast motion far
    from every point (its neighbours' pulls point different ways and cancel): with ``passes`` > 1 the rows still
    beyond ``radius`` are pulled again from where the last pass left them, and that pull smoothed too, up to
    ``passes`` passes in all. A pass's smoothing spreads onto the neighbouring rows, so a row may end a little
    farther from its nearest point than one pass left it. Unsmoothed (``smoothing`` <= 0) one pass is exact, and a
    caller that sends one frame at a time (``state``) gets one pass; there, ``cap`` bounds what the causal
    smoothing leaves: a row still farther than ``cap`` from its nearest point is pulled to ``cap`` at once,
    unsmoothed (a fast move outruns the one-pole filter)."""
    move = np.zeros(q.shape)
    for _ in range(1 if state is not None or smoothing <= 0 else max(1, passes)):
        index, dist = nearest(q + move, points)
        extra, over = toward(points[index] - (q + move), dist, radius)
        if state is None and not over.any():
            break
        extra, _ = smooth(extra, over, smoothing, state)
        move = move + extra
    if state is not None and cap is not None:
        index, dist = nearest(q + move, points)
        move = move + toward(points[index] - (q + move), dist, cap)[0]
    exact = state is None and not (smoothing > 0 and len(q) > 1)  # unsmoothed: the rows `toward` pulled
    return move, np.abs(move).max(1) > (0 if exact else 1e-6)

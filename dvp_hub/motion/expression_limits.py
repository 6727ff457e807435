"""Keep a driven expression near the faces the target's generator has seen.

A person-specific generator learnt its target's expressions only. Driven by someone who frowns, squints and
grimaces where the target only spoke calmly, it meets face renders unlike any it was trained on and answers with
a torn collar, a mottled face or a blurred neck (counted by `dvp evaluate`: frames whose collar region is farther
from every training frame than any real held-out frame is; see `evaluate_measures.torso_novelty`).

`ExpressionLimits` measures expressions by what they do to the face outside the mouth and the eyes: the mesh
displacement between two expressions, root-mean-square over those vertices, in inter-ocular distances of the
target's face (so a mode that barely moves a vertex barely counts). Each driven expression is pulled towards the
nearest expression of the target's training frames until it is at most ``radius`` from it (`leash.toward`,
smoothed over time by `leash.smooth` like the pose limit's first pass; one pass), and the pull is then projected so
that it leaves the mouth and eye vertices where the source put them (least squares over the shared expression
modes, the mouth and eyes weighted 4:1): a frown or a squint the target never made is made smaller, the mouth and
the blinks still follow the source.
The default radius (`RADIUS`) is about the median distance of a target's training frames to their nearest training
frame 15 or more frames away (the demo's: docs/figures-2026-11.md, 'Design measurements').

The limit removes torn collars and keeps the re-tracked mouth following the source; measured on the whole face and
pulling the mouth and eyes too, it makes the mouth follow less
(why: benchmarks/results/evaluate_demo_torso_expression_limit.json).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face import topology as topo
from ..face.model import load_face_model
from ..face.sequence import FaceSequence
from ..render.regions import REGIONS
from . import leash

RADIUS = 0.01  # RMS displacement of the face outside mouth and eyes, in inter-ocular distances
KEEP_WEIGHT = 4.0  # how much more the mouth and eye vertices count than the rest when the pull is projected


@dataclass
class ExpressionLimits:
    expressions: np.ndarray  # [N, K] the training frames' expression coefficients
    metric: np.ndarray  # [K, K] e @ metric: coordinates where Euclidean distance is the RMS displacement in IODs
    keep: np.ndarray  # [K, K] move @ keep: a pull in coefficients that leaves the mouth and eye vertices in place
    radius: float = RADIUS

    def __post_init__(self):
        self.points = self.expressions @ self.metric

    @classmethod
    def from_target(cls, target: FaceSequence, train_frames: int, radius: float = RADIUS) -> ExpressionLimits:
        """The expressions of the target's training frames (the first ``train_frames``)."""
        k = target.expression.shape[1]
        model = load_face_model()
        basis = model.basis[:k, : topo.NUM_MESH_VERTICES].astype(np.float64)  # [K, V, 3] offsets per coefficient
        iod = float(topo.interocular_distance(target.identity))
        kept = kept_vertices(target.identity)
        rest = np.setdiff1d(np.arange(topo.NUM_MESH_VERTICES), kept)

        def gram(vertices):  # [K, K]: RMS displacement over these vertices, in IODs, as a quadratic form
            flat = basis[:, vertices].reshape(k, -1) / (iod * np.sqrt(len(vertices)))
            return flat @ flat.T

        g_rest, g_kept = gram(rest), gram(kept)
        w, v = np.linalg.eigh(g_rest)
        metric = v * np.sqrt(np.clip(w, 0, None))  # metric @ metric.T == g_rest
        # least squares: the move m' closest to m on the rest while moving the kept vertices as little as possible
        keep = g_rest @ np.linalg.inv(KEEP_WEIGHT * g_kept + g_rest + 1e-9 * np.eye(k))
        n = max(1, int(train_frames))
        return cls(np.asarray(target.expression[:n], dtype=np.float64), metric, keep, radius)

    def distance(self, expression: np.ndarray) -> np.ndarray:
        """``[T]``: each ``[T, K]`` expression's distance (RMS displacement of the face outside mouth and eyes, in
        IODs) to the nearest training expression."""
        return leash.nearest(np.asarray(expression, np.float64) @ self.metric, self.points)[1]

    def held(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """``[T]`` bool: the frames whose ``[T, K]`` expression `apply` moved by at least ``radius`` (RMS displacement
        outside the mouth and eyes, in IODs) from ``before`` to ``after``: the smoothed pull touches every frame
        near a held one a little; this counts those it changed by as much as the target's own expressions differ."""
        moved = (np.asarray(after, np.float64) - np.asarray(before, np.float64)) @ self.metric
        return np.linalg.norm(moved, axis=1) >= self.radius

    def apply(
        self, expression: np.ndarray, smoothing: float = 0.0, state: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``[T, K]`` expressions, each pulled towards the nearest training expression until it is at most
        ``radius`` from it outside the mouth and eyes, those left as driven; also which frames were changed.
        ``smoothing`` and ``state`` as in `leash.smooth` (one pass)."""
        e = np.asarray(expression, np.float64)
        index, dist = leash.nearest(e @ self.metric, self.points)
        move, over = leash.toward(self.expressions[index] - e, dist, self.radius)  # straight, in coefficients
        move, changed = leash.smooth(move @ self.keep, over, smoothing, state)
        if not changed.any():
            return expression, changed
        return (e + move).astype(np.asarray(expression).dtype), changed


def kept_vertices(identity: np.ndarray) -> np.ndarray:
    """The mesh vertices of the mouth and the eyes (with lids and the skin just around them): those inside the
    boxes `render.regions` trains the mouth and eyes on, in the face's own frontal coordinates."""
    pts = identity[: topo.NUM_MESH_VERTICES, :2]
    inside = np.zeros(len(pts), bool)
    for idx, margin in REGIONS.values():
        lo, hi = identity[idx, :2].min(0), identity[idx, :2].max(0)
        grow = (hi - lo) * margin / 2
        inside |= np.all((pts >= lo - grow) & (pts <= hi + grow), 1)
    return np.nonzero(inside)[0]

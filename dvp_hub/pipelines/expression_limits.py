"""Keep a driven expression near the faces the target's generator has seen.

A person-specific generator learnt its target's expressions only. Driven by someone who frowns, squints and
grimaces where the target only spoke calmly, it meets face renders unlike any it was trained on and answers with
a torn collar, a mottled face or a blurred neck (the demo driven by talking-d3: 144 of 300 frames whose collar
region is farther from every training frame than any real held-out frame is; see `evaluate.torso_novelty`).

`ExpressionLimits` measures expressions by what they do to the face: the mesh displacement between two
expressions, root-mean-square over the vertices, in inter-ocular distances of the target's face (so a mode that
barely moves a vertex barely counts, and the jaw counts for what it moves). Each driven expression is pulled
towards the nearest expression of the target's training frames until it is at most ``radius`` from it
(`leash.pull`, smoothed over time like the pose limit). The radius is about the 99th percentile of the training
frames' own distance to their nearest training frame 15 or more frames away (0.022 on the demo target), so
the target's own expressions and most speech pass untouched, and a grimace keeps its direction at a size the
generator has seen.

Off by default (``limit_expression=True`` / ``--expression-limit``, reenact mode only): on the demo it cut the
frames with a novel torso from 144 to 93 of 300 (talking-d3) and from 85 to 62 of 200 (speech-wda), but made
the mouth follow less (re-tracked mouth r 0.92 -> 0.86 and 0.95 -> 0.93 offline; live, causally smoothed, talking-d3
0.84 -> 0.53), and on two clips nothing was tuned on it removed no torn frame (talking-d10 5 -> 4, anchor 5 -> 5)
while lowering talking-d10's mouth r from 0.97 to 0.92 and eye r from 0.86 to 0.75.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face import topology as topo
from ..face.model import load_face_model
from ..face.sequence import FaceSequence
from . import leash

RADIUS = 0.02  # root-mean-square vertex displacement, in inter-ocular distances, from the nearest training expression


@dataclass
class ExpressionLimits:
    expressions: np.ndarray  # [N, K] the training frames' expression coefficients
    metric: np.ndarray  # [K, K] e @ metric: coordinates where Euclidean distance is the RMS displacement in IODs
    radius: float = RADIUS

    def __post_init__(self):
        self.points = self.expressions @ self.metric

    @classmethod
    def from_target(cls, target: FaceSequence, train_frames: int, radius: float = RADIUS) -> ExpressionLimits:
        """The expressions of the target's training frames (the first ``train_frames``)."""
        k = target.expression.shape[1]
        basis = load_face_model().basis[:k].astype(np.float64)  # [K, V, 3] offsets per unit coefficient
        iod = float(topo.interocular_distance(target.identity))
        flat = basis.reshape(k, -1) / (iod * np.sqrt(basis.shape[1]))
        w, v = np.linalg.eigh(flat @ flat.T)
        metric = v * np.sqrt(np.clip(w, 0, None))  # metric @ metric.T == flat @ flat.T
        n = max(1, int(train_frames))
        return cls(np.asarray(target.expression[:n], dtype=np.float64), metric, radius)

    def distance(self, expression: np.ndarray) -> np.ndarray:
        """``[T]``: each ``[T, K]`` expression's distance (RMS displacement in IODs) to the nearest training one."""
        return leash.nearest(np.asarray(expression, np.float64) @ self.metric, self.points)[1]

    def apply(
        self, expression: np.ndarray, smoothing: float = 0.0, state: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``[T, K]`` expressions, each pulled towards the nearest training expression until it is at most
        ``radius`` from it, and which frames were changed; ``smoothing`` and ``state`` as in `leash.pull`."""
        e = np.asarray(expression, np.float64)
        index, dist = leash.nearest(e @ self.metric, self.points)
        move, over = leash.toward(self.expressions[index] - e, dist, self.radius)  # straight, in coefficients
        move, changed = leash.smooth(move, over, smoothing, state)
        if not changed.any():
            return expression, changed
        return (e + move).astype(np.asarray(expression).dtype), changed

"""The face fit of a live source, one frame at a time and causally.

Offline, `fitting.fit_sequence` sees the whole clip: the identity is the median over all frames and the
smoothing is zero-phase. Live, neither is possible. `LiveFaceFitter` instead:

1. calibrates on the first ``calibration_frames`` frames with a face (about a second): the identity is
   the median of their canonical shapes, and the most neutral of them (`retarget.neutral_frame`)
   becomes the reference that relative pose and expression are measured from; `recalibrate` starts
   over (a new person, or a better neutral face);
2. then fits each frame against that identity with the offline steps (`rigid_alignment`,
   `canonical_expression`, `perspective_refinement`: a few milliseconds);
3. smooths pose, expression and gaze with One-Euro filters (`one_euro`, parameters in `FILTERS`);
4. keeps looking for a more neutral reference: a second of calibration often catches the person
   mid-word, and a reference with the mouth half open makes every closed mouth afterwards a negative
   opening that the target's lips cannot follow (they fold back open). A later frame that scores more
   neutral (`neutral_score`: expression near the running mean of the last ``TYPICAL_SECONDS``, mouth
   closed, eyes open) becomes the new reference expression, blended in over ``REFERENCE_BLEND_SECONDS`` so
   the output does not jump.
"""

from __future__ import annotations

import numpy as np

from ..geometry import matrix_to_axis_angle
from . import topology as topo
from .fitting import canonical_expression, perspective_refinement, rigid_alignment
from .model import Camera, eye_gaze, load_face_model
from .one_euro import OneEuroFilter
from .sequence import FaceSequence

# One-Euro parameters (min_cutoff Hz, beta per unit/s). Measured on 200 frames (after calibration) of
# speech-wda / talking-d3: fitted-landmark jitter 0.0122 / 0.0027 IOD live against 0.0172 / 0.0038 for
# the offline (zero-phase) fit and 0.0299 / 0.0077 unsmoothed; mouth opening of the live fit correlates
# with the offline fit's at r = 0.977 / 0.967.
FILTERS = {
    "rotation": (1.5, 0.5),  # radians
    "translation": (1.5, 0.05),  # model units (cm)
    "expression": (3.0, 0.3),  # coefficients
    "gaze": (2.0, 0.5),
}


REFERENCE_BLEND_SECONDS = 0.3
REFERENCE_MARGIN = 0.02  # a candidate must score this much more neutral than the reference
# What "neutral" is measured against, chosen on the target's mouth opening before the generator (the drive)
# against the source's, 200 / 300 frames of speech-wda / talking-d3, r over the clip after calibration:
# (5 s, all 64 modes, mouth x4) 0.74 / 0.40; (2 s, 64, x4) 0.81 / 0.27; (2 s, 16, x8) 0.77 / 0.82 (kept).
TYPICAL_SECONDS = 2.0  # time constant of the running mean expression
NEUTRAL_MODES = 16  # the expression modes compared (the later ones, of small variance, are mostly fitting noise)
MOUTH_WEIGHT = 8.0


def neutral_score(model, identity, expr, typical, eyes_median, eyes) -> np.ndarray:
    """How far from neutral ``[T, K]`` expressions are (lower: more neutral): distance to the ``typical``
    expression over the main modes, mouth opening, eyes closed below their median."""
    k = min(expr.shape[1], NEUTRAL_MODES)
    z = (expr[:, :k] - typical[:k]) / model.std[:k]
    mouth = topo.mouth_opening(model.shape(identity, expr))
    return np.sqrt((z**2).mean(1)) + MOUTH_WEIGHT * mouth + 4.0 * np.maximum(eyes_median - eyes, 0)


class LiveFaceFitter:
    def __init__(self, width: int, height: int, calibration_frames: int = 30, num_expression: int = 64, filters=None):
        self.model = load_face_model()
        self.camera = Camera.for_image(width, height)
        self.calibration_frames = int(calibration_frames)
        self.num_expression = num_expression
        self._filter_params = {**FILTERS, **(filters or {})}
        self.recalibrate()

    def recalibrate(self) -> None:
        """Forget the identity and the reference frame; the next frames calibrate again."""
        self._calib: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.identity: np.ndarray | None = None
        self.reference: dict | None = None
        self._filters = {k: OneEuroFilter(mc, beta) for k, (mc, beta) in self._filter_params.items()}
        self._prev_rot: np.ndarray | None = None
        self._t_prev: float | None = None
        self.reference_updates = 0

    @property
    def calibrating(self) -> bool:
        return self.identity is None

    @property
    def calibration_progress(self) -> float:
        return 1.0 if self.identity is not None else len(self._calib) / self.calibration_frames

    def _solve(self, lm: np.ndarray, canon, rot, trans) -> dict:
        expr = canonical_expression(canon, self.identity, self.model, self.num_expression)
        gaze = eye_gaze(canon).astype(np.float64)
        rot, trans, expr = perspective_refinement(
            self.model, self.identity, expr, gaze, self.gaze_neutral, lm[..., :2], rot, trans, self.camera
        )
        return {
            "rotation": matrix_to_axis_angle(rot),
            "translation": trans,
            "expression": expr,
            "gaze": gaze,
            "eye_openness": topo.eye_openness(canon).astype(np.float64),
            "landmarks": lm[..., :2].astype(np.float32),
        }

    def _finish_calibration(self) -> None:
        from ..pipelines.retarget import neutral_frame

        lm = np.stack([c[0] for c in self._calib])
        canon = np.stack([c[1] for c in self._calib])
        self.identity = np.median(canon, axis=0)
        self.gaze_neutral = eye_gaze(self.identity[None])[0]
        fit = self._solve(lm, canon, np.stack([c[2] for c in self._calib]), np.stack([c[3] for c in self._calib]))
        seq = self.sequence({k: v for k, v in fit.items()}, fps=30.0)
        ref = neutral_frame(seq)
        self.reference = {k: v[ref].copy() for k, v in fit.items()}
        self._typical = np.median(fit["expression"], 0)
        self._eyes_median = float(np.median(fit["eye_openness"].mean(1)))
        self._ref_target = self.reference["expression"].copy()
        self._ref_eyes = float(np.mean(fit["eye_openness"][ref]))

    def _adapt_reference(self, params: dict, t: float) -> None:
        dt = 0.0 if self._t_prev is None else max(t - self._t_prev, 0.0)
        self._t_prev = t
        self._typical += (1.0 - np.exp(-dt / TYPICAL_SECONDS)) * (params["expression"] - self._typical)
        eyes = float(np.mean(params["eye_openness"]))
        cand, ref = neutral_score(
            self.model,
            self.identity,
            np.stack([params["expression"], self._ref_target]),
            self._typical,
            self._eyes_median,
            np.array([eyes, self._ref_eyes]),
        )
        if cand < ref - REFERENCE_MARGIN:
            self._ref_target, self._ref_eyes = params["expression"].copy(), eyes
            self.reference_updates += 1
        a = 1.0 - np.exp(-dt / REFERENCE_BLEND_SECONDS)
        self.reference["expression"] += a * (self._ref_target - self.reference["expression"])

    def fit(self, landmarks: np.ndarray, t: float) -> dict | None:
        """Parameters of one frame (``landmarks``: ``[478, 3]`` pixels, mediapipe depth) seen at time ``t``
        (seconds), filtered; None while calibrating."""
        lm = np.asarray(landmarks, np.float64)[None]
        canon, rot, trans = rigid_alignment(lm, self.model, self.camera)
        if self.identity is None:
            self._calib.append((lm[0], canon[0], rot[0], trans[0]))
            if len(self._calib) >= self.calibration_frames:
                self._finish_calibration()
            return None
        raw = {k: v[0] for k, v in self._solve(lm, canon, rot, trans).items()}
        rv = raw["rotation"]
        if self._prev_rot is not None and np.dot(rv, self._prev_rot) < 0 and np.linalg.norm(rv) > np.pi / 2:
            rv = rv - 2 * np.pi * rv / np.linalg.norm(rv)  # the same rotation, continuous with the last one
        self._prev_rot = rv
        raw["rotation"] = rv
        for k, f in self._filters.items():
            raw[k] = f(raw[k], t)
        self._adapt_reference(raw, t)
        return raw

    def sequence(self, frames: dict, fps: float) -> FaceSequence:
        """A `FaceSequence` of fitted frames (``frames``: per-key arrays ``[T, ...]``)."""
        n = len(frames["rotation"])
        return FaceSequence(
            camera=self.camera,
            rotation=np.asarray(frames["rotation"], np.float64),
            translation=np.asarray(frames["translation"], np.float64),
            identity=self.identity,
            expression=np.asarray(frames["expression"], np.float64),
            gaze=np.asarray(frames["gaze"], np.float64),
            gaze_neutral=self.gaze_neutral,
            eye_openness=np.asarray(frames["eye_openness"], np.float64),
            albedo=np.zeros((topo.NUM_VERTICES, 3)),
            sh=np.zeros((n, 9, 3)),
            landmarks=np.asarray(frames["landmarks"], np.float32),
            detected=np.ones(n, bool),
            fps=fps,
        )

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
4. closes the reference's lips (`mouth.close_mouth`): a second of calibration often catches the person
   mid-word, and a reference with the mouth half open would make every closed mouth afterwards a negative
   opening that the target's lips cannot follow (they fold back open, a pursed "o"). Measured from a
   closed-lip reference, a closed mouth drives a closed mouth from the first frame after calibration.
   The reference stays fixed until `recalibrate`: with closed lips, one that keeps moving to more neutral
   frames makes the drive follow the source's mouth no better (why: docs/figures-2026-11.md, 'Design measurements').
"""

from __future__ import annotations

import numpy as np

from ..geometry import matrix_to_axis_angle
from . import topology as topo
from .fitting import canonical_expression, perspective_refinement, rigid_alignment
from .model import Camera, eye_gaze, load_face_model
from .mouth import close_mouth
from .neutral import neutral_index
from .one_euro import OneEuroFilter
from .sequence import FaceSequence

# One-Euro parameters (min_cutoff Hz, beta per unit/s): live landmarks at least as steady as the offline
# (zero-phase) fit's, the mouth opening still following it (why: docs/figures-2026-11.md, 'Design measurements').
FILTERS = {
    "rotation": (1.5, 0.5),  # radians
    "translation": (1.5, 0.05),  # model units (cm)
    "expression": (3.0, 0.3),  # coefficients
    "gaze": (2.0, 0.5),
}


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
        lm = np.stack([c[0] for c in self._calib])
        canon = np.stack([c[1] for c in self._calib])
        self.identity = np.median(canon, axis=0)
        self.gaze_neutral = eye_gaze(self.identity[None])[0]
        # The reference is chosen on the canonical expressions (a linear solve) and only it is refined, so that the
        # end of calibration costs no camera frame; refining every calibration frame first picks the same frame or
        # an adjacent one (why: docs/figures-2026-11.md, 'Design measurements').
        ref = neutral_index(self.identity, canonical_expression(canon, self.identity, self.model, self.num_expression))
        c = self._calib[ref]
        fit = self._solve(lm[ref : ref + 1], canon[ref : ref + 1], c[2][None], c[3][None])
        self.reference = {k: v[0].copy() for k, v in fit.items()}
        self.reference["expression"] = close_mouth(self.model, self.identity, self.reference["expression"])

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

"""Keep a driven head where the target's generator has seen heads.

A person-specific generator knows only the head poses and image placements of its training clip. Relative
motion transfer (`retarget.reenact`) adds the source's head motion to the target's reference pose, so a source
that moves more than the target did puts the target's head where it never was, and the generator paints a
doubled or shattered head there (plainly so with a tight head-and-shoulders crop, where the head fills the
picture). The range is joint, not per axis: a head pitched up where the target only pitched up while low in the
picture is as new to the generator as a head beyond any bound. `PoseLimits` holds the poses of the target's
training frames (rotation away from its reference, image position of the head's centre, depth) in units of
a just-visible change; `PoseLimits.apply` pulls each driven pose towards its nearest training pose until it is
at most ``radius`` units away. Poses near the training ones are left alone; the others stop at that distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face.model import Camera
from ..face.sequence import FaceSequence
from ..geometry import axis_angle_to_matrix, matrix_to_axis_angle
from . import leash

# One unit of pose distance: this much rotation per axis, head movement in the image (in face widths) or depth.
UNIT_DEG = 2.0
UNIT_FACE = 0.03
UNIT_DEPTH = 0.01
SMOOTHING = 2.0  # frames: the Gaussian over the pull, offline
VISIBLE = 1.0  # units: a frame whose pose the limit moved this far or more is counted as held (`PoseLimits.held`)
RADIUS = 0.25  # how far (in units) a driven pose may be from the nearest pose of the target's training frames
# (why: fewer torn collars, little more head-pose error: benchmarks/results/evaluate_demo_torso_expression_limit.json)
PASSES = 4  # offline pulls (`leash.pull`): one left the poses of a fast nod far from every training pose, where the
# generator paints a doubled head (why: benchmarks/results/pose_limit_passes_cpu.json)
LIVE_CAP = 1.0  # units: live, a pose the causal smoothing left farther than this from every training pose is pulled
# to it at once (the same fast nod outran the one-pole filter)


@dataclass
class PoseLimits:
    reference: np.ndarray  # [3, 3] the target's reference rotation
    poses: np.ndarray  # [N, 6] training poses in units: rotation from the reference, image position, depth
    scale: np.ndarray  # [6] the size of one unit in each coordinate (radians, pixels, depth)
    centre: np.ndarray  # [3] the head's centre in model space (the target's identity)
    camera: Camera
    radius: float = RADIUS

    @classmethod
    def from_target(
        cls, target: FaceSequence, train_frames: int, reference_frame: int, radius: float = RADIUS
    ) -> PoseLimits:
        """The poses of the target's training frames (the first ``train_frames``)."""
        n = max(1, int(train_frames))
        rotation, translation = target.rotation[:n], target.translation[:n]
        centre = target.identity.mean(0)
        depth = float(np.median((_centre_offset(rotation, centre) + translation)[:, 2]))
        face_px = target.camera.focal * np.ptp(target.identity[:, 0]) / depth
        scale = np.array([np.deg2rad(UNIT_DEG)] * 3 + [UNIT_FACE * face_px] * 2 + [UNIT_DEPTH * depth])
        ref = axis_angle_to_matrix(target.rotation[reference_frame])
        limits = cls(ref, np.zeros((0, 6)), scale, centre, target.camera, radius)
        limits.poses = limits.coordinates(rotation, translation)
        return limits

    def coordinates(self, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
        """``[T, 3]`` axis-angle rotations and translations as poses in units ``[T, 6]``."""
        rel = matrix_to_axis_angle(axis_angle_to_matrix(rotation) @ self.reference.T)
        p = _centre_offset(rotation, self.centre) + translation
        return np.concatenate([rel, self.camera.project(p), p[:, 2:]], 1) / self.scale

    def held(self, before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """``[T]`` bool: the frames whose pose (``(rotation, translation)``, ``[T, 3]`` each) `apply` moved by at least
        `VISIBLE` units from ``before`` to ``after``. The smoothed pull touches every frame near a held one a little;
        this counts the frames where a viewer would see the head move less than the source's."""
        moved = self.coordinates(*after) - self.coordinates(*before)
        return np.linalg.norm(moved, axis=1) >= VISIBLE

    def apply(
        self, rotation: np.ndarray, translation: np.ndarray, smoothing: float = 0.0, state: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[T, 3]`` axis-angle rotations and translations, each pulled towards the nearest training pose until it
        is at most ``radius`` units from it; also which frames were changed. ``smoothing`` and ``state`` as in
        `leash.smooth` (a Gaussian offline, a one-pole filter across calls live), so that the nearest training pose
        switching from one frame to the next does not make the head jump; offline, pulled again (`PASSES`) where
        the smoothing left a pose of fast motion beyond ``radius``; live, pulled to `LIVE_CAP` at once where the
        causal smoothing left it farther."""
        q = self.coordinates(rotation, translation)
        move, changed = leash.pull(q, self.poses, self.radius, smoothing, state, passes=PASSES, cap=LIVE_CAP)
        if not changed.any():
            return rotation, translation, changed
        q = (q + move) * self.scale
        rot = matrix_to_axis_angle(axis_angle_to_matrix(q[:, :3]) @ self.reference)
        z = q[:, 5:]
        xy = (q[:, 3:5] - np.array([self.camera.cx, self.camera.cy])) / self.camera.focal * z
        trans = np.concatenate([xy, z], 1) - _centre_offset(rot, self.centre)
        return np.where(changed[:, None], rot, rotation), np.where(changed[:, None], trans, translation), changed


def _centre_offset(rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Where the head's centre sits relative to the translation, for ``[T, 3]`` axis-angle rotations."""
    return np.einsum("tij,j->ti", axis_angle_to_matrix(rotation), centre)

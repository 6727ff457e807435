"""The parametric face model: mean face, linear expression basis, gaze, and the pinhole camera.

A face in frame t is ``X_t = identity + sum_k expression[t, k] * basis[k]`` in the canonical head
frame (centimetres; x from the right eye to the left eye, y down, z into the head), with the irises
moved by the eye gaze. The camera sees ``P = R_t X + T_t`` and projects it with a pinhole:

    u = f * P_x / P_z + c_x,    v = f * P_y / P_z + c_y

Focal-length convention: ``f = focal_factor * max(width, height)`` pixels with ``focal_factor = 1``
by default (a 53 degree field of view across the longer image side, typical of phone and webcam
footage), principal point at the image centre.

The asset ``assets/face_model.safetensors`` is built by ``scripts/build_face_model.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load_file

from . import topology as topo

ASSET = os.path.join(os.path.dirname(__file__), "assets", "face_model.safetensors")
DEFAULT_FOCAL_FACTOR = 1.0


@dataclass(frozen=True)
class Camera:
    """Pinhole camera in pixels: focal length ``focal``, principal point (cx, cy), image size."""

    focal: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def for_image(cls, width: int, height: int, focal_factor: float = DEFAULT_FOCAL_FACTOR) -> "Camera":
        return cls(focal_factor * max(width, height), width / 2.0, height / 2.0, int(width), int(height))

    def project(self, points: np.ndarray) -> np.ndarray:
        """``[..., 3]`` camera-space points -> ``[..., 2]`` pixels."""
        z = np.maximum(points[..., 2:3], 1e-6)
        return points[..., :2] / z * self.focal + np.array([self.cx, self.cy])

    def crop(self, x0: float, y0: float, size: float, out_size: int) -> "Camera":
        """The camera of the square crop ``[x0, x0 + size) x [y0, y0 + size)`` resized to ``out_size``."""
        s = out_size / size
        return Camera(self.focal * s, (self.cx - x0) * s, (self.cy - y0) * s, out_size, out_size)


class FaceModel:
    """Mean face, expression basis and triangles (see the module docstring)."""

    def __init__(self, path: str = ASSET):
        data = load_file(path)
        self.mean_shape = data["mean_shape"].astype(np.float64)  # [478, 3]
        self.basis = data["expression_basis"].astype(np.float64)  # [K, 478, 3], orthonormal rows
        self.std = data["expression_std"].astype(np.float64)  # [K]
        self.triangles = data["triangles"].astype(np.int64)  # [852, 3]
        self.eye_triangles = data["eye_triangles"].astype(np.int64)  # [28, 3]

    @property
    def num_expression(self) -> int:
        return int(self.basis.shape[0])

    def expression_offsets(self, expression: np.ndarray) -> np.ndarray:
        """``[T, K]`` coefficients -> ``[T, 478, 3]`` canonical offsets."""
        k = expression.shape[-1]
        return np.einsum("tk,kvc->tvc", expression, self.basis[:k])

    def shape(
        self,
        identity: np.ndarray,
        expression: np.ndarray,
        gaze: np.ndarray | None = None,
        gaze_neutral: np.ndarray | None = None,
    ) -> np.ndarray:
        """Canonical vertices ``[T, 478, 3]`` of ``identity`` under ``expression`` and eye ``gaze``.

        gaze: ``[T, 2, 2]`` per eye (right, left) iris offset from the eye-corner midpoint in eye widths
        (x, y); the irises of ``identity`` sit at ``gaze_neutral``.
        """
        verts = identity[None] + self.expression_offsets(expression)
        if gaze is not None:
            ref = eye_gaze(identity[None])[0] if gaze_neutral is None else gaze_neutral
            for e, (iris, corners) in enumerate(
                ((topo.RIGHT_IRIS, topo.RIGHT_EYE_CORNERS), (topo.LEFT_IRIS, topo.LEFT_EYE_CORNERS))
            ):
                width = np.linalg.norm(identity[corners[0]] - identity[corners[1]])
                shift = (gaze[:, e] - ref[e]) * width  # [T, 2]
                verts[:, iris, :2] += shift[:, None, :]
        return verts


def eye_gaze(canonical: np.ndarray) -> np.ndarray:
    """Per-eye iris position relative to the eye, ``[T, 478, 3]`` canonical -> ``[T, 2, 2]``.

    For each eye (right, left): (iris centre - eye-corner midpoint) / eye width, in the canonical
    x (towards the subject's left) and y (down) axes.
    """
    out = []
    for centre, (c0, c1) in ((468, topo.RIGHT_EYE_CORNERS), (473, topo.LEFT_EYE_CORNERS)):
        mid = (canonical[:, c0] + canonical[:, c1]) / 2
        width = np.linalg.norm(canonical[:, c0] - canonical[:, c1], axis=-1, keepdims=True)
        out.append((canonical[:, centre, :2] - mid[:, :2]) / width)
    return np.stack(out, 1)


@lru_cache(maxsize=2)
def load_face_model(path: str = ASSET) -> FaceModel:
    """The shipped face model (cached)."""
    return FaceModel(path)


@lru_cache(maxsize=4)
def _incidence(triangles_key: bytes, num_vertices: int):
    tri = np.frombuffer(triangles_key, dtype=np.int64).reshape(-1, 3)
    rows = tri.reshape(-1)
    cols = np.repeat(np.arange(len(tri)), 3)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, len(tri)))


def vertex_normals(verts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``[T, V, 3]`` of meshes ``[T, V, 3]``."""
    v0, v1, v2 = (verts[:, triangles[:, i]] for i in range(3))
    fn = np.cross(v1 - v0, v2 - v0)  # [T, F, 3]
    t, f, _ = fn.shape
    m = _incidence(np.ascontiguousarray(triangles, dtype=np.int64).tobytes(), verts.shape[1])
    n = (m @ fn.transpose(1, 0, 2).reshape(f, t * 3)).reshape(-1, t, 3).transpose(1, 0, 2)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)

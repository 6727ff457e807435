"""Rigid-motion maths shared by fitting, rendering and the pipeline (numpy, batched).

Conventions: camera coordinates as OpenCV (x right, y down, z forward, away from the camera);
rotations as axis-angle vectors (``[..., 3]``, radians) or matrices (``[..., 3, 3]``); a point
``X`` in the canonical head frame goes to the camera as ``R @ X + t``.
"""

from __future__ import annotations

import numpy as np


def skew(v: np.ndarray) -> np.ndarray:
    """``[..., 3] -> [..., 3, 3]`` cross-product matrices."""
    z = np.zeros_like(v[..., 0])
    return np.stack(
        [
            np.stack([z, -v[..., 2], v[..., 1]], -1),
            np.stack([v[..., 2], z, -v[..., 0]], -1),
            np.stack([-v[..., 1], v[..., 0], z], -1),
        ],
        -2,
    )


def axis_angle_to_matrix(rv: np.ndarray) -> np.ndarray:
    """Rodrigues' formula, batched: ``[..., 3] -> [..., 3, 3]``."""
    rv = np.asarray(rv, dtype=np.float64)
    theta = np.linalg.norm(rv, axis=-1, keepdims=True)[..., None]
    k = skew(rv / np.maximum(theta[..., 0], 1e-12))
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)


def matrix_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """Inverse of `axis_angle_to_matrix` (angles in [0, pi]), batched."""
    r = np.asarray(r, dtype=np.float64)
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(cos)
    w = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1)
    sin = np.sin(theta)
    small = sin < 1e-6
    axis = w / np.where(small, 1.0, 2 * sin)[..., None]
    out = axis * theta[..., None]
    if np.any(small & (theta > 1.0)):  # near pi: use the diagonal
        idx = np.nonzero(small & (theta > 1.0))
        for i in zip(*idx) if idx else []:
            m = r[i]
            a = np.sqrt(np.maximum((np.diag(m) + 1) / 2, 0))
            j = int(np.argmax(a))
            a = m[:, j] + np.eye(3)[j]
            out[i] = a / np.linalg.norm(a) * np.pi
    return np.where(small[..., None] & (theta[..., None] <= 1.0), w / 2, out)


def unwrap_axis_angle(rv: np.ndarray) -> np.ndarray:
    """Make a ``[T, 3]`` axis-angle sequence continuous (flip to the equivalent 2pi - theta form)."""
    out = rv.copy()
    for t in range(1, len(out)):
        th = np.linalg.norm(out[t])
        if th > 1e-8:
            alt = out[t] / th * (th - 2 * np.pi)
            if np.linalg.norm(alt - out[t - 1]) < np.linalg.norm(out[t] - out[t - 1]):
                out[t] = alt
    return out


def euler_to_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head-centric angles in degrees -> rotation matrix (camera frame, OpenCV axes).

    yaw turns about the vertical (y) axis, pitch about x, roll about z; R = Rz(roll) Ry(yaw) Rx(pitch).
    """
    y, p, r = np.deg2rad([yaw, pitch, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def matrix_to_euler(r: np.ndarray) -> np.ndarray:
    """Inverse of `euler_to_matrix`, batched: ``[..., 3, 3] -> [..., 3]`` (yaw, pitch, roll) in degrees."""
    yaw = np.arcsin(np.clip(-r[..., 2, 0], -1, 1))
    pitch = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.rad2deg(np.stack([yaw, pitch, roll], -1))


def similarity_align(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None):
    """Umeyama similarity ``dst ~ s * R @ src + t``, batched over a leading axis.

    src: ``[N, 3]`` (shared) or ``[B, N, 3]``; dst: ``[B, N, 3]``. Returns s ``[B]``, R ``[B, 3, 3]``,
    t ``[B, 3]``.
    """
    dst = np.asarray(dst, dtype=np.float64)
    src = np.broadcast_to(np.asarray(src, dtype=np.float64), dst.shape)
    w = np.ones(dst.shape[-2]) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s = np.einsum("n,bnk->bk", w, src)
    mu_d = np.einsum("n,bnk->bk", w, dst)
    xs, xd = src - mu_s[:, None], dst - mu_d[:, None]
    cov = np.einsum("n,bni,bnj->bij", w, xd, xs)
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    sfix = np.ones_like(sig)
    sfix[:, 2] = d
    r = u @ (sfix[..., None] * vt)
    var_s = np.einsum("n,bnk->b", w, xs**2)
    s = (sig * sfix).sum(-1) / var_s
    t = mu_d - s[:, None] * np.einsum("bij,bj->bi", r, mu_s)
    return s, r, t


def einsum(equation: str, *operands: np.ndarray) -> np.ndarray:
    """``np.einsum`` computed by torch (batched BLAS), for the heavy contractions of the fit; numpy itself for a
    few frames (the live path fits one frame at a time, where torch's per-call overhead dominates)."""
    import torch  # lazy: torch takes seconds; dvp track imports this numpy module and refuses bad input before a fit

    if len(operands[0]) <= 4:
        return np.einsum(equation, *operands)
    return torch.einsum(equation, *[torch.from_numpy(np.ascontiguousarray(o)) for o in operands]).numpy()

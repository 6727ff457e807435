"""Reflectance and illumination: per-vertex albedo and 2nd-order spherical harmonics.

Lambertian skin under distant light: the colour of vertex v in frame t is

    c[t, v] = albedo[v] * (Y(n[t, v]) @ sh[t])          (per RGB channel)

with ``Y`` the 9 real SH basis functions of the camera-space normal and ``sh[t]`` a ``[9, 3]``
irradiance (27 coefficients a frame; the Lambertian convolution is folded into them). Albedo and
lighting are fitted jointly by alternating least squares over the visible vertices' colours: with
the albedo fixed each frame's 27 coefficients are a linear least-squares problem, with the lighting
fixed each vertex's albedo is. The scale ambiguity is fixed by making the mean shading of the
visible vertices 1.
"""

from __future__ import annotations

import numpy as np

from ..geometry import einsum

# Real SH normalisation constants for bands 0, 1, 2.
_C0 = 0.282095
_C1 = 0.488603
_C2 = 1.092548
_C3 = 0.315392
_C4 = 0.546274


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """``[..., 3]`` unit normals -> ``[..., 9]`` real SH basis values."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    return np.stack(
        [
            np.full_like(x, _C0),
            _C1 * y,
            _C1 * z,
            _C1 * x,
            _C2 * x * y,
            _C2 * y * z,
            _C3 * (3 * z * z - 1),
            _C2 * x * z,
            _C4 * (x * x - y * y),
        ],
        -1,
    )


def shading(normals: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """Irradiance ``[T, V, 3]`` of normals ``[T, V, 3]`` under lighting ``[T, 9, 3]``."""
    return einsum("tvk,tkc->tvc", sh_basis(normals), sh)


def solve_sh(
    colors: np.ndarray, normals: np.ndarray, albedo: np.ndarray, visible: np.ndarray, ridge: float = 1e-3
) -> np.ndarray:
    """Per-frame least-squares lighting ``[T, 9, 3]`` given the albedo ``[V, 3]``."""
    y = sh_basis(normals) * visible[..., None]  # [T, V, 9]
    a = y[..., None] * albedo[None, :, None, :]  # [T, V, 9, 3]
    ata = einsum("tvkc,tvlc->tckl", a, a) + ridge * np.eye(9)
    atb = einsum("tvkc,tvc->tck", a, colors * visible[..., None])
    return np.linalg.solve(ata, atb[..., None])[..., 0].transpose(0, 2, 1)


def fit_albedo_sh(colors: np.ndarray, normals: np.ndarray, visible: np.ndarray, iterations: int = 6):
    """Joint albedo ``[V, 3]`` and lighting ``[T, 9, 3]`` (see the module docstring).

    colors: ``[T, V, 3]`` observed RGB in [0, 1]; normals: ``[T, V, 3]`` camera-space unit normals;
    visible: ``[T, V]`` bool. Vertices never visible get the mean albedo.
    """
    vis = visible.astype(np.float64)
    cnt = vis.sum(0)
    seen = cnt > 0
    albedo = (colors * vis[..., None]).sum(0) / np.maximum(cnt, 1)[:, None]
    albedo[~seen] = albedo[seen].mean(0) if seen.any() else 0.5
    sh = None
    for _ in range(iterations):
        sh = solve_sh(colors, normals, albedo, vis)
        s = shading(normals, sh)  # [T, V, 3]
        num = (colors * s * vis[..., None]).sum(0)
        den = (s * s * vis[..., None]).sum(0)
        albedo = np.where(den > 1e-8, num / np.maximum(den, 1e-8), albedo)
        # fix the scale: mean visible shading = 1
        mean_s = (s * vis[..., None]).sum((0, 1)) / max(vis.sum(), 1)
        albedo = albedo * mean_s
        sh = sh / mean_s
        albedo[~seen] = albedo[seen].mean(0) if seen.any() else 0.5
    albedo = np.clip(albedo, 0.0, 1.5)
    return albedo, solve_sh(colors, normals, albedo, vis)

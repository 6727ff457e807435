"""The three conditioning shaders of Deep Video Portraits, over one rasterization.

- diffuse: the face under the frame's illumination, albedo x SH irradiance (Gouraud: shaded at the
  vertices, interpolated across triangles);
- correspondence: every pixel coloured by the canonical (mean-face) 3D position of its surface
  point, normalised to [0, 1] over the mean face's bounding box, so the network knows which part of
  the face it is looking at (both from one interpolation: `diffuse_and_correspondence`);
- `gaze_map`: only the eye regions, sclera white, with each iris drawn as a blue disc at its gaze
  position (the paper's eye-gaze image).

They return the colours of the covered pixels in [0, 1], three channels per image; the renderer scatters
them into images that are black where there is no face.
"""

from __future__ import annotations

import torch

from .rasterizer import Fragments, interpolate_hits


def canonical_positions(mean_shape):
    """``[V, 3]`` the face model's mean shape scaled to [0, 1] per axis: the colours the correspondence image shades, and
    what a correspondence pixel (in [-1, 1]) says about where on the face it lies."""
    return (mean_shape - mean_shape.min(0)) / (mean_shape.max(0) - mean_shape.min(0))


def diffuse_and_correspondence(
    fragments: Fragments, faces: torch.Tensor, vertex_colors: torch.Tensor, canonical01: torch.Tensor
) -> torch.Tensor:
    """``[P, 6]`` at the covered pixels: the diffuse colours (shaded per-vertex colours ``[B, V, 3]``, albedo x SH
    irradiance from `face.lighting.shading`, clamped to [0, 1]), then the canonical positions (``canonical01``:
    ``[V, 3]`` in [0, 1]); one interpolation serves both."""
    canonical = canonical01.to(vertex_colors.dtype).expand(vertex_colors.shape[0], -1, -1)
    return interpolate_hits(fragments, faces, torch.cat([vertex_colors.clamp(0, 1), canonical], -1))


def gaze_map(
    fragments: Fragments, first_eye_face: int, iris_centres: torch.Tensor, iris_radii: torch.Tensor
) -> torch.Tensor:
    """``[P, 3]``: eye regions (triangles ``>= first_eye_face``) white, iris discs blue, else black.

    iris_centres: ``[B, 2, 2]`` screen positions (x, y) of the two iris centres; iris_radii: ``[B, 2]``.
    """
    _, h, w = fragments.pix_to_face.shape
    eye = fragments.faces >= first_eye_face  # [P]
    out = torch.zeros(fragments.pixels.shape[0], 3, device=fragments.bary.device)
    idx = eye.nonzero().squeeze(1)
    pix = fragments.pixels[idx]
    bi = pix // (h * w)
    x = (pix % w).float() + 0.5
    y = ((pix // w) % h).float() + 0.5
    iris = torch.zeros_like(idx, dtype=torch.bool)
    for e in range(2):
        d2 = (x - iris_centres[bi, e, 0]) ** 2 + (y - iris_centres[bi, e, 1]) ** 2
        iris |= d2 <= iris_radii[bi, e] ** 2
    sclera = (~iris).float()
    out[idx, 0] = sclera
    out[idx, 1] = sclera
    out[idx, 2] = 1.0
    return out

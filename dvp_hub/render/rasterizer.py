"""A batched triangle rasterizer in plain torch (CPU and CUDA): z-buffer and barycentrics.

No installable library rasterizes on CPU and CUDA alike without a compiled extension, so this one is
hand-written. It enumerates, for every triangle, the pixel centres inside its bounding box
(``repeat_interleave`` over the boxes, so work is proportional to the covered area, not to
pixels x triangles), computes barycentric coordinates from per-triangle affine edge functions, keeps
the candidates inside the triangle, and resolves visibility with a per-pixel ``scatter_reduce``
minimum of the depth. Like pytorch3d, it returns a frozen `Fragments` that any number of shaders can
reuse.

Screen convention: ``verts[..., 0]`` is x in pixels (right), ``[..., 1]`` y in pixels (down), pixel
``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)``; ``[..., 2]`` is depth (smaller is nearer).
Barycentrics are screen-space (affine), which is accurate for the small triangles of a face mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Fragments:
    """Rasterization output.

    pix_to_face: ``[B, H, W]`` int64 triangle index, -1 where no triangle covers the pixel.
    zbuf: ``[B, H, W]`` interpolated depth (+inf on background).
    pixels: ``[P]`` flat indices (into ``B * H * W``) of the covered pixels.
    faces: ``[P]`` the triangle seen at each covered pixel; bary: ``[P, 3]`` its barycentric weights.
    The covered pixels are kept sparse because shaders only need them; `bary_image` gives the dense
    ``[B, H, W, 3]`` form.
    """

    pix_to_face: torch.Tensor
    zbuf: torch.Tensor
    pixels: torch.Tensor
    faces: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self.pix_to_face >= 0

    @property
    def batch_index(self) -> torch.Tensor:
        b, h, w = self.pix_to_face.shape
        return self.pixels // (h * w)

    def bary_image(self) -> torch.Tensor:
        b, h, w = self.pix_to_face.shape
        out = torch.zeros(b * h * w, 3, device=self.bary.device)
        out[self.pixels] = self.bary
        return out.view(b, h, w, 3)


def _edge_coefficients(tri: torch.Tensor):
    """Affine barycentric functions ``l_i(x, y) = a_i x + b_i y + c_i`` of triangles ``[N, 3, 2]``."""
    x0, y0 = tri[:, 0, 0], tri[:, 0, 1]
    x1, y1 = tri[:, 1, 0], tri[:, 1, 1]
    x2, y2 = tri[:, 2, 0], tri[:, 2, 1]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    ok = area.abs() > 1e-9
    inv = torch.where(ok, 1.0 / torch.where(ok, area, torch.ones_like(area)), torch.zeros_like(area))
    # l0 is the weight of vertex 0: edge (1, 2); l1: edge (2, 0); l2: edge (0, 1).
    a = torch.stack([y1 - y2, y2 - y0, y0 - y1], -1) * inv[:, None]
    b = torch.stack([x2 - x1, x0 - x2, x1 - x0], -1) * inv[:, None]
    c = torch.stack([x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0], -1) * inv[:, None]
    return a, b, c, ok


def rasterize(verts: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> Fragments:
    """Rasterize ``B`` meshes sharing ``faces`` ``[F, 3]``; ``verts``: ``[B, V, 3]`` screen x, y, depth."""
    device = verts.device
    bsz, f = verts.shape[0], faces.shape[0]
    tri = verts[:, faces].reshape(bsz * f, 3, 3).float()  # [B*F, 3, 3]
    xy = tri[..., :2]
    # Pixel-index bounding boxes of the pixel centres each triangle may cover.
    lo = torch.ceil(xy.amin(1) - 0.5).clamp(min=0)
    hi = torch.floor(xy.amax(1) - 0.5)
    hi[:, 0] = hi[:, 0].clamp(max=width - 1)
    hi[:, 1] = hi[:, 1].clamp(max=height - 1)
    a, b, c, ok = _edge_coefficients(xy)
    ok &= tri[..., 2].amin(1) > 0  # in front of the camera
    wh = (hi - lo + 1).clamp(min=0).long()
    counts = torch.where(ok, wh[:, 0] * wh[:, 1], torch.zeros_like(wh[:, 0]))
    total = int(counts.sum())
    npix = bsz * height * width
    zbuf = torch.full((npix,), float("inf"), device=device)
    pix_to_face = torch.full((npix,), -1, dtype=torch.long, device=device)
    if total > 0:
        # One gather of packed per-triangle data per candidate (index_select is the fast gather).
        coef = torch.cat([a, b, c, tri[..., 2]], 1)  # [B*F, 12]
        box = torch.stack([lo[:, 0].long(), lo[:, 1].long(), wh[:, 0], torch.cumsum(counts, 0) - counts], 1)
        tid = torch.repeat_interleave(torch.arange(bsz * f, device=device), counts, output_size=total)
        tb = box.index_select(0, tid)
        off = torch.arange(total, device=device) - tb[:, 3]
        row = torch.div(off, tb[:, 2], rounding_mode="floor")
        px = tb[:, 0] + off - row * tb[:, 2]
        py = tb[:, 1] + row
        tc = coef.index_select(0, tid)
        fx, fy = (px.float() + 0.5)[:, None], (py.float() + 0.5)[:, None]
        lam = tc[:, 0:3] * fx + tc[:, 3:6] * fy + tc[:, 6:9]
        keep = (lam.amin(1) >= -1e-5).nonzero().squeeze(1)
        tid, lam, tz = tid.index_select(0, keep), lam.index_select(0, keep), tc.index_select(0, keep)[:, 9:12]
        z = (lam * tz).sum(1)
        img = torch.div(tid, f, rounding_mode="floor")
        key = img * (height * width) + py.index_select(0, keep) * width + px.index_select(0, keep)
        zbuf.scatter_reduce_(0, key, z, reduce="amin", include_self=True)
        win = (z <= zbuf.index_select(0, key)).nonzero().squeeze(1)
        pix_to_face.scatter_reduce_(
            0, key.index_select(0, win), (tid - img * f).index_select(0, win), reduce="amax", include_self=True
        )
    pixels = (pix_to_face >= 0).nonzero().squeeze(1)
    faces_hit = pix_to_face[pixels]
    t = (pixels // (height * width)) * f + faces_hit
    fx = (pixels % width).float()[:, None] + 0.5
    fy = ((pixels // width) % height).float()[:, None] + 0.5
    bary = (a.index_select(0, t) * fx + b.index_select(0, t) * fy + c.index_select(0, t)).clamp(0, 1)
    bary = bary / bary.sum(-1, keepdim=True).clamp(min=1e-8)
    return Fragments(pix_to_face.view(bsz, height, width), zbuf.view(bsz, height, width), pixels, faces_hit, bary)


def interpolate_hits(fragments: Fragments, faces: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Per-vertex ``attributes`` ``[B, V, C]`` interpolated at the covered pixels -> ``[P, C]``."""
    bsz, nv, ch = attributes.shape
    vid = faces.index_select(0, fragments.faces) + (fragments.batch_index * nv)[:, None]  # [P, 3]
    vals = attributes.reshape(bsz * nv, ch).index_select(0, vid.reshape(-1)).view(-1, 3, ch)
    w = fragments.bary.to(attributes.dtype)
    # the three terms added explicitly: a reduction over the middle axis of [P, 3, C] is three times slower on CPU
    return vals[:, 0] * w[:, 0:1] + vals[:, 1] * w[:, 1:2] + vals[:, 2] * w[:, 2:3]


def interpolate(fragments: Fragments, faces: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Barycentric interpolation of per-vertex ``attributes`` ``[B, V, C]`` -> ``[B, C, H, W]`` (0 off-mesh)."""
    bsz, h, w = fragments.pix_to_face.shape
    out = torch.zeros(bsz * h * w, attributes.shape[-1], device=attributes.device, dtype=attributes.dtype)
    out[fragments.pixels] = interpolate_hits(fragments, faces, attributes)
    return out.view(bsz, h, w, -1).permute(0, 3, 1, 2)

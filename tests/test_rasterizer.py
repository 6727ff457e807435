import numpy as np
import torch

from dvp_hub.render.rasterizer import interpolate, rasterize


def _tri(points, z=1.0):
    v = torch.tensor([[p[0], p[1], z] for p in points], dtype=torch.float32)
    return v


def test_coverage_of_a_known_triangle():
    # right triangle with legs 8 px: pixel centres (x+.5, y+.5) with x + y + 1 <= 8 -> 36 pixels
    verts = _tri([(0, 0), (8, 0), (0, 8)])[None]
    frags = rasterize(verts, torch.tensor([[0, 1, 2]]), 10, 10)
    mask = frags.mask[0].numpy()
    ys, xs = np.mgrid[0:10, 0:10]
    expected = (xs + 0.5 + ys + 0.5) <= 8.0 + 1e-6
    assert (mask == expected).all() and mask.sum() == 36


def test_depth_order_of_overlapping_triangles():
    near = _tri([(0, 0), (10, 0), (0, 10)], z=1.0)
    far = _tri([(0, 0), (10, 0), (10, 10)], z=2.0)
    verts = torch.cat([far, near])[None]
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    frags = rasterize(verts, faces, 10, 10)
    p2f = frags.pix_to_face[0]
    assert p2f[1, 2] == 1  # covered by both: the near one (face 1) wins
    assert p2f[8, 9] == 0  # only the far one
    assert p2f[9, 0] == 1  # only the near one
    assert frags.zbuf[0, 1, 2] == 1.0 and torch.isinf(frags.zbuf[0, 9, 9]) is not None
    # and swapping the face order does not change the winner
    frags2 = rasterize(verts, faces.flip(0), 10, 10)
    assert frags2.pix_to_face[0, 1, 2] == 0


def test_attribute_interpolation_is_exact_for_linear_functions():
    verts = _tri([(1, 1), (30, 3), (5, 28)])[None]
    faces = torch.tensor([[0, 1, 2]])
    # attribute = a linear function of screen position: interpolation must reproduce it
    attr = (verts[..., :2] @ torch.tensor([[0.5], [-0.25]])) + 3.0
    frags = rasterize(verts, faces, 32, 32)
    img = interpolate(frags, faces, attr)[0, 0]
    ys, xs = torch.nonzero(frags.mask[0], as_tuple=True)
    expected = 0.5 * (xs + 0.5) - 0.25 * (ys + 0.5) + 3.0
    assert torch.allclose(img[ys, xs], expected, atol=1e-4)
    assert (img[~frags.mask[0]] == 0).all()


def test_batched_meshes_are_independent():
    a = _tri([(0, 0), (8, 0), (0, 8)])
    b = _tri([(8, 8), (2, 8), (8, 2)])
    frags = rasterize(torch.stack([a, b]), torch.tensor([[0, 1, 2]]), 10, 10)
    assert frags.mask[0, 0, 0] and not frags.mask[1, 0, 0]
    assert frags.mask[1, 7, 7] and not frags.mask[0, 7, 7]
    assert torch.allclose(frags.bary.sum(-1), torch.ones(len(frags.pixels)))


def test_behind_camera_triangles_are_dropped():
    verts = _tri([(0, 0), (8, 0), (0, 8)], z=-1.0)[None]
    frags = rasterize(verts, torch.tensor([[0, 1, 2]]), 10, 10)
    assert not frags.mask.any()

"""Fitting on synthetic projections of a known face, and on a real clip."""

import numpy as np
import pytest

from dvp_hub.face import topology as topo
from dvp_hub.face.fitting import fit_sequence, reprojection_error
from dvp_hub.face.lighting import fit_albedo_sh, sh_basis, solve_sh
from dvp_hub.face.model import Camera, load_face_model, vertex_normals
from dvp_hub.face.tracker import FaceTrack
from dvp_hub.geometry import axis_angle_to_matrix, euler_to_matrix, matrix_to_axis_angle, matrix_to_euler


def _synthetic_track(rots, expr, width=480, height=480):
    """Project the mean face (with expression) through known poses into a FaceTrack."""
    model = load_face_model()
    cam = Camera.for_image(width, height)
    verts = model.shape(model.mean_shape, expr)
    p = np.einsum("tij,tnj->tni", rots, verts) + np.array([0.5, -0.3, 60.0])
    uv = cam.project(p)
    # mediapipe's depth: relative to the head centre, in the pixel scale of x
    z = (p[..., 2] - p[..., 2].mean(1, keepdims=True)) * cam.focal / p[..., 2].mean(1, keepdims=True)
    lm = np.concatenate([uv, z[..., None]], -1).astype(np.float32)
    t = len(rots)
    return FaceTrack(lm, np.full((t, 478, 3), 0.5, np.float32), np.ones(t, bool), width, height, 30.0), cam


def test_pose_and_expression_recovered_from_synthetic_projections():
    model = load_face_model()
    angles = [(0, 0, 0), (20, -10, 5), (-25, 8, -6), (10, 15, 0), (-5, -5, 12)]
    rots = np.stack([euler_to_matrix(*a) for a in angles])
    rng = np.random.default_rng(0)
    expr = np.zeros((len(rots), model.num_expression))
    expr[1:, :8] = rng.normal(size=(len(rots) - 1, 8)) * model.std[:8]
    track, cam = _synthetic_track(rots, expr)
    seq = fit_sequence(track, smoothing=False)
    fitted = axis_angle_to_matrix(seq.rotation)
    # rotation relative to the first (neutral) frame, which fixes the identity's canonical frame
    rel_true = np.einsum("tij,kj->tik", rots, rots[0])
    rel_fit = np.einsum("tij,kj->tik", fitted, fitted[0])
    err = np.rad2deg(np.linalg.norm(matrix_to_axis_angle(np.einsum("tij,tkj->tik", rel_fit, rel_true)), axis=-1))
    assert err.max() < 1.0, err
    px, frac = reprojection_error(seq)
    assert px < 1.0 and frac < 0.01
    # the expression deformations are recovered (up to the identity's own offset)
    rec = np.einsum("tk,kvc->tvc", seq.expression - seq.expression[0], model.basis)
    true = np.einsum("tk,kvc->tvc", expr, model.basis)
    assert np.abs(rec - true).mean() < 0.05 * np.abs(true[1:]).mean() + 0.02


def test_euler_round_trip():
    for a in [(10, -20, 30), (-45, 5, 0), (0, 0, -90)]:
        assert np.allclose(matrix_to_euler(euler_to_matrix(*a)), a, atol=1e-6)


def test_sh_fit_recovers_known_lighting():
    rng = np.random.default_rng(1)
    model = load_face_model()
    t = 12
    rots = np.stack([euler_to_matrix(y, p, 0) for y, p in rng.uniform(-30, 30, (t, 2))])
    verts = np.einsum("tij,nj->tni", rots, model.mean_shape) + np.array([0, 0, 60.0])
    normals = vertex_normals(verts, model.triangles)
    albedo = rng.uniform(0.3, 0.9, (478, 3))
    sh = np.zeros((t, 9, 3))
    sh[:, 0] = 1 / 0.282095
    sh[:, 1:4] = rng.normal(0, 0.4, (t, 3, 1))
    sh[:, 4:] = rng.normal(0, 0.1, (t, 5, 3))
    colors = albedo * np.einsum("tvk,tkc->tvc", sh_basis(normals), sh)
    visible = normals[..., 2] < -0.2
    visible[:, 468:] = False
    # with the albedo known, each frame's 27 coefficients are recovered exactly
    assert np.allclose(solve_sh(colors, normals, albedo, visible, ridge=0.0), sh, atol=1e-6)
    alb_fit, sh_fit = fit_albedo_sh(colors, normals, visible, iterations=30)
    # albedo and lighting are determined up to one scale per channel
    shade_true = np.einsum("tvk,tkc->tvc", sh_basis(normals), sh)
    shade_fit = np.einsum("tvk,tkc->tvc", sh_basis(normals), sh_fit)
    vis = visible[..., None].repeat(3, -1)
    rel = np.abs(alb_fit * shade_fit - colors)[vis].mean() / colors[vis].mean()
    assert rel < 0.01
    for c in range(3):
        ratio = (shade_fit / shade_true)[..., c][visible]
        assert ratio.std() / ratio.mean() < 0.06  # joint fit: the shading up to a few percent


def test_real_clip_fit(d3_sequence):
    track, seq = d3_sequence
    assert track.num_frames == 48 and track.num_interpolated == 0
    px, frac = reprojection_error(seq)
    assert frac < 0.025, (px, frac)
    assert seq.info["jitter_fitted_iod"] < seq.info["jitter_tracked_iod"]
    assert seq.expression.shape == (48, 64) and seq.sh.shape == (48, 9, 3)
    assert seq.gaze.shape == (48, 2, 2) and np.abs(seq.gaze).max() < 0.5
    assert 0.1 < seq.albedo[:468].mean() < 0.9
    open_ = topo.eye_openness(seq.landmarks)
    assert open_.shape == (48, 2)


def test_sequence_save_load_round_trip(d3_sequence, tmp_path):
    from dvp_hub.errors import ParameterFileError
    from dvp_hub.face.sequence import FaceSequence

    _, seq = d3_sequence
    path = seq.save(tmp_path / "p.safetensors")
    back = FaceSequence.load(path)
    assert np.allclose(back.expression, seq.expression, atol=1e-5)
    assert back.camera == seq.camera and back.fps == seq.fps and back.info == seq.info
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01junk")
    with pytest.raises(ParameterFileError):
        FaceSequence.load(tmp_path / "junk.safetensors")

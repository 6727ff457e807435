"""Per-sequence fitting of the Deep Video Portraits face parameters to tracked landmarks.

From a `FaceTrack` (478 landmarks a frame, with mediapipe's relative depth):

1. Rigid alignment: a similarity (Umeyama) of the model's mean face to each frame's 3D landmarks on
   the rigid vertices gives a weak-perspective head pose and so the head's depth; the landmarks are
   back-projected with it (pinhole) and aligned again in camera space, which removes the perspective
   distortion before the identity is estimated.
2. Identity: each frame brought into the canonical head frame; the per-vertex median over the clip is
   the person's neutral shape. Expression: least-squares coefficients of the deformation from it in
   the expression basis. Gaze and eye openness are measured in the canonical frame.
3. Perspective: Gauss-Newton refines rotation and translation on the 2D reprojection error, and the
   expression coefficients are re-solved against the 2D landmarks (linearised, with a small prior),
   then the pose again.
4. Temporal smoothing of pose, expression and gaze (`smoothing`).
5. Albedo and 27 SH lighting coefficients a frame by least squares on the visible vertices' colours
   (`lighting`).

Everything is batched over frames, so fitting costs a few milliseconds a frame.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np

from ..geometry import axis_angle_to_matrix, einsum, matrix_to_axis_angle, similarity_align, skew, unwrap_axis_angle
from ..perf import one_blas_thread
from . import topology as topo
from .lighting import fit_albedo_sh, solve_sh
from .model import Camera, FaceModel, eye_gaze, load_face_model, vertex_normals
from .sequence import FaceSequence
from .smoothing import EXPRESSION_WINDOW_S, POSE_WINDOW_S, landmark_jitter, smooth
from .tracker import FaceTrack

CHUNK = 64  # frames per batched solve: bounds the fit's temporaries whatever the clip length


def _projection_jacobian(p: np.ndarray, focal: float) -> tuple[np.ndarray, np.ndarray]:
    """Projection of camera points ``[T, N, 3]`` and its Jacobian ``[T, N, 2, 3]`` (without c)."""
    z = np.maximum(p[..., 2], 1e-6)
    u = p[..., :2] / z[..., None] * focal
    j = np.zeros(p.shape[:-1] + (2, 3))
    j[..., 0, 0] = focal / z
    j[..., 1, 1] = focal / z
    j[..., 0, 2] = -focal * p[..., 0] / z**2
    j[..., 1, 2] = -focal * p[..., 1] / z**2
    return u, j


# Gauss-Newton iterations of the pose before and after the expression solve: from `rigid_alignment`'s start two and
# one land within 0.05 px of six and three (every vertex, every frame of a live and two offline fits) in 55-80% of
# the time (benchmarks/results/fit_iterations_cpu.json)
POSE_ITERATIONS = (2, 1)


def refine_pose(x, target, rot, trans, cam: Camera, iterations: int | None = None, damping: float = 1e-3):
    """Gauss-Newton on the 2D reprojection of canonical points ``x`` [T, N, 3] to ``target`` [T, N, 2].

    rot: ``[T, 3, 3]``, trans: ``[T, 3]`` initial pose; ``iterations`` (None: ``POSE_ITERATIONS[0]``); returns the
    refined pair.
    """
    iterations = POSE_ITERATIONS[0] if iterations is None else iterations
    c = np.array([cam.cx, cam.cy])
    for _ in range(iterations):
        rx = einsum("tij,tnj->tni", rot, x)
        u, jp = _projection_jacobian(rx + trans[:, None], cam.focal)
        r = (u + c - target).reshape(len(x), -1)
        jw = einsum("tnab,tnbc->tnac", jp, -skew(rx))  # rotation (left perturbation)
        j = np.concatenate([jw, jp], -1).reshape(len(x), -1, 6)
        jtj = einsum("tki,tkj->tij", j, j)
        jtj += damping * np.trace(jtj, axis1=1, axis2=2)[:, None, None] / 6 * np.eye(6)
        step = -np.linalg.solve(jtj, einsum("tki,tk->ti", j, r)[..., None])[..., 0]
        rot = axis_angle_to_matrix(step[:, :3]) @ rot
        trans = trans + step[:, 3:]
    return rot, trans


def refine_expression(model: FaceModel, x, expr, target, rot, trans, cam: Camera, prior: float = 1e-2):
    """One linearised least-squares update of the expression coefficients against 2D landmarks.

    The prior is a Tikhonov term on the coefficients scaled by the basis' standard deviations.
    """
    import torch  # lazy: torch takes seconds; dvp track imports this module and refuses bad input before a fit

    c = np.array([cam.cx, cam.cy])
    t, n = x.shape[:2]
    k = expr.shape[1]
    p = einsum("tij,tnj->tni", rot, x) + trans[:, None]
    u, jp = _projection_jacobian(p, cam.focal)
    r = torch.from_numpy((u + c - target).reshape(t, -1))  # [T, 2N]
    jr = torch.from_numpy(jp) @ torch.from_numpy(rot)[:, None]  # d uv / d X: [T, N, 2, 3]
    basis = torch.from_numpy(model.basis[:k]).permute(1, 2, 0)  # [N, 3, K]
    j = (jr.permute(1, 0, 2, 3).reshape(n, t * 2, 3) @ basis).reshape(n, t, 2, k)
    j = j.permute(1, 0, 2, 3).reshape(t, n * 2, k)
    jtj = j.transpose(1, 2) @ j
    std2 = torch.from_numpy(model.std[:k] ** 2)
    scale = jtj.diagonal(dim1=1, dim2=2).mean(1)[:, None, None]
    jtj = jtj + prior * scale * torch.diag(std2.mean() / std2)
    step = torch.linalg.solve(jtj, -(j.transpose(1, 2) @ r[..., None]))[..., 0]
    return expr + step.numpy()


def _chunks(n: int, size: int = CHUNK):
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def project_sequence(seq: FaceSequence, model: FaceModel | None = None, camera: Camera | None = None) -> np.ndarray:
    """The fitted model's 478 vertices projected into the frames: ``[T, 478, 2]`` pixels (float32)."""
    model = model or load_face_model()
    cam = camera or seq.camera
    out = np.empty((len(seq), topo.NUM_VERTICES, 2), np.float32)
    for sl in _chunks(len(seq)):
        verts = model.shape(seq.identity, seq.expression[sl], seq.gaze[sl], seq.gaze_neutral)
        p = einsum("tij,tnj->tni", axis_angle_to_matrix(seq.rotation[sl]), verts) + seq.translation[sl, None]
        out[sl] = cam.project(p)
    return out


def reprojection_error(
    seq: FaceSequence, model: FaceModel | None = None, projected: np.ndarray | None = None
) -> tuple[float, float]:
    """Mean 2D distance between the fitted model and the tracked landmarks: (pixels, fraction of IOD).

    projected: `project_sequence(seq, model)` when the caller has it already.
    """
    proj = project_sequence(seq, model) if projected is None else projected
    d = np.linalg.norm(proj - seq.landmarks, axis=-1).mean(-1)  # [T]
    iod = topo.interocular_distance(seq.landmarks)
    det = seq.detected if seq.detected.any() else np.ones(len(seq), bool)
    return float(d[det].mean()), float((d / iod)[det].mean())


def rigid_alignment(lm: np.ndarray, model: FaceModel, cam: Camera):
    """Step 1 for frames ``lm`` ``[T, 478, 3]`` (float64): their canonical shapes ``[T, 478, 3]``, rotations
    ``[T, 3, 3]`` and translations ``[T, 3]``."""
    rig = topo.RIGID_VERTICES
    s, r, t = similarity_align(model.mean_shape[rig], lm[:, rig])
    z = cam.focal / s[:, None] + lm[..., 2] / s[:, None]
    cam3d = np.stack([(lm[..., 0] - cam.cx) * z / cam.focal, (lm[..., 1] - cam.cy) * z / cam.focal, z], -1)
    s, r, t = similarity_align(model.mean_shape[rig], cam3d[:, rig])
    canon = np.einsum("tji,tnj->tni", r, cam3d - t[:, None]) / s[:, None, None]
    return canon, r, t / s[:, None]  # the scene scaled by 1 / s projects identically


@lru_cache(maxsize=4)
def _expression_solver(model: FaceModel, num_expression: int) -> np.ndarray:
    """The least-squares solver of the expression basis as one matrix ``(B B^T)^-1 B``: ``[K, 468*3]``."""
    mesh = np.arange(topo.NUM_MESH_VERTICES)
    bm = model.basis[:num_expression, mesh].reshape(num_expression, -1)  # [K, 468*3]
    return np.linalg.solve(bm @ bm.T, bm)


def canonical_expression(canon: np.ndarray, identity: np.ndarray, model: FaceModel, num_expression: int):
    """Step 2: least-squares expression coefficients ``[T, K]`` of canonical shapes against an identity."""
    d = (canon[:, : topo.NUM_MESH_VERTICES] - identity[: topo.NUM_MESH_VERTICES]).reshape(len(canon), -1)
    return d @ _expression_solver(model, num_expression).T


def perspective_refinement(model, identity, expr, gaze, gaze_neutral, target, rot, trans, cam: Camera):
    """Step 3: Gauss-Newton pose on the 2D landmarks, the expression re-solved, the pose again."""
    x = model.shape(identity, expr, gaze, gaze_neutral)
    rot, trans = refine_pose(x, target, rot, trans, cam, iterations=POSE_ITERATIONS[0])
    expr = refine_expression(model, x, expr, target, rot, trans, cam)
    x = model.shape(identity, expr, gaze, gaze_neutral)
    rot, trans = refine_pose(x, target, rot, trans, cam, iterations=POSE_ITERATIONS[1])
    return rot, trans, expr


def _smoothed(raw: FaceSequence, fps: float) -> FaceSequence:
    """Zero-phase smoothing of pose (`POSE_WINDOW_S`), expression and gaze (`EXPRESSION_WINDOW_S`)."""
    return FaceSequence(
        **{
            **raw.__dict__,
            "rotation": smooth(raw.rotation, fps, POSE_WINDOW_S),
            "translation": smooth(raw.translation, fps, POSE_WINDOW_S),
            "expression": smooth(raw.expression, fps, EXPRESSION_WINDOW_S),
            "gaze": smooth(raw.gaze, fps, EXPRESSION_WINDOW_S),
        }
    )


def _fit_report(seq, model, track, target, err_raw, focal_factor: float, t_start: float) -> dict:
    """What `fit_sequence` reports in ``seq.info``: frames, reprojection error, jitter before and after, timing."""
    proj = project_sequence(seq, model)  # once: for the error and for the fitted jitter
    px, frac = reprojection_error(seq, model, proj)
    iod = topo.interocular_distance(target)
    return {
        "frames": len(target),
        "interpolated_frames": int((~track.detected).sum()),
        "reprojection_error_px": round(px, 4),
        "reprojection_error_iod": round(frac, 5),
        "reprojection_error_unsmoothed_px": round(err_raw[0], 4),
        "jitter_tracked_iod": round(landmark_jitter(target, iod), 6),
        "jitter_fitted_iod": round(landmark_jitter(proj, iod), 6),
        "focal_factor": focal_factor,
        "small_face_mode": bool(track.small_face_mode),
        "fit_seconds": round(time.perf_counter() - t_start, 3),
    }


def fit_sequence(
    track: FaceTrack,
    model: FaceModel | None = None,
    focal_factor: float = 1.0,
    num_expression: int = 64,
    smoothing: bool = True,
    albedo_frames: int = 80,
) -> FaceSequence:
    """Fit the face parameters of every frame of ``track`` (see the module docstring). Its many small solves run on
    one BLAS thread (`perf.one_blas_thread`)."""
    with one_blas_thread():
        return _fit_sequence(track, model, focal_factor, num_expression, smoothing, albedo_frames)


def _fit_sequence(track, model, focal_factor, num_expression, smoothing, albedo_frames) -> FaceSequence:
    t_start = time.perf_counter()
    model = model or load_face_model()
    if num_expression > model.num_expression:
        raise ValueError(f"num_expression={num_expression} exceeds the basis size {model.num_expression}")
    cam = Camera.for_image(track.width, track.height, focal_factor)
    lm32 = track.landmarks  # [T, 478, 3] float32, converted chunk by chunk
    target = np.ascontiguousarray(lm32[..., :2])  # [T, 478, 2] float32, kept in the sequence
    n = len(lm32)

    # 1. Rigid alignment. A weak-perspective similarity gives each frame's depth (T_z = f / s); the
    #    landmarks are then back-projected with that depth plus mediapipe's relative depth, and a
    #    second similarity in camera space removes the perspective distortion from the canonical shapes.
    #    Full-length arrays are float32; float64 temporaries live one chunk at a time.
    canon = np.empty((n, topo.NUM_VERTICES, 3), np.float32)
    rot = np.empty((n, 3, 3))
    trans = np.empty((n, 3))
    for sl in _chunks(n):
        canon[sl], rot[sl], trans[sl] = rigid_alignment(lm32[sl].astype(np.float64), model, cam)

    # 2. Identity, expression, gaze, eye openness in the canonical frame.
    identity = np.median(canon, axis=0).astype(np.float64)
    expr = np.empty((n, num_expression))
    for sl in _chunks(n):
        expr[sl] = canonical_expression(canon[sl], identity, model, num_expression)
    gaze = eye_gaze(canon).astype(np.float64)
    gaze_neutral = eye_gaze(identity[None])[0]
    openness = topo.eye_openness(canon).astype(np.float64)
    del canon

    # 3. Perspective pose from the weak-perspective one, then Gauss-Newton, expression, pose.
    for sl in _chunks(n):
        rot[sl], trans[sl], expr[sl] = perspective_refinement(
            model, identity, expr[sl], gaze[sl], gaze_neutral, target[sl].astype(np.float64), rot[sl], trans[sl], cam
        )
    rotvec = unwrap_axis_angle(matrix_to_axis_angle(rot))

    raw = FaceSequence(
        camera=cam,
        rotation=rotvec,
        translation=trans,
        identity=identity,
        expression=expr,
        gaze=gaze,
        gaze_neutral=gaze_neutral,
        eye_openness=openness,
        albedo=np.zeros((topo.NUM_VERTICES, 3)),
        sh=np.zeros((n, 9, 3)),
        landmarks=target,
        detected=track.detected.copy(),
        fps=track.fps,
    )
    err_raw = reprojection_error(raw, model)
    # 4. Temporal smoothing.
    seq = _smoothed(raw, track.fps) if smoothing else raw

    # 5. Albedo and SH lighting on the visible vertices' colours.
    fit_albedo_lighting(seq, track.colors, model, albedo_frames)

    seq.info = _fit_report(seq, model, track, target, err_raw, focal_factor, t_start)
    return seq


def _unit(colors: np.ndarray) -> np.ndarray:
    """Tracked colours (uint8, or floats already in [0, 1]) as float64 in [0, 1]."""
    c = colors.astype(np.float64)
    return c / 255.0 if colors.dtype == np.uint8 else c


def fit_albedo_lighting(seq: FaceSequence, colors: np.ndarray, model: FaceModel, albedo_frames: int = 80) -> None:
    """Fill ``seq.albedo`` and ``seq.sh`` in place (module docstring, step 5)."""
    n = len(seq)
    tris = model.triangles
    cam = seq.camera

    def camera_mesh(sl):
        verts = model.shape(seq.identity, seq.expression[sl], seq.gaze[sl], seq.gaze_neutral)
        p = einsum("tij,tnj->tni", axis_angle_to_matrix(seq.rotation[sl]), verts) + seq.translation[sl, None]
        normals = vertex_normals(p, tris)
        view = -p / np.linalg.norm(p, axis=-1, keepdims=True)
        facing = (normals * view).sum(-1)
        uv = seq.landmarks[sl]
        inside = (uv[..., 0] >= 0) & (uv[..., 0] < cam.width) & (uv[..., 1] >= 0) & (uv[..., 1] < cam.height)
        vis = (facing > 0.25) & inside
        vis[:, topo.NUM_MESH_VERTICES :] = False  # irises: not skin
        vis &= seq.detected[sl, None]
        return normals, vis

    pick = np.unique(np.linspace(0, n - 1, min(n, albedo_frames)).round().astype(int))
    normals, vis = camera_mesh(pick)
    albedo, _ = fit_albedo_sh(_unit(colors[pick]), normals, vis)
    sh = np.zeros((n, 9, 3))
    for sl in _chunks(n):
        normals, vis = camera_mesh(sl)
        vis[~vis.any(1)] = True  # a frame with nothing visible still gets a (poorly constrained) fit
        sh[sl] = solve_sh(_unit(colors[sl]), normals, albedo, vis)
    seq.albedo = albedo
    seq.sh = sh

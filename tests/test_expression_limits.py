"""Keeping a driven expression near the target's trained expressions (`motion.expression_limits`)."""

from __future__ import annotations

import numpy as np

from dvp_hub.face import topology as topo
from dvp_hub.face.model import load_face_model
from dvp_hub.motion import leash, retarget
from dvp_hub.motion.expression_limits import ExpressionLimits, kept_vertices


def test_distance_is_the_rms_displacement_outside_mouth_and_eyes(d3_sequence):
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 40)
    model = load_face_model()
    a, b = seq.expression[[3]], seq.expression[[45]]
    verts = model.shape(seq.identity, np.concatenate([a, b]))[:, : topo.NUM_MESH_VERTICES]
    rest = np.setdiff1d(np.arange(topo.NUM_MESH_VERTICES), kept_vertices(seq.identity))
    assert 100 < len(rest) < 400  # the mouth and the eyes with their surroundings are a third of the mesh
    direct = np.sqrt(((verts[0, rest] - verts[1, rest]) ** 2).sum(-1).mean()) / topo.interocular_distance(seq.identity)
    one = ExpressionLimits(a, limits.metric, limits.keep)  # a single training expression: the distance is to it
    assert np.isclose(one.distance(b)[0], direct, rtol=1e-6)


def test_training_expressions_are_left_alone(d3_sequence):
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 40)
    expr, changed = limits.apply(seq.expression[:40])
    assert not changed.any() and np.array_equal(expr, seq.expression[:40])


def test_a_grimace_is_made_smaller_but_mouth_and_eyes_follow(d3_sequence):
    """An expression five times the size of the clip's biggest: the face outside the mouth and eyes comes much
    nearer the training expressions, while the mouth opening and the eye openness stay as driven (a plain pull
    towards the nearest training expression would nearly close the eyes)."""
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 40)
    model = load_face_model()
    mean = seq.expression[:40].mean(0)
    wild = mean + 5 * (seq.expression[40:48] - mean)
    held, changed = limits.apply(wild)
    assert changed.all()
    assert np.all(limits.distance(held) < 0.6 * limits.distance(wild))

    def mouth_eyes(expr):
        verts = model.shape(seq.identity, expr)
        return topo.mouth_opening(verts), topo.eye_openness(verts).mean(1)

    (m0, e0), (m1, e1) = mouth_eyes(wild), mouth_eyes(held)
    assert np.abs(m1 - m0).max() < 0.1 * m0.max() and np.abs(e1 - e0).max() < 0.1 * e0.max()
    index, dist = leash.nearest(wild @ limits.metric, limits.points)
    plain = wild + leash.toward(seq.expression[index] - wild, dist, limits.radius)[0]
    assert np.abs(mouth_eyes(plain)[1] - e0).max() > 0.3 * e0.max()


def test_reenact_reports_the_frames_it_limited(d3_sequence):
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 48, radius=0.005)  # tight: most of a grimacing clip is held
    free = retarget.reenact(seq, seq, target_ref=0, source_pose_ref=0)
    held = retarget.reenact(seq, seq, target_ref=0, source_pose_ref=0, expression_limits=limits, limit_smoothing=0)
    assert free.info["frames_expression_limited"] == 0 < held.info["frames_expression_limited"] <= len(seq)
    assert np.all(limits.distance(held.expression) <= limits.distance(free.expression) + 1e-9)
    smooth = retarget.reenact(seq, seq, target_ref=0, source_pose_ref=0, expression_limits=limits)  # offline default
    # the smoothed pull touches nearly every frame a little; counted are those it moved by the radius or more
    touched = np.abs(smooth.expression - free.expression).max(1) > 1e-6
    moved = limits.held(free.expression, smooth.expression)
    assert smooth.info["frames_expression_limited"] == moved.sum() < touched.sum()


def test_live_pull_is_smoothed_causally_across_calls(d3_sequence):
    """One frame per call (live): a grimace is held at once; when the face relaxes the pull fades over a few
    calls instead of letting go at once, and then the expression is the source's again."""
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 40)
    mean = seq.expression[:40].mean(0)
    wild = mean + 6 * (seq.expression[[44]] - mean)
    state: dict = {}
    first, changed = limits.apply(wild, 2.0, state)
    instant, _ = limits.apply(wild, 0.0, {})
    assert changed.all() and np.allclose(first, instant)  # the first call has nothing to ease from
    calm = seq.expression[[5]]  # a training expression: no pull of its own
    back, changed = limits.apply(calm, 2.0, state)
    assert changed.all() and not np.allclose(back, calm)
    still, changed = limits.apply(calm, 0.0, {})
    assert not changed.any() and np.array_equal(still, calm)
    for _ in range(30):
        back, _ = limits.apply(calm, 2.0, state)
    assert np.allclose(back, calm, atol=1e-4)


def test_pipeline_stats_and_switch(tiny_pipeline, d3_sequence):
    _, seq = d3_sequence
    common = dict(source_parameters=seq, neutral_frame=0, progress=False, watermark=False)
    on = tiny_pipeline(**common)  # on by default
    off = tiny_pipeline(**common, limit_expression=False)
    assert off.stats["frames_expression_limited"] == 0
    assert not np.allclose(on.parameters.expression, off.parameters.expression)  # the limit is on by default
    limits = tiny_pipeline.target_state.expression_limits  # the frames it held visibly are those reported
    held = limits.held(off.parameters.expression, on.parameters.expression)
    assert on.stats["frames_expression_limited"] == held.sum()

"""Keeping a driven expression near the target's trained expressions (`pipelines.expression_limits`)."""

from __future__ import annotations

import numpy as np

from dvp_hub.face import topology as topo
from dvp_hub.face.model import load_face_model
from dvp_hub.pipelines import retarget
from dvp_hub.pipelines.expression_limits import ExpressionLimits


def test_distance_is_the_rms_mesh_displacement_in_interocular_distances(d3_sequence):
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 40)
    model = load_face_model()
    a, b = seq.expression[[3]], seq.expression[[45]]
    verts = model.shape(seq.identity, np.concatenate([a, b]))
    direct = np.sqrt(((verts[0] - verts[1]) ** 2).sum(-1).mean()) / topo.interocular_distance(seq.identity)
    one = ExpressionLimits(a, limits.metric)  # a single training expression: the distance is to it
    assert np.isclose(one.distance(b)[0], direct, rtol=1e-6)


def test_training_expressions_are_left_alone(d3_sequence):
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 40)
    expr, changed = limits.apply(seq.expression[:40])
    assert not changed.any() and np.array_equal(expr, seq.expression[:40])


def test_a_grimace_keeps_its_direction_at_the_radius(d3_sequence):
    """An expression five times the size of the clip's biggest is pulled straight towards the nearest training
    expression, to exactly ``radius`` from it."""
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 40)
    mean = seq.expression[:40].mean(0)
    wild = mean + 5 * (seq.expression[40:48] - mean)
    before = limits.distance(wild)
    assert np.all(before > limits.radius)
    held, changed = limits.apply(wild)
    assert changed.all()
    assert np.allclose(limits.distance(held), limits.radius, rtol=1e-4)
    # on the segment from the nearest training expression to the driven one
    index = np.argmin((((wild @ limits.metric)[:, None] - limits.points[None]) ** 2).sum(-1), 1)
    near = seq.expression[index]
    f = ((held - near) * (wild - near)).sum(1) / ((wild - near) ** 2).sum(1)
    assert np.allclose(held, near + f[:, None] * (wild - near), atol=1e-9) and np.all((f > 0) & (f < 1))


def test_reenact_reports_the_frames_it_limited(d3_sequence):
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 48, radius=0.005)  # tight: most of a grimacing clip is held
    free = retarget.reenact(seq, seq, target_ref=0, source_pose_ref=0)
    held = retarget.reenact(seq, seq, target_ref=0, source_pose_ref=0, expression_limits=limits, limit_smoothing=0)
    assert free.info["frames_expression_limited"] == 0 < held.info["frames_expression_limited"] <= len(seq)
    assert np.all(limits.distance(held.expression) <= np.minimum(limits.distance(free.expression), 0.005) + 1e-9)
    smooth = retarget.reenact(seq, seq, target_ref=0, source_pose_ref=0, expression_limits=limits)  # offline default
    assert smooth.info["frames_expression_limited"] >= held.info["frames_expression_limited"]


def test_live_pull_is_smoothed_causally_across_calls(d3_sequence):
    """One frame per call (live): a grimace is held at once; when the face relaxes the pull fades over a few
    calls instead of letting go at once, and then the expression is the source's again."""
    _, seq = d3_sequence
    limits = ExpressionLimits.from_target(seq, 40)
    mean = seq.expression[:40].mean(0)
    wild = mean + 6 * (seq.expression[[44]] - mean)
    state: dict = {}
    first, changed = limits.apply(wild, 2.0, state)
    assert changed.all() and np.isclose(limits.distance(first)[0], limits.radius)
    calm = seq.expression[[5]]  # a training expression: no pull of its own
    back, changed = limits.apply(calm, 2.0, state)
    assert changed.all() and not np.allclose(back, calm)
    instant, changed = limits.apply(calm, 0.0, {})
    assert not changed.any() and np.array_equal(instant, calm)
    for _ in range(30):
        back, _ = limits.apply(calm, 2.0, state)
    assert np.allclose(back, calm, atol=1e-4)


def test_pipeline_stats_and_switch(tiny_pipeline, d3_sequence):
    _, seq = d3_sequence
    on = tiny_pipeline(source_parameters=seq, neutral_frame=0, progress=False, watermark=False, limit_expression=True)
    off = tiny_pipeline(source_parameters=seq, neutral_frame=0, progress=False, watermark=False)  # off by default
    assert off.stats["frames_expression_limited"] == 0
    assert on.stats["frames_expression_limited"] >= 0
    limited = on.stats["frames_expression_limited"]
    assert (limited > 0) == (not np.allclose(on.parameters.expression, off.parameters.expression))

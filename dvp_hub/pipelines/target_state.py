"""`TargetState`: what every run derives from a target, made once per target and never changed after.

The offline pipeline, `edit` and the live session all read it (`DeepVideoPortraitPipeline.target_state`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face.sequence import FaceSequence
from ..motion import retarget
from ..motion.expression_limits import ExpressionLimits
from ..motion.pose_limits import PoseLimits


@dataclass(frozen=True)
class TargetState:
    """target: the `PortraitTarget` it was made from; sequence: its training sequence as numpy; neutral_frame: its
    most neutral training frame and neutral_expression that frame's expression with closed lips (relative
    expression starts there); anchor: the three as the `retarget.TargetAnchor` that per-frame retargeting reads,
    at the target's reference frame; pose_limits / expression_limits: its trained head poses and expressions."""

    target: object
    sequence: FaceSequence
    neutral_frame: int
    neutral_expression: np.ndarray
    anchor: retarget.TargetAnchor
    pose_limits: PoseLimits
    expression_limits: ExpressionLimits

    @classmethod
    def from_target(cls, target) -> "TargetState":
        cfg = target.config
        seq = target.to_sequence()
        neutral = retarget.neutral_frame(seq, slice(0, cfg.train_frames))
        expression = retarget.closed_neutral(seq, neutral)
        return cls(
            target=target,
            sequence=seq,
            neutral_frame=neutral,
            neutral_expression=expression,
            anchor=retarget.TargetAnchor(seq, int(cfg.reference_frame), neutral, expression),
            pose_limits=PoseLimits.from_target(seq, cfg.train_frames, cfg.reference_frame),
            expression_limits=ExpressionLimits.from_target(seq, cfg.train_frames),
        )

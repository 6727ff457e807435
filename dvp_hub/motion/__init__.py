"""Motion maths: the source's pose, expression and gaze on the target's face (`retarget`), held near the
target's trained poses and expressions (`pose_limits`, `expression_limits`, sharing `leash`), and the named
editing controls (`editing`). Depends on `face` and `geometry` only; the pipelines use it."""

"""Face: tracking (mediapipe face mesh), the parametric face model and per-sequence fitting."""

"""Shared fixtures: the real clips in ../shared/data, and small tracked sequences."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("DVP_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def clip(name: str) -> str:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"shared clip {path} is missing: put the shared data folder beside the repository")
    return str(path)


@pytest.fixture(scope="session")
def d3_sequence():
    """The first 48 frames of talking-d3.mp4, tracked and fitted."""
    from dvp_hub.face.fitting import fit_sequence
    from dvp_hub.face.tracker import track_video

    track = track_video(clip("talking-d3.mp4"), max_frames=48)
    return track, fit_sequence(track)

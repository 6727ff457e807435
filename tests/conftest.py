"""Shared fixtures: the real clips in ../shared/data, and small tracked sequences."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

DATA = Path(os.environ.get("DVP_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
# calibrated int8 ranges (`models.int8_cache`) go to a folder of this run's, not the user's cache (subprocesses too)
os.environ.setdefault("DVP_CACHE", tempfile.mkdtemp(prefix="dvp-test-cache-"))


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


@pytest.fixture(scope="session")
def tiny_pipeline(d3_sequence):
    """A random tiny generator (64 px, window 3) with a target made from 48 real frames."""
    import torch

    from dvp_hub import DeepVideoPortraitPipeline, PortraitTarget, RenderingToVideoGenerator
    from dvp_hub.render.crop import Crop

    _, seq = d3_sequence
    torch.manual_seed(0)
    gen = RenderingToVideoGenerator(base_channels=4, max_channels=8, resolution=64, temporal_window=3).eval()
    crop = Crop.for_landmarks(seq.landmarks, seq.camera.width, seq.camera.height)
    target = PortraitTarget.from_sequence(seq, crop, 64, train_frames=40, name="tiny")
    return DeepVideoPortraitPipeline(generator=gen, target=target)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """40 frames of talking-d3.mp4 prepared at 64 px."""
    from dvp_hub.dataset import prepare_target_dataset

    out = tmp_path_factory.mktemp("ds") / "d3"
    prepare_target_dataset(clip("talking-d3.mp4"), str(out), resolution=64, max_frames=40)
    return str(out)

import numpy as np
import pytest

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.errors import DVPError
from dvp_hub.evaluate import driven, self_reenactment
from dvp_hub.video import VideoReader, write_video

from .conftest import clip


def test_self_reenactment_uses_the_validation_split(tiny_pipeline, tmp_path):
    video = tmp_path / "target.mp4"
    write_video(VideoReader(clip("talking-d3.mp4"), max_frames=48), video, 30, synthetic=False)
    r = self_reenactment(tiny_pipeline, str(video))
    assert r["validation_frames"] == 8  # frames 40..47 were never trained on
    assert 0 < r["psnr"] < 40 and -1 <= r["ssim"] <= 1 and np.isfinite(r["psnr_face"])
    short = tmp_path / "short.mp4"
    write_video(VideoReader(clip("talking-d3.mp4"), max_frames=20), short, 30, synthetic=False)
    with pytest.raises(DVPError, match="training video"):
        self_reenactment(tiny_pipeline, str(short))


@pytest.mark.slow
def test_driven_metrics_with_the_demo_target():
    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    r = driven(pipe, clip("talking-d3.mp4"), max_frames=40)
    assert r["frames"] == 40
    assert -1 <= r["mouth_opening_correlation"] <= 1
    assert 0 <= r["head_pose_error_deg"] < 20
    assert r["output_jitter_iod"] > 0 and r["source_jitter_iod"] > 0

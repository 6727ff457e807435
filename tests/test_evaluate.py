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


def test_demo_card_carries_the_evaluation():
    """The bundled card's model-index parses and holds the self-reenactment and driven figures."""
    import os

    from huggingface_hub import ModelCard

    from dvp_hub.pipelines.pipeline_dvp import DEMO_DIR

    card = ModelCard.load(os.path.join(DEMO_DIR, "README.md"))
    results = {(r.task_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert 20 < results[("Self-reenactment (validation frames)", "psnr")] < 40
    assert results[("Reenactment driven by talking-d3.mp4", "identity_to_target")] < 0.6
    assert results[("Reenactment driven by talking-d3.mp4", "identity_to_source")] > 0.6
    assert "consent" in card.text and "talking-d6.mp4" in card.text

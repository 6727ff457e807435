"""The face refiner: residual by construction, windowed inference, its training script (checkpoints, resume),
a target folder that carries it, and the face-detail measures it is judged by."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.models import FaceRefiner
from dvp_hub.video import VideoReader

from .conftest import clip

ROOT = Path(__file__).resolve().parents[1]


def test_an_untrained_refiner_is_a_bilinear_enlargement_and_the_window_changes_only_its_inside():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    r = FaceRefiner(channels=8, num_blocks=1).eval()
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(r(x), up.clamp(-1, 1), atol=1e-6)  # the last layer starts at zero
    torch.nn.init.normal_(r.tail.weight, std=0.1)
    full, win = r(x), r.refine(x, (16, 16, 48, 48))
    assert (win - full)[:, :, 56:72, 56:72].abs().max() < 1e-5  # well inside the window: the network's output
    assert (win - up)[:, :, :24, :].abs().max() < 1e-6  # outside it: the bilinear enlargement
    assert (full - up).abs().mean() > 1e-3


def test_the_finisher_refines_to_uint8_as_the_float_refine_rounds():
    from dvp_hub.pipelines.finish import refined_uint8, tensor_to_uint8

    torch.manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 64, 64) * 2 - 1, 3, 1, 1)  # an image, not noise
    r = FaceRefiner(channels=8, num_blocks=1).eval()
    torch.nn.init.normal_(r.tail.weight, std=0.1)
    want, got = tensor_to_uint8(r.refine(x, (16, 8, 48, 40))), refined_uint8(r, x, (16, 8, 48, 40))
    assert got.shape == want.shape == (2, 128, 128, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want)
    assert diff.max() <= 1 and diff.mean() < 0.2  # the enlargement made in uint8: within a grey level
    assert np.abs(got[:, 40:64, 48:80].astype(int) - tensor_to_uint8(r(x))[:, 40:64, 48:80]).max() <= 1  # inside


def test_detail_ratio_can_be_fooled_but_the_band_error_cannot():
    """Detail that is not the footage's (another texture's mid band, at the right energy) brings the detail ratio to
    ~1, and makes the band error worse than the blur's: only detail in the right place lowers it."""
    import cv2

    from dvp_hub import detail

    rng = np.random.default_rng(0)

    def texture():
        t = cv2.GaussianBlur((rng.random((200, 200)) * 255).astype(np.float32), (0, 0), 1.2)
        return np.repeat(t[..., None], 3, -1)

    real, other = texture(), texture()
    blur = cv2.GaussianBlur(real, (0, 0), 2.5)
    band = other - cv2.GaussianBlur(other, (0, 0), 2.5)  # a mid band, not the real one
    fake = blur + band * np.std(real - blur) / np.std(band)
    u8 = lambda a: np.clip(a, 0, 255).astype(np.uint8)  # noqa: E731
    box = (20, 20, 180, 180)
    real, blur, fake = u8(real), u8(blur), u8(fake)
    ratios = detail.detail_ratios([fake], [box], [real], [box])
    assert detail.band_energy(blur, box) < 0.5 * detail.band_energy(real, box)
    assert 0.7 < ratios["detail_mid_band"] < 1.5
    assert detail.band_error(real, real, box) == 0
    assert detail.band_error(fake, real, box) > detail.band_error(blur, real, box)


@pytest.mark.slow
def test_refiner_training_checkpoints_resumes_and_a_target_carries_it(tiny_pipeline, tmp_path):
    """Two short runs of training/train_refiner.py (the second resumes), then add_refiner.py: the folder loads with
    the refiner and its reference frame, and returns full frames at the video's native size."""
    folder = tmp_path / "target"
    tiny_pipeline.save_pretrained(folder)
    out = tmp_path / "refiner"
    script = str(ROOT / "training" / "train_refiner.py")
    common = ["--output_dir", str(out), "--patch", "32", "--train_batch_size", "2", "--channels", "8"]
    common += ["--num_blocks", "1", "--checkpointing_steps", "3", "--validation_steps", "3", "--adv_start", "2"]
    run = [sys.executable, script, "--target", str(folder), "--target_video", clip("talking-d3.mp4")]
    # the first run with the perceptual term (EfficientNet-Lite0 on whole patches), the resumed one without
    subprocess.run(
        [*run, *common, "--max_train_steps", "4", "--lambda_perceptual", "0.2"], check=True, capture_output=True,
        timeout=600,
    )
    assert (out / "checkpoint-4" / "refiner" / "config.json").is_file()
    done = subprocess.run(
        [sys.executable, script, *common, "--max_train_steps", "6", "--resume_from_checkpoint", "latest"],
        check=True, capture_output=True, text=True, timeout=600,
    )
    assert "resumed from" in done.stdout and (out / "refiner" / "config.json").is_file()
    scores = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert scores and {"refined", "bilinear", "real_band_rms"} <= set(scores[-1])
    add = str(ROOT / "training" / "add_refiner.py")
    subprocess.run(
        [sys.executable, add, "--target", str(folder), "--refiner", str(out / "refiner"), "--target_video",
         clip("talking-d3.mp4")],
        check=True, capture_output=True, timeout=300,
    )
    pipe = DeepVideoPortraitPipeline.from_pretrained(str(folder))
    assert isinstance(pipe.refiner, FaceRefiner) and pipe.has_reference
    seq = tiny_pipeline.target_state.sequence
    frames = pipe(source_parameters=seq.slice(0, 3), progress=False).frames[0]
    assert frames.shape == (3, 512, 512, 3)  # talking-d3's own frame
    crops = pipe(source_parameters=seq.slice(0, 3), progress=False, paste_back=False).frames[0]
    assert crops.shape == (3, 128, 128, 3)  # the 64 px generator's crop, refined to twice its size


def test_a_refiner_with_a_neural_texture_reads_the_correspondence_image_in_every_path(tiny_pipeline):
    """The texture is looked up where the face is rendered only, learns from the loss, needs the correspondence
    image, and every path that refines (the clip, the Edit tab, live with refine=True) hands it over."""
    torch.manual_seed(0)
    r = FaceRefiner(channels=8, num_blocks=1, texture_size=32, texture_channels=4)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    corr = torch.full((2, 3, 16, 16), -1.0)
    corr[:, :, 4:12, 4:12] = torch.rand(2, 3, 8, 8) * 2 - 1  # the face covers the middle
    with pytest.raises(ValueError, match="correspondence"):
        r(x)
    torch.nn.init.normal_(r.texture, std=1.0)
    feat = r.texture_features(corr)
    assert feat.shape == (2, 16, 16, 16) and feat[:, :, :4].abs().max() == 0 and feat[:, :, 6:10, 6:10].abs().mean() > 0.1
    torch.nn.init.normal_(r.tail.weight, std=0.1)
    r(x, corr).mean().backward()
    assert r.texture.grad is not None and r.texture.grad.abs().sum() > 0

    pipe = copy.copy(tiny_pipeline)
    res = int(pipe.target.config.resolution)
    textured = FaceRefiner(channels=8, num_blocks=1, texture_size=32, texture_channels=4).eval()
    torch.nn.init.normal_(textured.texture, std=1.0)
    torch.nn.init.normal_(textured.tail.weight, std=0.1)
    pipe.register_modules(refiner=textured)
    seq = pipe.target_state.sequence
    frames = pipe(source_parameters=seq.slice(0, 3), progress=False, paste_back=False).frames[0]
    assert frames.shape == (3, 2 * res, 2 * res, 3)
    assert pipe.edit(frame_index=1, paste_back=False).shape == (2 * res, 2 * res, 3)
    session = pipe.live(fps=30, calibration_seconds=0.1, refine=True, paste_back=False)
    for i, frame in enumerate(VideoReader(clip("talking-d3.mp4"))):
        if i == 4:
            break
        assert session.push(frame).shape == (2 * res, 2 * res, 3)
    session.close()


def test_frozen_refiner_steps_train_the_discriminator_alone():
    """``--freeze_refiner_steps``: before that step only the discriminator learns (the refiner it starts from is kept
    as it is); from it on both do."""
    import importlib.util

    from accelerate import Accelerator

    from dvp_hub.models.refiner import PatchDiscriminator

    spec = importlib.util.spec_from_file_location("train_refiner", ROOT / "training" / "train_refiner.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = script.parse_args(["--output_dir", "x", "--freeze_refiner_steps", "1", "--adv_start", "0"])
    torch.manual_seed(0)
    refiner, disc = FaceRefiner(channels=8, num_blocks=1), PatchDiscriminator(channels=8)
    torch.nn.init.normal_(refiner.tail.weight, std=0.05)
    opt_g = torch.optim.Adam(refiner.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-2)
    gen, real = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    before_g, before_d = copy.deepcopy(refiner.state_dict()), copy.deepcopy(disc.state_dict())

    def changed(model, before) -> bool:
        return any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())

    logs = script.train_step(args, 0, refiner, disc, opt_g, opt_d, gen, real, Accelerator(cpu=True))
    assert set(logs) == {"d"} and not changed(refiner, before_g) and changed(disc, before_d)
    logs = script.train_step(args, 1, refiner, disc, opt_g, opt_d, gen, real, Accelerator(cpu=True))
    assert {"l1", "g_adv", "fm", "d"} <= set(logs) and changed(refiner, before_g)


def test_frequency_split_keeps_l1_off_fine_detail_and_shows_the_discriminator_only_that():
    """``--frequency_split``: the bands add up to the patch; L1 barely sees a pixel-scale texture laid over the real
    patch (so it cannot average such detail away), and the discriminator sees nothing of a smooth image."""
    import importlib.util

    from dvp_hub.refiner_train import split_bands

    spec = importlib.util.spec_from_file_location("train_refiner", ROOT / "training" / "train_refiner.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    split = script.parse_args(["--output_dir", "x", "--frequency_split", "1.5"])
    plain = script.parse_args(["--output_dir", "x"])
    torch.manual_seed(0)
    real = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8) * 2 - 1, size=48, mode="bilinear")
    low, high = split_bands(real, 1.5)
    assert torch.allclose(low + high, real, atol=1e-6)
    texture = 0.1 * (torch.arange(48)[:, None] + torch.arange(48)[None, :]).remainder(2).float().sub(0.5).sign()
    fake = real + texture

    def l1(args):
        return torch.nn.functional.l1_loss(script.compared(args, fake), script.compared(args, real)).item()

    assert l1(plain) > 0.09 and l1(split) < 0.01
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert script.judged(split, flat).abs().max() < 1e-5 and torch.equal(script.judged(plain, flat), flat)


def test_finished_crops_to_uint8_leave_the_input_as_it_was():
    from dvp_hub.pipelines.finish import tensor_to_uint8

    x = (torch.rand(2, 24, 24, 3) * 2 - 1).permute(0, 3, 1, 2)  # float32 in channels_last memory: no copy is needed
    before = x.clone()
    got = tensor_to_uint8(x)
    assert torch.equal(x, before) and got.shape == (2, 24, 24, 3) and got.flags["C_CONTIGUOUS"]
    want = x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, want)

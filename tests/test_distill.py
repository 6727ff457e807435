"""The distilled live generator: its training script (teacher clips, checkpoints, resume), a target folder that
carries it, and the live session that runs it instead of the full generator."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.distill import WindowSampler, load_clips, student_generator, weights_digest
from dvp_hub.errors import TargetLoadError
from dvp_hub.models import RenderingToVideoGenerator
from dvp_hub.video import VideoReader

from .conftest import clip

ROOT = Path(__file__).resolve().parents[1]


def test_student_has_the_teachers_shape_and_fewer_channels():
    teacher = RenderingToVideoGenerator(base_channels=32, max_channels=256, resolution=64, temporal_window=3)
    student = student_generator(teacher, 8, 64)
    x = torch.rand(2, teacher.input_channels, 64, 64) * 2 - 1
    assert student(x).shape == teacher(x).shape
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters()) / 8
    assert student.config.dropout == 0.0 and student.config.temporal_window == 3


def test_distillation_learns_the_teacher_resumes_and_a_target_carries_it(tiny_pipeline, tmp_path):
    """Two runs of training/distill_live.py (the second resumes), then add_refiner.py --live_generator: the folder
    loads with the student, live sessions run it by default and the full generator on request."""
    folder = tmp_path / "target"
    tiny_pipeline.save_pretrained(folder)
    out = tmp_path / "live"
    script = str(ROOT / "training" / "distill_live.py")
    common = ["--output_dir", str(out), "--base_channels", "4", "--max_channels", "8", "--train_batch_size", "4"]
    common += ["--checkpointing_steps", "15", "--validation_steps", "15", "--learning_rate", "3e-3"]
    first = [sys.executable, script, "--target", str(folder), "--source", clip("talking-d3.mp4"), "--max_frames", "12"]
    subprocess.run([*first, *common, "--max_train_steps", "60"], check=True, capture_output=True, timeout=600)
    assert (out / "checkpoint-60" / "live_generator" / "config.json").is_file()
    clips, meta = load_clips(str(out / "clips"))
    assert meta["clips"] == ["target", "talking-d3"] and meta["validation"] == ["heldout"]
    cond, frames = clips[1]
    assert cond.shape == (12, 9, 64, 64) and frames.shape == (12, 3, 64, 64) and cond.dtype == np.uint8
    assert meta["teacher_digest"] == weights_digest(DeepVideoPortraitPipeline.from_pretrained(str(folder)).generator)
    x, y = WindowSampler(clips, 3).batch(5)
    assert x.shape == (5, 27, 64, 64) and y.shape == (5, 3, 64, 64) and -1 <= float(x.min()) <= float(x.max()) <= 1
    done = subprocess.run(
        [sys.executable, script, *common, "--max_train_steps", "75", "--resume_from_checkpoint", "latest"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "resumed from" in done.stdout and (out / "live_generator" / "config.json").is_file()
    # clips of another teacher are refused where the student is cut out of the target's generator
    (out / "clips" / "clips.json").write_text(json.dumps({**meta, "teacher_digest": "0" * 16}))
    other = [
        sys.executable,
        script,
        *common,
        "--output_dir",
        str(tmp_path / "other"),
        "--clips_dir",
        str(out / "clips"),
    ]
    refused = subprocess.run(
        [*other, "--target", str(folder)], check=False, capture_output=True, text=True, timeout=600
    )
    assert refused.returncode != 0 and "made by another generator" in refused.stderr
    assert "Traceback" not in refused.stderr
    scores = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [s["step"] for s in scores] == [15, 30, 45, 60, 75]
    assert scores[-1]["heldout"]["psnr"] > scores[0]["heldout"]["psnr"] + 1.0  # the student comes to the teacher

    subprocess.run(
        [
            sys.executable,
            str(ROOT / "training" / "add_refiner.py"),
            "--target",
            str(folder),
            "--live_generator",
            str(out / "live_generator"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    pipe = DeepVideoPortraitPipeline.from_pretrained(str(folder))
    assert isinstance(pipe.live_generator, RenderingToVideoGenerator) and pipe.live_generator.config.base_channels == 4
    assert not pipe.live_generator.training
    for light in (True, False):
        session = pipe.live(fps=30, calibration_seconds=0.1, light=light, compile=False, int8=False)
        assert session.light is light
        assert session.generator is (pipe.live_generator if light else pipe.generator)
        for i, frame in enumerate(VideoReader(clip("talking-d3.mp4"), max_frames=4)):
            assert session.push(frame).shape[2] == 3
        session.close()
    # the offline path keeps the full generator
    seq = tiny_pipeline.target_state.sequence
    crops = pipe(source_parameters=seq.slice(0, 3), progress=False, paste_back=False, output_type="pt").frames[0]
    ref = tiny_pipeline(source_parameters=seq.slice(0, 3), progress=False, output_type="pt").frames[0]
    assert crops.shape == ref.shape and (crops - ref).abs().max() <= 1 / 255 + 1e-6


def test_a_target_refuses_a_live_generator_that_cannot_stand_in_for_its_generator(tiny_pipeline, tmp_path):
    pipe = copy.copy(tiny_pipeline)
    pipe.register_modules(
        live_generator=RenderingToVideoGenerator(base_channels=2, max_channels=4, resolution=64, temporal_window=2)
    )
    pipe.save_pretrained(tmp_path / "other_window")
    with pytest.raises(TargetLoadError, match="temporal_window=2.*distil it again"):
        DeepVideoPortraitPipeline.from_pretrained(str(tmp_path / "other_window"))
    index = tmp_path / "other_window" / "model_index.json"
    spec = json.loads(index.read_text())
    spec["live_generator"] = ["dvp_hub.models", "FaceRefiner"]  # an allowed class in the wrong place
    index.write_text(json.dumps(spec))
    with pytest.raises(TargetLoadError, match="must be a RenderingToVideoGenerator"):
        DeepVideoPortraitPipeline.from_pretrained(str(tmp_path / "other_window"))

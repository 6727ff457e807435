"""The distilled refiner: its patch sampler, its training script (teacher windows, checkpoints, resume) and a target
folder that carries it in place of the teacher."""

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
from dvp_hub.refiner_distill import WindowPatchSampler, receptive_radius, refined_windows, student_refiner

from .conftest import clip

ROOT = Path(__file__).resolve().parents[1]


def test_patches_lie_in_the_window_and_their_weights_skip_only_inner_margins():
    frames = np.random.default_rng(0).integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    window = (8, 4, 24, 28)  # 16 x 24 input px
    refined = np.repeat(np.repeat(frames[:, :, 4:28, 8:24], 2, axis=2), 2, axis=3)  # stands in for a 2x teacher
    sampler = WindowPatchSampler([frames, frames[::-1]], [refined, refined[::-1]], window, patch=12, scale=2, margin=2)
    gen, ref, w = sampler.item(0, 1, px=0, py=12)  # touches the window's left and bottom sides
    assert np.array_equal(gen, frames[1, :, 16:28, 8:20])
    assert np.array_equal(ref, refined[1, :, 24:48, 0:24])
    assert w[4:, :4].all() and w[-4:, :-4].all()  # the window's own sides are scored
    assert not w[:4].any() and not w[:, -4:].any()  # sides inside the window are not (the student lacks context)
    gen, ref, w = sampler.item(1, 2, px=4, py=3)  # touches the window's right side only
    assert np.array_equal(gen, frames[0, :, 7:19, 12:24]) and np.array_equal(ref, refined[0, :, 6:30, 8:32])
    assert w[4:-4, -4:].all() and not w[:, :4].any() and not w[:4].any() and not w[-4:].any()
    with pytest.raises(ValueError, match="do not match"):
        WindowPatchSampler([frames], [refined[:, :, :-2]], window, patch=12, scale=2, margin=2)
    x, y, wb = sampler.batch(5)
    assert x.shape == (5, 3, 12, 12) and y.shape == (5, 3, 24, 24) and wb.shape == (5, 1, 24, 24)
    assert -1 <= float(x.min()) and float(x.max()) <= 1 and abs(float(wb.mean()) - 1) < 1e-5


def test_a_student_has_the_teachers_scale_fewer_channels_and_starts_as_an_enlargement():
    teacher = FaceRefiner(channels=32, num_blocks=4)
    student = student_refiner(teacher, 8, 2)
    assert student.config.scale == 2 and receptive_radius(student) == 6
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear")
    assert torch.allclose(student(x), up.clamp(-1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="neural texture"):
        student_refiner(FaceRefiner(channels=8, num_blocks=1, texture_size=8))


def test_refiner_distillation_resumes_comes_to_the_teacher_and_a_target_carries_it(tiny_pipeline, tmp_path):
    """Two runs of training/distill_refiner.py (the second resumes), then add_refiner.py --refiner: the folder loads
    with the student in place of the teacher."""
    torch.manual_seed(0)
    teacher = FaceRefiner(channels=8, num_blocks=1).eval()
    torch.nn.init.normal_(teacher.tail.weight, std=0.05)  # a teacher that adds detail
    pipe = copy.copy(tiny_pipeline)
    pipe.register_modules(refiner=teacher)
    folder = tmp_path / "target"
    pipe.save_pretrained(folder)
    out = tmp_path / "light"
    script = str(ROOT / "training" / "distill_refiner.py")
    common = ["--output_dir", str(out), "--channels", "4", "--num_blocks", "1", "--patch", "24"]
    common += ["--checkpointing_steps", "20", "--validation_steps", "20", "--learning_rate", "1e-2"]
    first = [sys.executable, script, "--target", str(folder), "--source", clip("talking-d6.mp4"), "--max_frames", "8"]
    subprocess.run([*first, *common, "--max_train_steps", "60"], check=True, capture_output=True, timeout=600)
    assert (out / "checkpoint-60" / "refiner" / "config.json").is_file()
    stored = np.load(out / "teacher" / "target.npy")
    frames = np.load(out / "clips" / "target.frames.npy")
    window = tuple(json.loads((out / "clips" / "clips.json").read_text())["face_window"])
    assert np.array_equal(stored, refined_windows(teacher, frames, window))
    other = subprocess.run(  # the stored windows are the tiny teacher's: the demo's refiner is refused
        [sys.executable, script, *common, "--max_train_steps", "80", "--resume_from_checkpoint", "latest"],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert other.returncode != 0 and "another teacher's windows" in other.stderr
    assert "Traceback" not in other.stderr
    done = subprocess.run(
        [sys.executable, script, "--target", str(folder), *common, "--max_train_steps", "80"]
        + ["--resume_from_checkpoint", "latest"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "resumed from" in done.stdout and (out / "refiner" / "config.json").is_file()
    scores = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [s["step"] for s in scores] == [20, 40, 60, 80]
    held = [s["heldout"] for s in scores]
    assert held[-1]["student"] > held[0]["student"] and held[-1]["student"] > held[-1]["bilinear"] + 1.0

    add = [sys.executable, str(ROOT / "training" / "add_refiner.py"), "--target", str(folder)]
    subprocess.run([*add, "--refiner", str(out / "refiner")], check=True, capture_output=True, timeout=300)
    light = DeepVideoPortraitPipeline.from_pretrained(str(folder))
    assert isinstance(light.refiner, FaceRefiner) and light.refiner.config.channels == 4

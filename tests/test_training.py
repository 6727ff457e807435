"""Training through `accelerate launch` on a tiny prepared clip (CPU)."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "training" / "train_target.py")
TINY = [
    "--resolution",
    "64",
    "--generator_base_channels",
    "4",
    "--generator_max_channels",
    "8",
    "--discriminator_base_channels",
    "4",
    "--temporal_window",
    "3",
    "--train_batch_size",
    "2",
    "--validation_steps",
    "100",
    "--seed",
    "3",
]


def _launch(args, processes=1, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    if processes == 1:
        cmd = [
            "accelerate",
            "launch",
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--cpu",
            SCRIPT,
        ]
    else:
        env["ACCELERATE_USE_CPU"] = "1"
        cmd = [
            "accelerate",
            "launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            SCRIPT,
        ]
    r = subprocess.run(cmd + args, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _weights(run):
    return load_file(str(Path(run) / "pipeline" / "generator" / "diffusion_pytorch_model.safetensors"))


def test_train_checkpoint_export(tiny_dataset, tmp_path):
    from dvp_hub import DeepVideoPortraitPipeline

    out = tmp_path / "run"
    _launch(
        [
            "--dataset_dir",
            tiny_dataset,
            "--output_dir",
            str(out),
            "--max_train_steps",
            "4",
            "--checkpointing_steps",
            "2",
            "--checkpoints_total_limit",
            "1",
            "--lr_decay_steps",
            "2",
            *TINY,
        ]
    )
    assert (
        "falling linearly to 0 over the last 2 steps" in json.loads((out / "training.json").read_text())["optimizer"]
    )
    for name in ("optimizer.bin", "optimizer_1.bin"):  # the last step (the 4th) ran at 2e-4 x (4 - 3) / 2
        state = torch.load(out / "checkpoint-4" / name, map_location="cpu", weights_only=True)
        assert state["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]  # limit 1 removed checkpoint-2
    assert (out / "checkpoint-4" / "COMPLETE").exists()
    assert (out / "validation" / "step-000004.png").exists()
    pipe = DeepVideoPortraitPipeline.from_pretrained(str(out / "pipeline"))
    assert pipe.generator.config.base_channels == 4 and pipe.target.config.train_frames == 36
    assert (out / "pipeline" / "generator" / "diffusion_pytorch_model.fp16.safetensors").exists()
    card = (out / "pipeline" / "README.md").read_text()
    assert "model-index" in card and "PSNR" in card and "consent" in card.lower()
    # The checkpoint holds the generator as a save_pretrained folder, which export_target turns into the same target.
    assert (out / "checkpoint-4" / "generator" / "config.json").is_file()
    r = subprocess.run(
        [sys.executable, str(ROOT / "training" / "export_target.py"), "--generator_weights", str(out / "checkpoint-4")]
        + ["--dataset_dir", tiny_dataset, "--output_dir", str(tmp_path / "exported" / "pipeline")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    exported, trained = _weights(tmp_path / "exported"), _weights(out)
    assert exported.keys() == trained.keys() and all(torch.equal(exported[k], trained[k]) for k in trained)


def test_resume_matches_uninterrupted_run(tiny_dataset, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    common = ["--dataset_dir", tiny_dataset, "--checkpointing_steps", "3", *TINY]
    _launch(common + ["--output_dir", str(full), "--max_train_steps", "6"])
    _launch(common + ["--output_dir", str(part), "--max_train_steps", "3"])  # stops after the step-3 checkpoint
    r = _launch(common + ["--output_dir", str(part), "--max_train_steps", "6", "--resume_from_checkpoint", "latest"])
    assert "resumed from" in r.stdout + r.stderr
    a, b = _weights(full), _weights(part)
    # Same seed, same data order (seedable sampler), restored RNG, Adam and BatchNorm state: on CPU the
    # arithmetic is the same, so only float summation order could differ. 1e-5 absolute is far below
    # one Adam step (lr 2e-4).
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst


def test_lr_decay_is_linear_to_zero_and_a_function_of_the_step():
    from dvp_hub.target_training import decayed_lr, set_learning_rate

    args = argparse.Namespace(learning_rate=1e-4, max_train_steps=10, lr_decay_steps=4)
    lrs = [decayed_lr(args, step) for step in range(10)]  # the lr of steps 1..10
    assert lrs[:6] == [1e-4] * 6 and lrs[6:] == pytest.approx([1e-4, 0.75e-4, 0.5e-4, 0.25e-4])
    assert decayed_lr(argparse.Namespace(learning_rate=2e-4, max_train_steps=10, lr_decay_steps=0), 9) == 2e-4
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    set_learning_rate([opt], lrs[-1])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25e-4)


def test_time_budget_counts_resumed_runs_together(tiny_dataset, tmp_path):
    """--max_train_minutes is the whole run's: the last step leaves a checkpoint with its clock, the same budget
    again trains nothing more, a larger one goes on from there."""
    out = tmp_path / "run"
    common = ["--dataset_dir", tiny_dataset, "--output_dir", str(out), "--checkpointing_steps", "1000", *TINY]
    common += ["--max_train_steps", "100000", "--resume_from_checkpoint", "latest"]
    _launch(common + ["--max_train_minutes", "0.05"])  # 3 s

    def last():
        (ckpt,) = out.glob("checkpoint-*")  # one: the budget ran out before step 1000
        clock = json.loads((ckpt / "training_clock.json").read_text())
        return int(ckpt.name.split("-")[1]), clock

    step, clock = last()
    assert step == clock["step"] >= 1 and clock["seconds"] >= 3
    r = _launch(common + ["--max_train_minutes", "0.05"])
    assert "already spent" in r.stdout + r.stderr and last()[0] == step
    assert json.loads((out / "training.json").read_text())["steps"] == step
    _launch(common + ["--max_train_minutes", "0.15", "--checkpoints_total_limit", "1"])  # 6 s more
    more, clock = last()
    assert more > step and clock["seconds"] >= 9
    assert json.loads((out / "training.json").read_text())["steps"] == more
    steps_only = [a for a in common if a not in ("--max_train_steps", "100000")]
    r = _launch(steps_only + ["--max_train_steps", str(more)])  # a step budget already reached: no step more
    assert "already spent" in r.stdout + r.stderr and last()[0] == more


@pytest.mark.slow
def test_two_process_ddp(tiny_dataset, tmp_path):
    out = tmp_path / "ddp"
    _launch(
        [
            "--dataset_dir",
            tiny_dataset,
            "--output_dir",
            str(out),
            "--max_train_steps",
            "3",
            "--checkpointing_steps",
            "3",
            *TINY,
        ],
        processes=2,
    )
    assert (out / "pipeline" / "model_index.json").exists()
    card = (out / "pipeline" / "README.md").read_text()
    assert "| processes | 2 |" in card
    assert (out / "checkpoint-3" / "COMPLETE").exists()


def test_bad_dataset_is_a_one_line_error(tmp_path):
    r = subprocess.run(
        [sys.executable, SCRIPT, "--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "prepare_target" in r.stderr


def test_dataset_split_and_windows(tiny_dataset):
    from dvp_hub.dataset import TargetDataset, window_indices

    train = TargetDataset(tiny_dataset, "train", 3)
    val = TargetDataset(tiny_dataset, "val", 3)
    assert len(train) == 36 and len(val) == 4 and val.indices[0] == 36  # last 10%, contiguous
    item = train[0]
    assert item["conditioning"].shape == (27, 64, 64) and item["frame"].shape == (3, 64, 64)
    assert item["frame"].min() >= -1 and item["frame"].max() <= 1
    assert window_indices(1, 3) == [0, 0, 1] and window_indices(10, 3) == [8, 9, 10]
    assert torch.equal(train[5]["conditioning"][-9:], train.conditioning_window(5)[-9:])


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_then_resume(tiny_dataset, tmp_path):
    """SIGKILL while a checkpoint is being written: the resumed run ignores it and ends as an uninterrupted one."""
    import signal
    import time

    common = ["--dataset_dir", tiny_dataset, "--checkpointing_steps", "1", "--max_train_steps", "8", *TINY]
    full, killed = tmp_path / "full", tmp_path / "killed"
    _launch(common + ["--output_dir", str(full)])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, *common, "--output_dir", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    hit = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        partial = [p for p in killed.glob("checkpoint-*.partial")] if killed.exists() else []
        if partial and any(killed.glob("checkpoint-[0-9]")):
            hit = partial[0].name
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    if hit is None:
        pytest.skip("the run ended before a checkpoint write could be interrupted")
    assert not (killed / "pipeline").exists()
    complete = sorted(int(p.name.split("-")[1]) for p in killed.glob("checkpoint-*") if (p / "COMPLETE").exists())
    assert complete and hit.startswith("checkpoint-")
    r = _launch(common + ["--output_dir", str(killed), "--resume_from_checkpoint", "latest"])
    assert f"checkpoint-{complete[-1]}" in r.stdout + r.stderr
    a, b = _weights(full), _weights(killed)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, worst  # same tolerance as the plain resume test


def test_temporal_loss_pairs_each_frame_with_its_predecessor(tiny_dataset):
    """--lambda_temporal: the batch carries previous frames, one generator forward makes both, and the term is the
    L1 between generated and real frame-to-frame differences (zero when the generator copies the real motion)."""
    from dvp_hub.dataset import TargetDataset
    from dvp_hub.models import GANLoss, RenderingToVideoGenerator, SpaceTimePatchDiscriminator
    from dvp_hub.target_training import discriminator_step, generator_step

    ds = TargetDataset(tiny_dataset, "train", 3, with_previous=True)
    assert torch.equal(ds[5]["prev_frame"], ds[4]["frame"]) and torch.equal(ds[0]["prev_frame"], ds[0]["frame"])
    batch = torch.utils.data.default_collate([ds[5], ds[9]])

    class Accel:  # the two calls the steps make on an Accelerator
        backward = staticmethod(lambda loss: loss.backward())

    torch.manual_seed(0)
    gen = RenderingToVideoGenerator(base_channels=4, max_channels=8, resolution=64, temporal_window=3)
    disc = SpaceTimePatchDiscriminator(conditioning_channels=27, base_channels=4)
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), 2e-4) for m in (gen, disc))
    with torch.enable_grad():
        fake, fake_prev, _ = discriminator_step(batch, gen, disc, GANLoss(), opt_d, Accel)
        assert fake.shape == fake_prev.shape == (2, 3, 64, 64)
        expected = (fake - fake_prev - (batch["frame"] - batch["prev_frame"])).abs().mean()
        before = gen.ups[-1].refine.weight.detach().clone()
        args = argparse.Namespace(
            lambda_l1=100.0, lambda_temporal=100.0, lambda_feature_matching=0.0, region_weight=0.0
        )
        _, _, loss_t, _, _ = generator_step(batch, fake, fake_prev, disc, GANLoss(), opt_g, args, Accel)
    assert torch.allclose(loss_t, expected.detach()) and loss_t > 0
    assert not torch.equal(before, gen.ups[-1].refine.weight)  # the generator was updated


def test_region_weight_and_feature_matching_change_the_generator_loss(tiny_dataset):
    """--region_weight counts the mouth and eye boxes 1 + W times; --lambda_feature_matching adds an L1 between
    the discriminator's activations on real and generated frames; both at 0 give the paper's loss."""
    from dvp_hub.dataset import TargetDataset
    from dvp_hub.models import GANLoss, RenderingToVideoGenerator, SpaceTimePatchDiscriminator
    from dvp_hub.render.regions import box_mask
    from dvp_hub.target_training import generator_step

    ds = TargetDataset(tiny_dataset, "train", 3)
    batch = torch.utils.data.default_collate([ds[3], ds[7]])
    mask = box_mask(batch["regions"], 64)
    assert 0.02 < mask.mean() < 0.4  # mouth and eyes: a part of the crop, not nothing and not all

    class Accel:
        backward = staticmethod(lambda loss: loss.backward())
        unwrap_model = staticmethod(lambda model: model)

    losses = {}
    for rw, fm in ((0.0, 0.0), (4.0, 0.0), (0.0, 10.0)):
        torch.manual_seed(0)
        gen = RenderingToVideoGenerator(base_channels=4, max_channels=8, resolution=64, temporal_window=3)
        disc = SpaceTimePatchDiscriminator(conditioning_channels=27, base_channels=4)
        opt_g = torch.optim.SGD(gen.parameters(), lr=0.0)
        args = argparse.Namespace(lambda_l1=100.0, lambda_temporal=0.0, lambda_feature_matching=fm, region_weight=rw)
        with torch.enable_grad():
            fake = gen(batch["conditioning"])
            _, l1, _, loss_fm, _ = generator_step(batch, fake, None, disc, GANLoss(), opt_g, args, Accel)
        losses[(rw, fm)] = (float(l1), float(loss_fm), float(gen.ups[-1].refine.weight.grad.abs().sum()))
    assert losses[(0.0, 0.0)][1] == 0 and losses[(0.0, 10.0)][1] > 0
    assert losses[(4.0, 0.0)][0] == losses[(0.0, 0.0)][0]  # the logged L1 stays the plain one
    assert losses[(4.0, 0.0)][2] > 1.2 * losses[(0.0, 0.0)][2]  # but the weighted one pulls harder


def test_init_from_a_trained_target(tiny_dataset, tmp_path):
    """--init_from starts the generator from a trained target's weights (architecture from its config); a run
    that asks for another architecture fails with one line naming the mismatch."""
    first, second = tmp_path / "first", tmp_path / "second"
    _launch(["--dataset_dir", tiny_dataset, "--output_dir", str(first), "--max_train_steps", "2", *TINY])
    tiny = [a for a in TINY]
    for flag in ("--generator_base_channels", "--generator_max_channels"):  # taken from the init target's config
        i = tiny.index(flag)
        del tiny[i : i + 2]
    _launch(
        ["--dataset_dir", tiny_dataset, "--output_dir", str(second), "--max_train_steps", "1"]
        + ["--learning_rate", "0", "--init_from", str(first / "pipeline"), *tiny]
    )
    a, b = _weights(first), _weights(second)
    convs = [k for k in a if k.endswith("weight") and a[k].dim() == 4]
    assert convs and all(torch.equal(a[k], b[k]) for k in convs)  # lr 0: the init weights, exported unchanged
    assert "generator initialised from" in (second / "pipeline" / "README.md").read_text()

    bad = subprocess.run(
        [sys.executable, SCRIPT, "--dataset_dir", tiny_dataset, "--output_dir", str(tmp_path / "bad")]
        + ["--init_from", str(first / "pipeline"), *TINY[:2], "--generator_base_channels", "8", *TINY[4:]],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "base_channels 4, this run asks for 8" in bad.stderr, bad.stderr[-2000:]


def test_shift_zoom_moves_frames_conditioning_and_region_boxes_alike(tiny_dataset):
    """Augmentation: one warp per item for the conditioning and the frame, the mouth/eye boxes moved with it."""
    from dvp_hub.augment import shift_zoom
    from dvp_hub.dataset import TargetDataset
    from dvp_hub.render.regions import box_mask

    ds = TargetDataset(tiny_dataset, "train", 3)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert shift_zoom(batch, 0, 0) is batch  # off: untouched
    size = batch["frame"].shape[-1]
    boxes = torch.tensor([[20.0, 24, 30, 34], [40, 10, 50, 20], [8, 40, 16, 50]]).repeat(4, 1, 1)  # off the edges
    frame = box_mask(boxes, size).repeat(1, 3, 1, 1) * 2 - 1
    marked = {**batch, "frame": frame, "conditioning": torch.cat([frame] * 9, 1), "regions": boxes}
    out = shift_zoom(marked, 0.1, 0.1, generator=torch.Generator().manual_seed(0))
    inside = (out["frame"][:, :1] > 0).float()
    moved = box_mask(out["regions"], size)
    assert inside.sum() > 0 and (inside * moved).sum() / inside.sum() > 0.99  # the boxes moved with the pixels
    assert abs(float(moved.sum() / inside.sum()) - 1) < 0.05
    assert not torch.equal(out["regions"], boxes) and not torch.equal(out["frame"], frame)
    assert torch.allclose(out["conditioning"][:, 3:6], out["frame"])  # the same warp for both
    real = shift_zoom(batch, 0.05, 0.05)
    assert real["conditioning"].shape == batch["conditioning"].shape and real["frame"].dtype == batch["frame"].dtype


def test_whole_pixel_shift_copies_pixels_and_marks_the_band(tiny_dataset):
    """Whole pixels: each item is its input moved by an integer offset, exactly (no resampling); ``valid`` marks
    what came from inside the crop, the boxes move by the same pixels, and `composite_valid` puts the real frame's
    band into a generated one."""
    from dvp_hub.augment import composite_valid, shift_zoom
    from dvp_hub.dataset import TargetDataset

    ds = TargetDataset(tiny_dataset, "train", 3)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    size = batch["frame"].shape[-1]
    out = shift_zoom(batch, 0.1, 0, generator=torch.Generator().manual_seed(1), whole_pixels=True)
    valid = out["valid"][:, 0]
    for i in range(4):
        dx, dy = (out["regions"][i, 0, :2] - batch["regions"][i, 0, :2]).round().long().tolist()
        assert torch.allclose(out["regions"][i] - batch["regions"][i], torch.tensor([dx, dy, dx, dy]).float())
        assert 0 < abs(dx) + abs(dy) and max(abs(dx), abs(dy)) <= round(0.1 * size)
        ys, xs = slice(max(dy, 0), size + min(dy, 0)), slice(max(dx, 0), size + min(dx, 0))
        src_ys, src_xs = slice(max(-dy, 0), size + min(-dy, 0)), slice(max(-dx, 0), size + min(-dx, 0))
        for key in ("frame", "conditioning"):
            assert torch.equal(out[key][i][:, ys, xs], batch[key][i][:, src_ys, src_xs]), key  # copied exactly
        assert bool(valid[i][ys, xs].all()) and int(valid[i].sum()) == (size - abs(dy)) * (size - abs(dx))
    fake = torch.zeros_like(out["frame"])
    mixed = composite_valid(out, fake)
    assert torch.equal(mixed[~out["valid"].expand_as(fake)], out["frame"][~out["valid"].expand_as(fake)])
    assert bool((mixed[out["valid"].expand_as(fake)] == 0).all())
    assert composite_valid(batch, fake) is fake  # no mask: untouched
    with pytest.raises(ValueError, match="zoom"):
        shift_zoom(batch, 0.1, 0.05, whole_pixels=True)


def test_augmented_training_runs_and_is_recorded(tiny_dataset, tmp_path):
    out = tmp_path / "aug"
    _launch(
        ["--dataset_dir", tiny_dataset, "--output_dir", str(out), "--max_train_steps", "2", *TINY]
        + ["--augment_shift", "0.05", "--augment_zoom", "0.05"]
    )
    assert "shift up to 0.05 of the crop" in (out / "pipeline" / "README.md").read_text()
    whole = tmp_path / "whole"
    _launch(
        ["--dataset_dir", tiny_dataset, "--output_dir", str(whole), "--max_train_steps", "2", *TINY]
        + ["--augment_shift", "0.05", "--augment_whole_pixels"]
    )
    assert (
        "(whole pixels, the band from outside the crop out of the losses)"
        in (whole / "pipeline" / "README.md").read_text()
    )


def test_bf16_warning_only_where_bf16_is_emulated():
    import types

    from dvp_hub.target_training import bf16_warning

    cpu = types.SimpleNamespace(device=torch.device("cpu"), mixed_precision="bf16")
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert (bf16_warning(cpu) is None) == native
    assert bf16_warning(types.SimpleNamespace(device=torch.device("cpu"), mixed_precision="no")) is None


def test_frames_rebuilt_from_the_clip_are_the_prepared_ones(tiny_dataset, tmp_path):
    """A dataset travels as its clip (scripts/gpu_bundle.py): rebuild_frames writes the prepared JPEGs again, byte
    for byte, from the package's reader or OpenCV's; another clip or one that ends early is refused and leaves the
    frames as they were."""
    import shutil
    from itertools import islice

    from dvp_hub.dataset import rebuild_frames
    from dvp_hub.errors import DVPError
    from dvp_hub.video import opencv_frames
    from tests.conftest import clip

    copy = tmp_path / "d3"
    shutil.copytree(tiny_dataset, copy)
    shutil.rmtree(copy / "frames")
    original = sorted((Path(tiny_dataset) / "frames").iterdir())
    for frames in (None, opencv_frames(clip("talking-d3.mp4"))):
        assert rebuild_frames(str(copy), clip("talking-d3.mp4"), frames) == len(original) == 40
        rebuilt = sorted((copy / "frames").iterdir())
        assert [p.name for p in rebuilt] == [p.name for p in original]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(rebuilt, original))
    with pytest.raises(DVPError, match="not the clip"):
        rebuild_frames(str(copy), clip("talking-d9.mp4"))
    with pytest.raises(DVPError, match="decoded 30 frames"):
        rebuild_frames(str(copy), clip("talking-d3.mp4"), islice(opencv_frames(clip("talking-d3.mp4")), 30))
    kept = sorted((copy / "frames").iterdir())
    assert [a.read_bytes() for a in kept] == [b.read_bytes() for b in original]
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in Path(tiny_dataset).iterdir())
    (copy / "frames").rename(copy / "frames.old")  # a swap cut off between its two renames
    with pytest.raises(DVPError, match="decoded 30 frames"):
        rebuild_frames(str(copy), clip("talking-d3.mp4"), islice(opencv_frames(clip("talking-d3.mp4")), 30))
    assert [a.read_bytes() for a in sorted((copy / "frames").iterdir())] == [b.read_bytes() for b in original]

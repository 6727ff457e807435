"""Distil a target's generator into a lighter live generator (`dvp_hub.distill`).

    accelerate launch training/distill_live.py --target demo --output_dir runs/live \
        --source ../shared/data/talking-d6.mp4 --source ../shared/data/speech-wda.mp4 \
        --validation_source ../shared/data/talking-d3.mp4 --max_train_minutes 120

The first run stores the teacher's clips (``OUTPUT_DIR/clips/``). Every ``--checkpointing_steps`` it writes
``OUTPUT_DIR/checkpoint-STEP/`` (the student as a ``save_pretrained`` folder, optimizer and RNG state);
``--resume_from_checkpoint latest`` goes on from the newest. Held-out scores (student against teacher) go to
``OUTPUT_DIR/validation.jsonl``; the final student to ``OUTPUT_DIR/live_generator/``, which
``training/add_refiner.py --live_generator`` adds to a target.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from dvp_hub.distill import (
    WindowSampler,
    add_distill_arguments,
    face_weights,
    load_clips,
    stored_clips,
    student_generator,
    weights_digest,
)
from dvp_hub.errors import DVPError
from dvp_hub.models.generator import RenderingToVideoGenerator
from dvp_hub.models.inference import generate_windows
from dvp_hub.perceptual import FacePerceptualLoss
from dvp_hub.pipelines.target_folder import load_component
from dvp_hub.prune import pruned_student
from dvp_hub.target_training import (
    budget_spent,
    checkpoint_to_resume,
    cosine_schedule,
    register_pretrained_hooks,
    resume,
    save_checkpoint,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Distil a target's generator into a lighter live generator.")
    p.add_argument("--target", default="demo", help="the target (demo, a folder or a Hub id) to distil")
    p.add_argument("--base_channels", type=int, default=16)
    p.add_argument("--max_channels", type=int, default=128)
    p.add_argument("--train_batch_size", type=int, default=8)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--face_weight", type=float, default=4.0, help="extra L1 weight inside the face window")
    p.add_argument("--lambda_gradient", type=float, default=1.0, help="L1 of the image gradients (edges kept)")
    p.add_argument(
        "--lambda_perceptual",
        type=float,
        default=0.0,
        help="weight of the face perceptual loss against the teacher (dvp_hub.perceptual; the train extra)",
    )
    p.add_argument(
        "--init",
        choices=("pruned", "random"),
        default="pruned",
        help="pruned: the teacher's most active channels and their weights (dvp_hub.prune); random: a fresh network",
    )
    add_distill_arguments(p, max_train_steps=4000, every=250)
    return p.parse_args(argv)


def loss_terms(fake, real, weights, args, perceptual=None, window=None) -> tuple[torch.Tensor, dict]:
    """Face-weighted L1, the L1 of the horizontal and vertical image gradients and, given ``perceptual`` (a
    `FacePerceptualLoss`), its feature distance inside the face ``window`` (x0, y0, x1, y1)."""
    l1 = ((fake - real).abs() * weights).mean()
    grad = 0.0
    if args.lambda_gradient:
        for dim in (2, 3):
            grad = grad + (fake.diff(dim=dim) - real.diff(dim=dim)).abs().mean()
    loss = l1 + args.lambda_gradient * grad
    logs = {"l1": float(l1.detach()), "grad": float(grad.detach()) if args.lambda_gradient else 0.0}
    if perceptual is not None:
        x0, y0, x1, y1 = window
        feat = perceptual(fake[..., y0:y1, x0:x1], real[..., y0:y1, x0:x1])
        loss = loss + args.lambda_perceptual * feat
        logs["perceptual"] = float(feat.detach())
    return loss, logs


@torch.no_grad()
def validate(student, clips, names, window) -> dict:
    """PSNR (dB) of the student against the teacher on each validation clip, the whole crop and the face window."""
    student.eval()
    x0, y0, x1, y1 = window
    scores = {}
    for name, (cond, frames) in zip(names, clips):
        hist = student.config.temporal_window - 1
        mse, face = [], []
        for s in range(0, len(cond), 16):  # 16 frames at a time, with their history (the first frame repeated)
            idx = np.clip(np.arange(s - hist, min(s + 16, len(cond))), 0, None)
            c = (torch.from_numpy(np.array(cond[idx])).float() / 127.5 - 1).contiguous(
                memory_format=torch.channels_last
            )
            err = generate_windows(student, c) - (torch.from_numpy(np.array(frames[s : s + 16])).float() / 127.5 - 1)
            mse.append((err**2).mean(dim=(1, 2, 3)))
            face.append((err[..., y0:y1, x0:x1] ** 2).mean(dim=(1, 2, 3)))
        mse, face = torch.cat(mse), torch.cat(face)
        scores[name] = {
            "psnr": float((10 * torch.log10(4 / mse)).mean()),
            "psnr_face": float((10 * torch.log10(4 / face)).mean()),
        }
    student.train()
    return scores


def main(argv=None) -> int:
    args = parse_args(argv)
    accelerator = Accelerator()
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    folder = stored_clips(accelerator, args)
    clips, meta = load_clips(folder)
    val_clips, _ = load_clips(folder, "validation")
    student = _initial_student(args, meta, clips)
    cfg = student.config
    opt = torch.optim.Adam(student.parameters(), lr=args.learning_rate, betas=(0.9, 0.99))
    sched = cosine_schedule(opt, args.max_train_steps)
    student, opt = accelerator.prepare(student, opt)  # the schedule steps once a step, whatever the process count
    accelerator.register_for_checkpointing(sched)
    register_pretrained_hooks(accelerator, {RenderingToVideoGenerator: "live_generator"})
    step = resume(accelerator, args)  # --max_train_minutes counts resumed runs together (args.prior_seconds)
    window = tuple(meta["face_window"])
    size = int(cfg.resolution)
    weights = face_weights(size, window, args.face_weight).to(accelerator.device)
    perceptual = FacePerceptualLoss().to(accelerator.device) if args.lambda_perceptual else None
    sampler = WindowSampler(clips, int(cfg.temporal_window), seed=args.seed * 1000 + step + accelerator.process_index)
    args.t0 = time.perf_counter()
    logs = {}
    while step < args.max_train_steps:
        if budget_spent(args):  # decided together: every process stops at the same step
            accelerator.set_trigger()
        if accelerator.check_trigger():
            break
        x, y = (t.to(accelerator.device) for t in sampler.batch(args.train_batch_size))
        loss, logs = loss_terms(student(x), y, weights, args, perceptual, window)
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        opt.step()
        sched.step()
        step += 1
        if step % 50 == 0:
            accelerator.print(f"step {step} " + " ".join(f"{k} {v:.4f}" for k, v in logs.items()), flush=True)
        if step % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, args, step)
        if step % args.validation_steps == 0 and accelerator.is_main_process:
            _log_validation(args, accelerator, student, val_clips, meta, step)
    accelerator.wait_for_everyone()
    if step % args.checkpointing_steps:  # the last step leaves a checkpoint
        save_checkpoint(accelerator, args, step)
    if accelerator.is_main_process:
        if step % args.validation_steps:  # not scored at this step yet
            _log_validation(args, accelerator, student, val_clips, meta, step)
        accelerator.unwrap_model(student).save_pretrained(os.path.join(args.output_dir, "live_generator"))
        accelerator.print(f"{step} steps; live generator saved to {os.path.join(args.output_dir, 'live_generator')}")
    accelerator.end_training()
    return 0


def _initial_student(args, meta, clips) -> RenderingToVideoGenerator:
    """The student before its first step (a resumed run loads its checkpoint over it): cut out of the teacher from
    32 windows of the training clips (``--init pruned``), or fresh."""
    if args.init == "random" or checkpoint_to_resume(args):
        return student_generator(meta["teacher"], args.base_channels, args.max_channels)
    teacher = load_component(args.target, "generator", RenderingToVideoGenerator)
    if teacher is None:
        raise DVPError(f"{args.target} has no generator to cut a student out of; use --init random.")
    shape = ("in_channels", "temporal_window", "resolution", "num_levels", "out_channels", "innermost_norm")
    if any(teacher.config[k] != meta["teacher"].get(k) for k in shape):
        raise DVPError(
            f"{args.target}'s generator has another shape than the stored clips' teacher; use --init random."
        )
    if meta.get("teacher_digest") not in (None, weights_digest(teacher)):
        folder = args.clips_dir or os.path.join(args.output_dir, "clips")
        raise DVPError(
            f"the stored clips were made by another generator than {args.target}'s: remove {folder} (it is "
            "rebuilt), or keep it with --init random."
        )
    windows, _ = WindowSampler(clips, int(teacher.config.temporal_window), seed=args.seed).batch(32)
    return pruned_student(teacher, windows, args.base_channels, args.max_channels)


def _log_validation(args, accelerator, student, val_clips, meta, step) -> None:
    if not val_clips:
        return
    scores = validate(accelerator.unwrap_model(student), val_clips, meta["validation"], tuple(meta["face_window"]))
    with open(os.path.join(args.output_dir, "validation.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, **scores}) + "\n")
    accelerator.print(
        f"step {step}: student against teacher "
        + ", ".join(f"{k} {v['psnr']:.2f} dB (face {v['psnr_face']:.2f})" for k, v in scores.items())
    )


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DVPError as err:
        raise SystemExit(f"error: {err}") from None

"""Distil a target's refiner into a lighter one (`dvp_hub.refiner_distill`).

    accelerate launch training/distill_refiner.py --target demo --output_dir runs/refiner-light \
        --source ../shared/data/talking-d6.mp4 --source ../shared/data/speech-wda.mp4 \
        --validation_source ../shared/data/talking-d3.mp4

The first run stores the generator's clips (``OUTPUT_DIR/clips/``, as `training/distill_live.py` does; give both
scripts the same ``--clips_dir`` and they are built once) and the teacher refiner's windows of them
(``OUTPUT_DIR/teacher/``). Every ``--checkpointing_steps`` it writes ``OUTPUT_DIR/checkpoint-STEP/`` (the student
as a ``save_pretrained`` folder, optimizer and RNG state); ``--resume_from_checkpoint latest`` goes on from the
newest. Scores against the teacher go to ``OUTPUT_DIR/validation.jsonl``; the final student to
``OUTPUT_DIR/refiner/``, which ``training/add_refiner.py --refiner`` puts in the target in place of its refiner.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from dvp_hub.distill import add_distill_arguments, load_clips, stored_clips
from dvp_hub.errors import DVPError
from dvp_hub.models.refiner import FaceRefiner
from dvp_hub.refiner_distill import (
    WindowPatchSampler,
    load_refiner,
    receptive_radius,
    student_refiner,
    teacher_windows,
    validate,
)
from dvp_hub.target_training import budget_spent, cosine_schedule, register_pretrained_hooks, resume, save_checkpoint


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Distil a target's refiner into a lighter one.")
    p.add_argument("--target", default="demo", help="the target (demo, a folder or a Hub id) whose refiner is taught")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--num_blocks", type=int, default=2)
    p.add_argument("--patch", type=int, default=96, help="input patch side in px (inside the face window)")
    p.add_argument("--train_batch_size", type=int, default=16)
    p.add_argument("--learning_rate", type=float, default=2e-3)
    add_distill_arguments(p, max_train_steps=6000, every=500)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    accelerator = Accelerator()
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    folder = stored_clips(accelerator, args)
    train, meta = load_clips(folder)
    val, _ = load_clips(folder, "validation")
    window = tuple(meta["face_window"])
    names = meta["clips"] + meta["validation"]
    frames = dict(zip(names, [f for _, f in train + val]))
    teacher = load_refiner(args.target).to(accelerator.device)
    teacher_dir = os.path.join(args.output_dir, "teacher")
    if accelerator.is_main_process:
        teacher_windows(teacher, frames, window, teacher_dir, log=accelerator.print)
    accelerator.wait_for_everyone()
    refined = teacher_windows(teacher, frames, window, teacher_dir)
    student = student_refiner(teacher, args.channels, args.num_blocks)
    opt = torch.optim.Adam(student.parameters(), lr=args.learning_rate, betas=(0.9, 0.99))
    sched = cosine_schedule(opt, args.max_train_steps)
    student, opt = accelerator.prepare(student, opt)
    accelerator.register_for_checkpointing(sched)
    register_pretrained_hooks(accelerator, {FaceRefiner: "refiner"})
    step = resume(accelerator, args)
    sampler = WindowPatchSampler(
        [frames[n] for n in meta["clips"]],
        [refined[n] for n in meta["clips"]],
        window,
        args.patch,
        teacher.config.scale,
        receptive_radius(accelerator.unwrap_model(student)),
        seed=args.seed * 1000 + step + accelerator.process_index,
    )
    args.t0 = time.perf_counter()
    loss = None
    while step < args.max_train_steps:
        if budget_spent(args):  # decided together: every process stops at the same step
            accelerator.set_trigger()
        if accelerator.check_trigger():
            break
        x, y, w = (t.to(accelerator.device) for t in sampler.batch(args.train_batch_size))
        loss = ((student(x) - y).abs() * w).mean()
        opt.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        opt.step()
        sched.step()
        step += 1
        if step % 50 == 0:
            accelerator.print(f"step {step} l1 {float(loss.detach()):.5f}", flush=True)
        if step % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, args, step)
        if step % args.validation_steps == 0 and accelerator.is_main_process:
            _log_validation(args, accelerator, student, meta["validation"], frames, refined, window, step)
    accelerator.wait_for_everyone()
    if step % args.checkpointing_steps:  # the last step leaves a checkpoint
        save_checkpoint(accelerator, args, step)
    if accelerator.is_main_process:
        if step % args.validation_steps:
            _log_validation(args, accelerator, student, meta["validation"], frames, refined, window, step)
        accelerator.unwrap_model(student).save_pretrained(os.path.join(args.output_dir, "refiner"))
        accelerator.print(f"{step} steps; refiner saved to {os.path.join(args.output_dir, 'refiner')}")
    accelerator.end_training()
    return 0


def _log_validation(args, accelerator, student, names, frames, refined, window, step) -> None:
    scores = {n: validate(accelerator.unwrap_model(student), frames[n], refined[n], window) for n in names}
    if not scores:
        return
    with open(os.path.join(args.output_dir, "validation.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, **scores}) + "\n")
    accelerator.print(
        f"step {step}: student against teacher "
        + ", ".join(f"{k} {v['student']:.2f} dB (bilinear {v['bilinear']:.2f})" for k, v in scores.items())
    )


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DVPError as err:
        raise SystemExit(f"error: {err}") from None

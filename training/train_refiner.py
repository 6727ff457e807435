"""Train a target's `FaceRefiner` (generated crop -> real crop at twice the size) on its own footage.

    accelerate launch training/train_refiner.py --target demo \
        --target_video ../shared/data/target-obama-34s.mp4 --output_dir runs/refiner --max_train_minutes 120

The first run builds the training pairs (``OUTPUT_DIR/pairs/``, `dvp_hub.refiner_data`). Every
``--checkpointing_steps`` it writes ``OUTPUT_DIR/checkpoint-STEP/`` (the refiner as a ``save_pretrained``
folder through accelerate's save hook, the discriminator, optimizers and RNG state); ``--resume_from_checkpoint
latest`` goes on from the newest. Held-out scores go to ``OUTPUT_DIR/validation.jsonl``; the final refiner to
``OUTPUT_DIR/refiner/``, which ``training/add_refiner.py --refiner`` adds to a target.
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

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.errors import DVPError
from dvp_hub.models.refiner import FaceRefiner, PatchDiscriminator
from dvp_hub.perceptual import FacePerceptualLoss
from dvp_hub.refiner_data import build_pairs, load_pairs
from dvp_hub.refiner_train import (
    PatchSampler,
    feature_matching,
    initial_refiner,
    lsgan,
    split_bands,
    upsample,
    validate,
)
from dvp_hub.target_training import register_pretrained_hooks, resume, save_checkpoint

HIGH_BAND_GAIN = 10.0  # the high band (std ~0.025 of a [-1, 1] face patch at sigma 1.5) scaled up


def judged(args, image: torch.Tensor) -> torch.Tensor:
    """What the discriminator sees of a real or refined patch: the patch, or with --frequency_split its high band."""
    if not args.frequency_split:
        return image
    return HIGH_BAND_GAIN * split_bands(image, args.frequency_split)[1]


def compared(args, image: torch.Tensor) -> torch.Tensor:
    """What L1 and the perceptual term compare: the patch, or with --frequency_split its low pass."""
    return split_bands(image, args.frequency_split)[0] if args.frequency_split else image


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train a target's face refiner.")
    p.add_argument("--target", default="demo", help="the target (demo, a folder or a Hub id) whose generator feeds it")
    p.add_argument("--target_video", help="the target's own video (needed to build the pairs once)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--max_frames", type=int, default=None, help="use only the first N target frames (tests)")
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--num_blocks", type=int, default=4)
    p.add_argument(
        "--texture_size", type=int, default=0, help="side of a neural texture over the face surface (0: none)"
    )
    p.add_argument("--texture_channels", type=int, default=8)
    p.add_argument("--texture_lr", type=float, default=1e-2, help="learning rate of the neural texture's texels")
    p.add_argument("--init_from", help="a refiner folder to start from (its own channels and blocks)")
    p.add_argument("--patch", type=int, default=192, help="real patch side in px")
    p.add_argument("--train_batch_size", type=int, default=8)
    p.add_argument("--learning_rate", type=float, default=2e-4)
    p.add_argument("--lambda_l1", type=float, default=10.0)
    p.add_argument("--lambda_adv", type=float, default=1.0)
    p.add_argument("--lambda_feature_matching", type=float, default=10.0)
    p.add_argument(
        "--lambda_perceptual",
        type=float,
        default=0.0,
        help="weight of an L1 between EfficientNet-Lite0 features of the refined and real patch (0: off)",
    )
    p.add_argument(
        "--frequency_split",
        type=float,
        default=0.0,
        help="frequency separation (Fritsche et al., 2019), a Gaussian sigma in output px (0: off): L1 and the "
        "perceptual term compare only the low pass, and the discriminator sees only the high band, so detail that "
        "is real but not pixel-aligned is no longer averaged away",
    )
    p.add_argument("--adv_start", type=int, default=300, help="steps of L1 alone before the adversarial terms")
    p.add_argument(
        "--freeze_refiner_steps",
        type=int,
        default=0,
        help="first steps that train the discriminator alone on the refiner's output (with --init_from: so that a "
        "fine-tune starts against a discriminator that knows the refiner, not a blank one that lets L1 blur it)",
    )
    p.add_argument("--input_blur", type=float, default=1.0, help="largest sigma of the input blur augmentation")
    p.add_argument("--max_train_steps", type=int, default=100_000)
    p.add_argument("--max_train_minutes", type=float, default=None)
    p.add_argument("--checkpointing_steps", type=int, default=500)
    p.add_argument("--checkpoints_total_limit", type=int, default=2)
    p.add_argument("--validation_steps", type=int, default=500)
    p.add_argument("--validation_frames", type=int, default=16)
    p.add_argument("--resume_from_checkpoint", help="a checkpoint folder, or 'latest'")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def pairs_folder(args, accelerator) -> str:
    """The pair folder, built once by the main process when missing."""
    folder = os.path.join(args.output_dir, "pairs")
    if accelerator.is_main_process and not os.path.isfile(os.path.join(folder, "pairs.json")):
        if not args.target_video:
            raise DVPError(f"{folder} has no training pairs yet: give --target_video (the target's own video).")
        pipe = DeepVideoPortraitPipeline.from_pretrained(args.target).to(accelerator.device)
        build_pairs(pipe, args.target_video, folder + ".tmp", max_frames=args.max_frames)
        os.replace(folder + ".tmp", folder)
    accelerator.wait_for_everyone()
    return folder


def train_step(args, step, refiner, disc, opt_g, opt_d, gen, real, accelerator, perceptual=None, corr=None) -> dict:
    """One generator and one discriminator update; returns the losses. ``perceptual``: a `FacePerceptualLoss`
    applied to whole patches with weight ``args.lambda_perceptual``, or None. ``corr``: the patches'
    correspondence images (a refiner with a neural texture), or None."""
    scale = accelerator.unwrap_model(refiner).config.scale
    cond = upsample(gen, scale)
    if step < args.freeze_refiner_steps:  # the discriminator first learns what the refiner (--init_from) makes
        with torch.no_grad():
            fake = refiner(gen, corr)
        return {"d": discriminator_step(disc, opt_d, cond, judged(args, real), judged(args, fake), accelerator)}
    fake = refiner(gen, corr)
    adv = step >= args.adv_start
    fake_c, real_c = compared(args, fake), compared(args, real)
    loss = args.lambda_l1 * torch.nn.functional.l1_loss(fake_c, real_c)
    logs = {"l1": float(loss.detach()) / args.lambda_l1}
    if perceptual is not None:
        perc = perceptual(fake_c, real_c)
        loss = loss + args.lambda_perceptual * perc
        logs["perceptual"] = float(perc.detach())
    if adv:
        real_seen, fake_seen = judged(args, real), judged(args, fake)
        logits, fake_feats = disc(torch.cat([cond, fake_seen], 1))
        with torch.no_grad():
            _, real_feats = disc(torch.cat([cond, real_seen], 1))
        g_adv = lsgan(logits, True)
        fm = feature_matching(fake_feats, real_feats)
        loss = loss + args.lambda_adv * g_adv + args.lambda_feature_matching * fm
        logs.update(g_adv=float(g_adv.detach()), fm=float(fm.detach()))
    opt_g.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    opt_g.step()
    if adv:
        logs["d"] = discriminator_step(disc, opt_d, cond, real_seen, fake_seen.detach(), accelerator)
    return logs


def discriminator_step(disc, opt_d, cond, real, fake, accelerator) -> float:
    """One least-squares update of the conditional PatchGAN on real and (detached) refined patches, as `judged`
    shows them; its loss."""
    real_logits, _ = disc(torch.cat([cond, real], 1))
    fake_logits, _ = disc(torch.cat([cond, fake], 1))
    d_loss = 0.5 * (lsgan(real_logits, True) + lsgan(fake_logits, False))
    opt_d.zero_grad(set_to_none=True)
    accelerator.backward(d_loss)
    opt_d.step()
    return float(d_loss.detach())


def run_validation(args, refiner, pairs, step, accelerator) -> None:
    generated, real, boxes, meta, corr = pairs
    held = np.arange(meta["train_frames"], meta["frames"])
    if not len(held):
        return
    picks = held[np.linspace(0, len(held) - 1, min(args.validation_frames, len(held))).round().astype(int)]
    scores, _ = validate(accelerator.unwrap_model(refiner), generated, real, boxes, picks.tolist(), corr)
    with open(os.path.join(args.output_dir, "validation.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, **scores}) + "\n")
    r, b = scores["refined"], scores["bilinear"]
    accelerator.print(
        f"step {step}: held-out PSNR {r['psnr']:.2f} dB (bilinear {b['psnr']:.2f}), mid-band detail "
        f"{r['detail_mid_band']:.2f} ({b['detail_mid_band']:.2f}), band error {r['band_error']:.2f} ({b['band_error']:.2f})"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    accelerator = Accelerator()
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    pairs = load_pairs(pairs_folder(args, accelerator))
    generated, real, boxes, meta, corr = pairs
    if args.texture_size and corr is None:
        raise DVPError(f"{args.output_dir}/pairs has no correspondence.npy (built before it was stored): remove it.")
    if args.init_from:
        refiner = initial_refiner(args.init_from)
        if refiner.config.scale != meta["scale"]:
            raise DVPError(f"--init_from {args.init_from} enlarges {refiner.config.scale}x; the pairs are {meta['scale']}x.")
    else:
        refiner = FaceRefiner(
            channels=args.channels,
            num_blocks=args.num_blocks,
            scale=meta["scale"],
            texture_size=args.texture_size,
            texture_channels=args.texture_channels,
        )
    disc = PatchDiscriminator()
    perceptual = None
    if args.lambda_perceptual > 0:
        perceptual = FacePerceptualLoss().to(accelerator.device)
    texels = [p for n, p in refiner.named_parameters() if n == "texture"]
    others = [p for n, p in refiner.named_parameters() if n != "texture"]
    groups = [{"params": others}] + ([{"params": texels, "lr": args.texture_lr}] if texels else [])
    opt_g = torch.optim.Adam(groups, lr=args.learning_rate, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.learning_rate, betas=(0.5, 0.999))
    refiner, disc, opt_g, opt_d = accelerator.prepare(refiner, disc, opt_g, opt_d)
    register_pretrained_hooks(accelerator, {FaceRefiner: "refiner"})
    step = resume(accelerator, args)
    sampler = PatchSampler(
        generated,
        real,
        boxes,
        meta["train_frames"],
        args.patch,
        meta["scale"],
        blur=args.input_blur,
        seed=args.seed * 1000 + step + accelerator.process_index,
        correspondence=corr if accelerator.unwrap_model(refiner).uses_texture else None,
    )
    t0, logs = time.time(), {}
    while step < args.max_train_steps:
        if args.max_train_minutes is not None and time.time() - t0 > 60 * args.max_train_minutes:
            break
        gen, rl, cr = (None if t is None else t.to(accelerator.device) for t in sampler.batch(args.train_batch_size))
        logs = train_step(args, step, refiner, disc, opt_g, opt_d, gen, rl, accelerator, perceptual, cr)
        step += 1
        if step % 50 == 0:
            accelerator.print(f"step {step} " + " ".join(f"{k} {v:.4f}" for k, v in logs.items()), flush=True)
        if step % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, args, step)
        if step % args.validation_steps == 0 and accelerator.is_main_process:
            run_validation(args, refiner, pairs, step, accelerator)
    accelerator.wait_for_everyone()
    save_checkpoint(accelerator, args, step)
    if accelerator.is_main_process:
        run_validation(args, refiner, pairs, step, accelerator)
        accelerator.unwrap_model(refiner).save_pretrained(os.path.join(args.output_dir, "refiner"))
        accelerator.print(f"{step} steps; refiner saved to {os.path.join(args.output_dir, 'refiner')}")
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except DVPError as err:
        raise SystemExit(f"error: {err}") from None

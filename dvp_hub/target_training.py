"""The library parts of `training/train_target.py` (the person-specific cGAN): one discriminator and one generator
step, held-out validation, checkpoints written atomically, and the pipeline of a trained generator."""

from __future__ import annotations

import json
import math
import os
import shutil
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .augment import composite_valid
from .errors import DVPError
from .face.sequence import FaceSequence
from .models import PortraitTarget
from .pipelines.pipeline_dvp import DeepVideoPortraitPipeline
from .render.crop import Crop
from .render.regions import box_mask


def decayed_lr(args, step: int) -> float:
    """The learning rate of the step after ``step``: ``--learning_rate``, falling linearly to zero over the last
    ``--lr_decay_steps`` of ``--max_train_steps`` (pix2pixHD). A function of the step alone, so a run resumed from
    a checkpoint follows the same schedule as an uninterrupted one."""
    decay, left = args.lr_decay_steps, args.max_train_steps - step
    return args.learning_rate if not decay or left > decay else args.learning_rate * max(left, 0) / decay


def cosine_schedule(opt, total_steps: int, floor: float = 0.02):
    """A ``LambdaLR`` on ``opt`` whose factor falls from 1 to ``floor`` along a cosine over ``total_steps`` steps and
    stays there (the distillation scripts'; register it for checkpointing). A function of the step: a resumed run
    follows the ``total_steps`` it is given."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
    )


def set_learning_rate(optimizers, lr: float) -> None:
    """Set every parameter group of ``optimizers`` to ``lr`` (a resumed optimizer state carries its old one)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def discriminator_step(batch, generator, discriminator, gan_loss, opt_d, accelerator):
    """D step on the detached fake, one forward over real and fake together (DDP-safe).

    With a temporal loss the batch carries each frame's predecessor: one generator forward makes both.
    """
    cond, real = batch["conditioning"], batch["frame"]
    fake_prev = None
    if "prev_conditioning" in batch:
        fake, fake_prev = generator(torch.cat([cond, batch["prev_conditioning"]])).chunk(2)  # G(x_t), G(x_t-1)
        fake_prev = composite_valid(batch, fake_prev, "prev_frame")
    else:
        fake = generator(cond)  # G(x)
    fake = composite_valid(batch, fake)  # a whole-pixel shift's band: the real frame's in both (no loss there)
    logits = discriminator(torch.cat([cond, cond]), torch.cat([real, fake.detach()]))
    d_real, d_fake = logits.chunk(2)
    loss_d = 0.5 * (gan_loss(d_real, True) + gan_loss(d_fake, False))  # D(x, y) -> 1, D(x, G(x)) -> 0
    opt_d.zero_grad(set_to_none=True)
    accelerator.backward(loss_d)
    opt_d.step()
    return fake, fake_prev, loss_d.detach()


def generator_step(batch, fake, fake_prev, discriminator, gan_loss, opt_g, args, accelerator, perceptual=None):
    """G step on the same batch: fool D, plus lambda * L1 to the real frame (plus the optional terms).

    perceptual: a `perceptual.FacePerceptualLoss`, weighted by ``args.lambda_perceptual`` (None: off). Returns the
    detached ``(gan, l1, temporal, feature matching, perceptual)`` losses.
    """
    cond, real = batch["conditioning"], batch["frame"]
    if args.lambda_feature_matching:  # D's activations on G(x) should match those on y (pix2pixHD)
        d = accelerator.unwrap_model(discriminator)
        feats_fake, logits = d.features(cond, fake)
        with torch.no_grad():
            feats_real, _ = d.features(cond, real)
        loss_fm = sum(nn.functional.l1_loss(f, r) for f, r in zip(feats_fake, feats_real)) / len(feats_fake)
    else:
        logits, loss_fm = discriminator(cond, fake), torch.zeros((), device=real.device)
    loss_gan = gan_loss(logits, True)  # D(x, G(x)) -> 1
    err = (fake - real).abs()
    loss_l1 = err.mean()  # |y - G(x)|_1
    if args.region_weight:  # the mouth and eyes count 1 + W times
        weight = 1 + args.region_weight * box_mask(batch["regions"].to(err.dtype), err.shape[-1])
        loss_g = loss_gan + args.lambda_l1 * (err * weight).mean()
    else:
        loss_g = loss_gan + args.lambda_l1 * loss_l1
    loss_g = loss_g + args.lambda_feature_matching * loss_fm
    loss_p = torch.zeros((), device=real.device)
    if perceptual is not None:  # the face's ImageNet features should match the real face's
        loss_p = perceptual(fake, real, batch["regions"])
        loss_g = loss_g + args.lambda_perceptual * loss_p
    loss_t = torch.zeros((), device=real.device)
    if fake_prev is not None:  # |(G(x_t) - G(x_t-1)) - (y_t - y_t-1)|_1: no flicker the real video lacks
        loss_t = nn.functional.l1_loss(fake - fake_prev, real - batch["prev_frame"])
        loss_g = loss_g + args.lambda_temporal * loss_t
    opt_g.zero_grad(set_to_none=True)
    accelerator.backward(loss_g)
    opt_g.step()
    return loss_gan.detach(), loss_l1.detach(), loss_t.detach(), loss_fm.detach(), loss_p.detach()


@torch.no_grad()
def validate(generator, val_ds, args, step, device) -> dict:
    """PSNR / SSIM (torchmetrics) on the validation frames and a grid: conditioning | generated | real."""
    was_training = generator.training
    generator.eval()
    n = len(val_ds)
    pick = np.unique(np.linspace(0, n - 1, min(n, args.max_validation_frames)).round().astype(int))
    fakes, reals = [], []
    for s in range(0, len(pick), 8):
        items = [val_ds[int(i)] for i in pick[s : s + 8]]
        cond = torch.stack([it["conditioning"] for it in items]).to(device)
        fakes.append(((generator(cond).float() + 1) / 2).clamp(0, 1).cpu())
        reals.append(torch.stack([(it["frame"] + 1) / 2 for it in items]).float().cpu())
    fake, real = torch.cat(fakes), torch.cat(reals)
    metrics = {
        "psnr": float(peak_signal_noise_ratio(fake, real, data_range=1.0)),
        "ssim": float(structural_similarity_index_measure(fake, real, data_range=1.0)),
    }
    rows = []
    for j in np.linspace(0, len(pick) - 1, min(4, len(pick))).round().astype(int):
        cond = val_ds[int(pick[j])]["conditioning"][-9:].cpu()
        diff = (cond[:3] + 1) / 2
        rows.append(torch.cat([diff, fake[j], real[j]], 2))
    grid = (torch.cat(rows, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    out = os.path.join(args.output_dir, "validation")
    os.makedirs(out, exist_ok=True)
    Image.fromarray(grid).save(os.path.join(out, f"step-{step:06d}.png"))
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, **metrics}) + "\n")
    generator.train(was_training)
    return metrics


def bf16_warning(accelerator) -> str | None:
    """A one-line warning when bf16 is asked for on a CPU without native bf16 (emulated: many times slower), else None."""
    if accelerator.device.type != "cpu" or accelerator.mixed_precision != "bf16":
        return None
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None
    return (
        "warning: this CPU has no native bf16 (no avx512_bf16 / AMX), so --mixed_precision bf16 is emulated and "
        "much slower than fp32; train with --mixed_precision no here"
    )


def complete_checkpoints(output_dir):
    dirs = [d for d in os.listdir(output_dir) if d.startswith("checkpoint-") and d.split("-")[1].isdigit()]
    dirs = [d for d in dirs if os.path.isfile(os.path.join(output_dir, d, "COMPLETE"))]
    return sorted(dirs, key=lambda d: int(d.split("-")[1]))


def checkpoint_to_resume(args) -> str | None:
    """The checkpoint folder `resume` loads: ``args.resume_from_checkpoint``, or for ``"latest"`` the newest complete
    one in ``args.output_dir``; None on a first run."""
    ckpt = args.resume_from_checkpoint
    if ckpt == "latest":
        done = complete_checkpoints(args.output_dir)
        ckpt = os.path.join(args.output_dir, done[-1]) if done else None
    return ckpt or None


def resume(accelerator, args) -> int:
    """Load ``args.resume_from_checkpoint`` (a checkpoint folder, or ``"latest"``: the newest complete one in
    ``args.output_dir``, none on a first run) into ``accelerator``; sets ``args.prior_seconds`` to its training clock
    (`read_clock`). Returns the step it was written at (0 when nothing was loaded)."""
    ckpt = checkpoint_to_resume(args)
    args.prior_seconds = 0.0
    if not ckpt:
        return 0
    accelerator.load_state(ckpt)
    args.prior_seconds = read_clock(ckpt)
    accelerator.print(f"resumed from {ckpt} ({args.prior_seconds / 60:.1f} min trained)")
    return int(os.path.basename(ckpt.rstrip("/")).split("-")[1])


def register_pretrained_hooks(accelerator, folders: dict) -> None:
    """accelerate's save and load hooks, as diffusers' training examples use them: each prepared model of a class
    in ``folders`` (class -> subfolder name) goes into a checkpoint as a ``save_pretrained`` folder of that name,
    readable by ``from_pretrained`` and by the export scripts, and is loaded back from it; the other models (the
    discriminators) stay in accelerate's own files."""

    def owner(model):
        return next((name for cls, name in folders.items() if isinstance(accelerator.unwrap_model(model), cls)), None)

    def save_hook(models, weights, output_dir):
        for i in reversed(range(len(models))):
            name = owner(models[i])
            if name is not None:
                if accelerator.is_main_process:
                    accelerator.unwrap_model(models[i]).save_pretrained(os.path.join(output_dir, name))
                weights.pop(i)

    def load_hook(models, input_dir):
        for i in reversed(range(len(models))):
            name = owner(models[i])
            if name is not None:
                model = accelerator.unwrap_model(models.pop(i))
                loaded = type(model).from_pretrained(os.path.join(input_dir, name))
                model.load_state_dict(loaded.state_dict())

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


CLOCK_FILE = "training_clock.json"  # in each checkpoint: its step and the training seconds that led to it


def training_seconds(args) -> float:
    """The run's training time so far: the resumed checkpoint's clock (``args.prior_seconds``) plus this process's
    time since the loop started (``args.t0``, a `time.perf_counter` reading); 0 before either is set."""
    t0 = getattr(args, "t0", None)
    return getattr(args, "prior_seconds", 0.0) + (time.perf_counter() - t0 if t0 is not None else 0.0)


def read_clock(checkpoint: str) -> float:
    """The training seconds a checkpoint was written at (0 for checkpoints written before the clock was kept, so
    a time budget restarts from them)."""
    path = os.path.join(checkpoint, CLOCK_FILE)
    if not os.path.isfile(path):
        return 0.0
    with open(path) as f:
        return float(json.load(f)["seconds"])


def write_clock(checkpoint: str, args, step: int) -> None:
    """Record in ``checkpoint`` the training seconds so far (`training_seconds`), for `read_clock`."""
    with open(os.path.join(checkpoint, CLOCK_FILE), "w") as f:
        json.dump({"step": step, "seconds": round(training_seconds(args), 1)}, f)


def save_checkpoint(accelerator, args, step):
    """accelerate state into ``checkpoint-STEP.partial``, then renamed: a killed write leaves no checkpoint. The
    checkpoint also holds its training clock (`read_clock`), so that a time budget counts resumed runs together."""
    if accelerator.is_main_process and args.checkpoints_total_limit is not None:
        existing = complete_checkpoints(args.output_dir)
        for d in existing[: max(0, len(existing) - args.checkpoints_total_limit + 1)]:
            shutil.rmtree(os.path.join(args.output_dir, d))
    final = os.path.join(args.output_dir, f"checkpoint-{step}")
    tmp = final + ".partial"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed while writing
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_clock(tmp, args, step)
        with open(os.path.join(tmp, "COMPLETE"), "w") as f:
            f.write(str(step))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()


def init_generator(args):
    """The generator of a trained target, in fp32, checked against this run's window, resolution and channels."""
    gen = DeepVideoPortraitPipeline.from_pretrained(args.init_from, dtype=torch.float32).generator
    cfg = gen.config
    wanted = {
        "temporal_window": args.temporal_window,
        "resolution": args.resolution,
        "base_channels": args.generator_base_channels,
        "max_channels": args.generator_max_channels,
    }
    for key, value in wanted.items():
        if value is not None and cfg[key] != value:
            raise DVPError(
                f"--init_from {args.init_from} has {key} {cfg[key]}, this run asks for {value}; "
                f"drop the option or train with {key} {cfg[key]}."
            )
    return gen.train()


def make_pipeline(generator, dataset_dir: str, meta: dict, name: str):
    """The pipeline of a trained generator: the target's face parameters, crop and source from the dataset."""
    seq = FaceSequence.load(os.path.join(dataset_dir, "face_sequence.safetensors"))
    target = PortraitTarget.from_sequence(
        seq,
        Crop.from_list(meta["crop"]),
        meta["resolution"],
        train_frames=meta["val_start"],
        name=name,
        source_video=meta["source"],
        source_frames=meta.get("shot", {}).get("kept"),  # None: the whole video (datasets before shots)
    )
    pipe = DeepVideoPortraitPipeline(generator=generator.to("cpu", torch.float32).eval(), target=target)
    reference = os.path.join(dataset_dir, "reference.png")  # the full frame, for paste-back (`prepare_target_dataset`)
    pipe.reference = reference if os.path.isfile(reference) else None
    return pipe


def bar_fields(logs: dict, metrics: dict, args, t0: float, done: int) -> dict:
    """The progress bar's fields: the L1 and discriminator losses, the last held-out PSNR, and the time left by
    whichever budget ends first (``--max_train_minutes`` or the steps at the current rate)."""
    fields = {"l1": f"{logs['loss_l1']:.3f}", "d": f"{logs['loss_d']:.3f}"}
    if metrics:
        fields["val_psnr"] = f"{metrics['psnr']:.2f}"
    elapsed = time.perf_counter() - t0
    left = (args.max_train_steps - done - args.start_step) * elapsed / max(done, 1)
    if args.max_train_minutes is not None:  # the budget counts the resumed checkpoints' time too
        left = min(left, 60 * args.max_train_minutes - getattr(args, "prior_seconds", 0.0) - elapsed)
    fields["left"] = f"{max(left, 0) / 60:.0f} min"
    return fields


def budget_spent(args) -> bool:
    """Whether ``--max_train_minutes`` (counting the resumed checkpoints' time) has run out; never without it."""
    return args.max_train_minutes is not None and training_seconds(args) > 60 * args.max_train_minutes


def training_summary(args, gen, meta: dict, accelerator, seconds: float, step: int) -> dict:
    """The model card's training table of a `train_target` run: generator, steps, optimiser, losses, time."""
    training = {
        "generator": f"U-Net, {gen.config.base_channels} base channels, {len(gen.downs)} levels, "
        f"window {gen.config.temporal_window}",
        "resolution": meta["resolution"],
        "steps": step,
        "batch size (per process)": args.train_batch_size,
        "processes": accelerator.num_processes,
        "optimizer": f"Adam lr {args.learning_rate}, betas ({args.adam_beta1}, {args.adam_beta2})"
        + (f", falling linearly to 0 over the last {args.lr_decay_steps} steps" if args.lr_decay_steps else ""),
        "loss": f"cGAN + {args.lambda_l1} x L1"
        + (f" (x{1 + args.region_weight:g} on mouth and eyes)" if args.region_weight else "")
        + (f" + {args.lambda_temporal} x temporal L1" if args.lambda_temporal else "")
        + (f" + {args.lambda_feature_matching} x feature matching" if args.lambda_feature_matching else "")
        + (f" + {args.lambda_perceptual} x face perceptual (EfficientNet-Lite0)" if args.lambda_perceptual else ""),
        "mixed precision": accelerator.mixed_precision,
        "training time": f"{seconds / 60:.1f} min on {accelerator.device.type}",
        "seed": args.seed,
    }
    if args.init_from:
        training["generator initialised from"] = args.init_from
    if args.augment_shift or args.augment_zoom:
        training["augmentation"] = f"shift up to {args.augment_shift:g} of the crop, zoom up to {args.augment_zoom:g}"
        if args.augment_whole_pixels:
            training["augmentation"] += " (whole pixels, the band from outside the crop out of the losses)"
    return training


def step_logs(loss_d, loss_gan, loss_l1, loss_t, loss_fm, loss_p, args) -> dict:
    """A step's losses as floats, those of the terms this run uses."""
    logs = {"loss_d": loss_d.item(), "loss_g_gan": loss_gan.item(), "loss_l1": loss_l1.item()}
    if args.lambda_temporal:
        logs["loss_temporal"] = loss_t.item()
    if args.lambda_feature_matching:
        logs["loss_fm"] = loss_fm.item()
    if args.lambda_perceptual:
        logs["loss_perceptual"] = loss_p.item()
    return logs

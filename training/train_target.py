"""Fine-tune a Deep Video Portraits target: a person-specific conditional GAN (L1 x 100 + adversarial).

    accelerate launch training/train_target.py --target_video ../shared/data/target-obama-34s.mp4 \
        --output_dir runs/obama --resolution 256 --max_train_steps 20000 --generator_base_channels 32

Writes ``OUTPUT_DIR/checkpoint-STEP/`` folders (the generator as a ``save_pretrained`` folder,
``generator/``, through accelerate's save hook; the discriminator, optimizers and RNG state as accelerate
writes them), validation grids and metrics under ``OUTPUT_DIR/validation/``,
and at the end the pipeline folder ``OUTPUT_DIR/pipeline/`` (fp32 + fp16 weights, the target's face
parameters, a model card). Two processes on CPU (gloo):

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \
        --mixed_precision no --dynamo_backend no training/train_target.py ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from dvp_hub.augment import shift_zoom
from dvp_hub.dataset import TargetDataset, load_dataset_meta, prepare_target_dataset
from dvp_hub.errors import DVPError
from dvp_hub.model_card import render_model_card
from dvp_hub.models import GANLoss, RenderingToVideoGenerator, SpaceTimePatchDiscriminator
from dvp_hub.paper import TEMPORAL_WINDOW
from dvp_hub.perceptual import FacePerceptualLoss
from dvp_hub.target_training import (
    bar_fields,
    bf16_warning,
    budget_spent,
    complete_checkpoints,
    decayed_lr,
    discriminator_step,
    generator_step,
    init_generator,
    make_pipeline,
    read_clock,
    register_pretrained_hooks,
    save_checkpoint,
    set_learning_rate,
    step_logs,
    training_seconds,
    training_summary,
    validate,
    write_clock,
)
from dvp_hub.training_args import add_loss_args


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description="Train a Deep Video Portraits target.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--target_video", help="video of the target person (tracked and prepared first)")
    src.add_argument("--dataset_dir", help="a folder written by training/prepare_target.py")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--max_frames", type=int, default=None, help="use only the first N frames of --target_video")
    p.add_argument("--train_batch_size", type=int, default=1)
    p.add_argument("--max_train_steps", type=int, default=1000)
    p.add_argument(
        "--max_train_minutes",
        type=float,
        default=None,
        help="stop (and export) once the run has trained this long, counting the time of the checkpoint it resumed "
        "from (so a larger budget given again goes on), even before --max_train_steps",
    )
    add_loss_args(p)
    p.add_argument("--discriminator_base_channels", type=int, default=64)
    p.add_argument("--temporal_window", type=int, default=TEMPORAL_WINDOW)
    p.add_argument("--checkpointing_steps", type=int, default=500)
    p.add_argument("--checkpoints_total_limit", type=int, default=None)
    p.add_argument("--resume_from_checkpoint", default=None, help='a checkpoint folder or "latest"')
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    p.add_argument("--report_to", default="none", help='"tensorboard", "wandb", "all" or "none"')
    p.add_argument("--validation_steps", type=int, default=500)
    p.add_argument("--max_validation_frames", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataloader_num_workers", type=int, default=0)
    p.add_argument("--target_name", default=None)
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", default=None)
    p.add_argument("--hub_token", default=None)
    args = p.parse_args(input_args)
    if args.augment_whole_pixels and (args.augment_zoom or not args.augment_shift):
        p.error("--augment_whole_pixels shifts without resampling: give --augment_shift and leave --augment_zoom at 0")
    if not 0 <= args.lr_decay_steps <= args.max_train_steps:
        p.error("--lr_decay_steps must lie between 0 and --max_train_steps")
    if args.lr_decay_steps and args.max_train_minutes is not None:
        p.error(
            "--lr_decay_steps decays towards --max_train_steps, which a --max_train_minutes budget may never reach: "
            "give one of the two"
        )
    if args.perceptual_weights and not os.path.isfile(args.perceptual_weights):
        p.error(f"--perceptual_weights {args.perceptual_weights}: no such file (write it with save_feature_weights)")
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push_to_hub needs --hub_model_id")
    return args


def export_pipeline(accelerator, generator, args, dataset_dir, meta, metrics, train_seconds, global_step):
    name = args.target_name or os.path.splitext(meta["source"])[0]
    gen = accelerator.unwrap_model(generator)
    pipe = make_pipeline(gen, dataset_dir, meta, name)
    training = training_summary(args, gen, meta, accelerator, train_seconds, global_step)
    with open(os.path.join(args.output_dir, "training.json"), "w") as f:  # read by `dvp train` for the card
        json.dump(training, f, indent=1)
    card = render_model_card(
        name, {k: round(v, 4) for k, v in metrics.items()}, training, meta, repo_id=args.hub_model_id
    )
    out = os.path.join(args.output_dir, "pipeline")
    pipe.save_pretrained(out, model_card=card)
    if args.push_to_hub:
        pipe.push_to_hub(args.hub_model_id, token=args.hub_token, model_card=card)
    return out


def _data(args, accelerator):
    """Prepare the target video once (main process), then load the split: ``(dataset_dir, meta, train, val, loader)``."""
    dataset_dir = args.dataset_dir
    if args.target_video:
        dataset_dir = os.path.join(args.output_dir, "dataset")
        if accelerator.is_main_process and not os.path.isfile(os.path.join(dataset_dir, "dataset.json")):
            prepare_target_dataset(args.target_video, dataset_dir, args.resolution, args.max_frames)
        accelerator.wait_for_everyone()
    meta = load_dataset_meta(dataset_dir)
    if meta["resolution"] != args.resolution:
        raise DVPError(
            f"{dataset_dir} was prepared at {meta['resolution']} px but --resolution is {args.resolution}; "
            "prepare it again at that resolution."
        )
    cache: dict = {}
    train_ds = TargetDataset(
        dataset_dir, "train", args.temporal_window, cache=cache, with_previous=args.lambda_temporal > 0
    )
    val_ds = TargetDataset(dataset_dir, "val", args.temporal_window, cache=cache)
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        train_ds.to(accelerator.device)
        val_ds.to(accelerator.device)
    # The loader draws its worker seed from its own generator, not the global RNG, so that a resumed run's
    # dropout masks match an uninterrupted run's (the global RNG state is restored from the checkpoint).
    loader = torch.utils.data.DataLoader(
        train_ds,
        batch_size=args.train_batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        num_workers=args.dataloader_num_workers,
        drop_last=len(train_ds) > args.train_batch_size,
    )

    return dataset_dir, meta, train_ds, val_ds, loader


def _models(args, accelerator, loader):
    """Generator (new or ``--init_from``), discriminator, loss and optimizers (Adam, lr 2e-4, beta1 0.5), prepared."""
    if args.init_from:
        generator = init_generator(args)
    else:
        generator = RenderingToVideoGenerator(
            temporal_window=args.temporal_window,
            resolution=args.resolution,
            base_channels=args.generator_base_channels or 64,
            max_channels=args.generator_max_channels or 512,
        )
    discriminator = SpaceTimePatchDiscriminator(
        conditioning_channels=generator.config.in_channels * args.temporal_window,
        base_channels=args.discriminator_base_channels,
    )
    gan_loss = GANLoss().to(accelerator.device)
    betas = (args.adam_beta1, args.adam_beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=args.learning_rate, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=args.learning_rate, betas=betas)
    generator, discriminator, opt_g, opt_d, loader = accelerator.prepare(
        generator, discriminator, opt_g, opt_d, loader
    )
    register_pretrained_hooks(accelerator, {RenderingToVideoGenerator: "generator"})

    return generator, discriminator, gan_loss, opt_g, opt_d, loader


def _resume(args, accelerator) -> int:
    """Load ``--resume_from_checkpoint`` (a folder or the latest complete one); returns its step (0: a new run)."""
    global_step = 0
    if args.resume_from_checkpoint:
        if args.resume_from_checkpoint == "latest":
            found = complete_checkpoints(args.output_dir)
            path = os.path.join(args.output_dir, found[-1]) if found else None
        else:
            path = args.resume_from_checkpoint
        if path is None:
            accelerator.print("no complete checkpoint found: starting a new run")
        else:
            accelerator.load_state(path)
            global_step = int(os.path.basename(path.rstrip("/")).split("-")[1])
            args.prior_seconds = read_clock(path)
            accelerator.print(f"resumed from {path} at step {global_step} ({args.prior_seconds / 60:.1f} min trained)")
    return global_step


def _train(args, accelerator, models, loader, val_ds, global_step):
    """The training loop until ``--max_train_steps`` or ``--max_train_minutes``: ``(step, metrics, seconds)``."""
    generator, discriminator, gan_loss, opt_g, opt_d = models
    perceptual = (
        FacePerceptualLoss(weights=args.perceptual_weights).to(accelerator.device) if args.lambda_perceptual else None
    )
    steps_per_epoch = len(loader)
    num_epochs = math.ceil(args.max_train_steps / steps_per_epoch)
    first_epoch, resume_step = divmod(global_step, steps_per_epoch)
    bar = tqdm(  # with a time budget, the bar's "left" field says how long; tqdm's own ETA would count the steps
        total=args.max_train_steps if args.max_train_minutes is None else None,
        initial=global_step,
        desc="steps",
        disable=not accelerator.is_local_main_process,
    )
    metrics: dict = {}
    t0 = args.t0 = time.perf_counter()
    first_step = args.interrupted_step = global_step
    generator.train()
    discriminator.train()
    if budget_spent(args):  # decided together: every process skips, or none
        accelerator.set_trigger()
    out_of_time = accelerator.check_trigger()
    if out_of_time or global_step >= args.max_train_steps:  # a rerun of a finished budget exports what it resumed
        accelerator.print(f"the budget is already spent at step {global_step}: nothing more to train")
        num_epochs = first_epoch
    for epoch in range(first_epoch, num_epochs):
        loader.set_epoch(epoch)
        active = (
            accelerator.skip_first_batches(loader, resume_step) if epoch == first_epoch and resume_step else loader
        )
        for batch in active:
            set_learning_rate((opt_g, opt_d), decayed_lr(args, global_step))
            batch = shift_zoom(batch, args.augment_shift, args.augment_zoom, whole_pixels=args.augment_whole_pixels)
            fake, fake_prev, loss_d = discriminator_step(batch, generator, discriminator, gan_loss, opt_d, accelerator)
            losses = generator_step(
                batch, fake, fake_prev, discriminator, gan_loss, opt_g, args, accelerator, perceptual=perceptual
            )
            global_step += 1
            args.interrupted_step = global_step  # what a Ctrl-C checkpoint holds (the last finished step)
            logs = step_logs(loss_d, *losses, args)
            bar.update(1)
            bar.set_postfix(**bar_fields(logs, metrics, args, t0, global_step - first_step))
            accelerator.log(logs, step=global_step)
            if global_step % args.checkpointing_steps == 0:
                save_checkpoint(accelerator, args, global_step)
            if accelerator.is_main_process and (
                global_step % args.validation_steps == 0 or global_step == args.max_train_steps
            ):
                metrics = validate(accelerator.unwrap_model(generator), val_ds, args, global_step, accelerator.device)
                accelerator.log({f"val_{k}": v for k, v in metrics.items()}, step=global_step)
                accelerator.print(f"step {global_step}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}")
            if budget_spent(args):  # every process stops at the same step, whichever saw the clock run out
                accelerator.set_trigger()
            out_of_time = accelerator.check_trigger()
            if global_step >= args.max_train_steps or out_of_time:
                break
        if global_step >= args.max_train_steps or out_of_time:
            if out_of_time:
                accelerator.print(f"--max_train_minutes reached at step {global_step}")
                metrics = {}
            break
    bar.close()
    if global_step > first_step:  # the last step's checkpoint, its clock counting that step's validation too
        if global_step % args.checkpointing_steps:
            save_checkpoint(accelerator, args, global_step)
        elif accelerator.is_main_process:
            write_clock(os.path.join(args.output_dir, f"checkpoint-{global_step}"), args, global_step)
    return global_step, metrics, training_seconds(args)


def main(args):
    os.makedirs(args.output_dir, exist_ok=True)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, "logs")
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(args.seed)
    if accelerator.is_main_process and (warning := bf16_warning(accelerator)):
        accelerator.print(warning)

    dataset_dir, meta, _train_ds, val_ds, loader = _data(args, accelerator)
    generator, discriminator, gan_loss, opt_g, opt_d, loader = _models(args, accelerator, loader)
    if accelerator.is_main_process:
        accelerator.init_trackers(
            "dvp_target", config={k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        )

    args.prior_seconds = 0.0
    global_step = args.start_step = _resume(args, accelerator)
    models = (generator, discriminator, gan_loss, opt_g, opt_d)
    try:
        global_step, metrics, train_seconds = _train(args, accelerator, models, loader, val_ds, global_step)
    except KeyboardInterrupt:
        step = args.interrupted_step
        if step > args.start_step:
            save_checkpoint(accelerator, args, step)
            accelerator.print(
                f"\ninterrupted at step {step}: checkpoint-{step} is in {args.output_dir}; run the same command "
                "with --resume_from_checkpoint latest (dvp train: the same command) to go on"
            )
        else:
            accelerator.print(f"\ninterrupted at step {step}, before any new step: nothing new to save")
        raise SystemExit(130) from None

    # 5. Export the pipeline folder (main process).
    accelerator.wait_for_everyone()
    out = None
    if accelerator.is_main_process:
        if not metrics:
            metrics = validate(accelerator.unwrap_model(generator), val_ds, args, global_step, accelerator.device)
        out = export_pipeline(accelerator, generator, args, dataset_dir, meta, metrics, train_seconds, global_step)
        accelerator.print(
            f"exported {out} (PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, "
            f"{(global_step - args.start_step) / max(train_seconds - args.prior_seconds, 1e-9):.2f} steps/s)"
        )
    accelerator.end_training()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()  # torn down here, not by gloo at interpreter exit
    return out


if __name__ == "__main__":
    try:
        main(parse_args())
    except DVPError as err:
        print(f"train_target: error: {err}", file=sys.stderr)
        sys.exit(2)

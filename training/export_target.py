"""Export a target pipeline folder from a trained generator's weights and the target's dataset.

For weights trained elsewhere (another machine, a GPU box that returned only the generator), or a
checkpoint of an interrupted run:

    python training/export_target.py --generator_weights runs/obama/checkpoint-6000 --dataset_dir data/obama \
        --output_dir runs/obama/pipeline --training "steps=6000"
    python training/export_target.py --generator_weights gen.fp16.safetensors --dataset_dir data/obama \
        --output_dir runs/obama/pipeline --generator_base_channels 32 --generator_max_channels 256

A checkpoint (or its ``generator/`` folder) carries its generator's configuration; a bare safetensors file
needs the ``--generator_*`` options it was trained with.

The target component (face parameters, crop, source frames) is rebuilt from the dataset exactly as
`train_target.py` builds it; the card records the validation PSNR / SSIM measured here.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from safetensors.torch import load_file

from dvp_hub.dataset import TargetDataset, load_dataset_meta
from dvp_hub.errors import DVPError
from dvp_hub.model_card import render_model_card
from dvp_hub.models import RenderingToVideoGenerator
from dvp_hub.paper import TEMPORAL_WINDOW
from dvp_hub.pipelines.target_folder import weights_variant
from dvp_hub.target_training import make_pipeline, validate


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--generator_weights",
        required=True,
        help="a checkpoint-STEP folder, a generator save_pretrained folder, or a safetensors file of its weights",
    )
    p.add_argument("--dataset_dir", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--target_name", default=None)
    p.add_argument("--generator_base_channels", type=int, default=64)
    p.add_argument("--generator_max_channels", type=int, default=512)
    p.add_argument("--temporal_window", type=int, default=TEMPORAL_WINDOW)
    p.add_argument("--training", action="append", default=[], help='"key=value" rows of the card\'s training table')
    return p.parse_args(input_args)


def load_generator(args, meta) -> RenderingToVideoGenerator:
    """The generator of ``--generator_weights`` in fp32: a folder's own configuration, or the options' for a file."""
    path = args.generator_weights
    if os.path.isdir(path):
        folder = os.path.join(path, "generator") if os.path.isdir(os.path.join(path, "generator")) else path
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise DVPError(f"{path}: not a checkpoint or generator folder (no generator/config.json).")
        gen = RenderingToVideoGenerator.from_pretrained(folder, variant=weights_variant(folder)).float()
        if gen.config.resolution != meta["resolution"]:
            raise DVPError(f"{path}: a {gen.config.resolution} px generator; the dataset is {meta['resolution']} px.")
        return gen
    gen = RenderingToVideoGenerator(
        temporal_window=args.temporal_window,
        resolution=meta["resolution"],
        base_channels=args.generator_base_channels,
        max_channels=args.generator_max_channels,
    )
    try:
        state = {k: v.float() for k, v in load_file(args.generator_weights).items()}
        gen.load_state_dict(state)
    except Exception as err:  # a wrong file or a configuration that does not match it
        raise DVPError(f"{args.generator_weights}: does not fit this generator configuration ({err}).") from None
    return gen


def main(args) -> str:
    meta = load_dataset_meta(args.dataset_dir)
    gen = load_generator(args, meta)
    name = args.target_name or os.path.splitext(meta["source"])[0]
    pipe = make_pipeline(gen, args.dataset_dir, meta, name)
    val = TargetDataset(args.dataset_dir, "val", gen.config.temporal_window)
    shim = argparse.Namespace(
        output_dir=os.path.dirname(args.output_dir.rstrip("/")) or ".", max_validation_frames=10**6
    )
    with torch.no_grad():
        metrics = validate(pipe.generator, val, shim, 0, "cpu")
    training = dict(row.split("=", 1) for row in args.training)
    card = render_model_card(name, {k: round(v, 4) for k, v in metrics.items()}, training, meta)
    pipe.save_pretrained(args.output_dir, model_card=card)
    print(f"exported {args.output_dir} (validation PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f})")
    return args.output_dir


if __name__ == "__main__":
    try:
        main(parse_args())
    except DVPError as err:
        print(f"export_target: error: {err}", file=sys.stderr)
        sys.exit(2)

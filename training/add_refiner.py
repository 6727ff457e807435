"""Give a target folder its refiner, its full frame, its detail bank and its live generator.

    python training/add_refiner.py --target runs/me/pipeline --refiner runs/me/refiner/refiner \
        --target_video me.mp4 [--live_generator runs/me-live/live_generator] [--fp16_only]

``--refiner``: a `FaceRefiner` folder written by `training/train_refiner.py` (omit it to add only the frame).
``--live_generator``: a distilled generator folder written by `training/distill_live.py`.
``--target_video``: the target's own video; its reference frame is written as ``reference.png``, and its detail
bank (`dvp_hub.detail_bank`: ~150 of its training frames' face windows at the refined size, ~2 MB).
The folder is rewritten atomically (`DeepVideoPortraitPipeline.save_pretrained`), its card kept.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.detail_bank import bank_scale
from dvp_hub.errors import DVPError
from dvp_hub.models import FaceRefiner, RenderingToVideoGenerator
from dvp_hub.pipelines.reference import load_background, save_reference
from dvp_hub.pipelines.target_folder import weights_variant
from dvp_hub.refiner_data import detail_bank_from_video


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Add a refiner and a reference frame to a target folder.")
    p.add_argument("--target", required=True, help="a target pipeline folder")
    p.add_argument("--refiner", default=None, help="a FaceRefiner folder (from train_refiner.py)")
    p.add_argument("--target_video", default=None, help="the target's own video, for its reference frame")
    p.add_argument("--live_generator", default=None, help="a distilled live generator folder (distill_live.py)")
    p.add_argument(
        "--fp16_only", action="store_true", help="keep only the fp16 weights (as the bundled demo ships, for its size)"
    )
    return p.parse_args(argv)


def drop_fp32(folder: str) -> None:
    """Remove each component's fp32 weights where its fp16 ones are there (`from_pretrained` then loads fp16)."""
    for comp in os.listdir(folder):
        full = os.path.join(folder, comp, "diffusion_pytorch_model.safetensors")
        if os.path.isfile(full) and os.path.isfile(full.replace(".safetensors", ".fp16.safetensors")):
            os.remove(full)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not os.path.isfile(os.path.join(args.target, "model_index.json")):
        raise DVPError(f"{args.target}: not a target folder (no model_index.json).")
    pipe = DeepVideoPortraitPipeline.from_pretrained(args.target)
    if args.refiner:
        if not os.path.isfile(os.path.join(args.refiner, "config.json")):
            raise DVPError(f"{args.refiner}: not a refiner folder (no config.json).")
        variant = weights_variant(args.refiner)  # a folder shipped in fp16 only (the bundled demo's)
        pipe.register_modules(refiner=FaceRefiner.from_pretrained(args.refiner, variant=variant).float().eval())
    bank, res = pipe.detail_bank, pipe.target.config.resolution
    if bank is not None and pipe.refiner is not None and bank.size != res * bank_scale(pipe.refiner):
        pipe.detail_bank = None  # made for another refined size: give --target_video to make it again
        print(
            f"{args.target}: its detail bank was made for another refined size and is dropped (--target_video remakes it)"
        )
    if args.live_generator:
        if not os.path.isfile(os.path.join(args.live_generator, "config.json")):
            raise DVPError(f"{args.live_generator}: not a generator folder (no config.json).")
        variant = weights_variant(args.live_generator)
        live = RenderingToVideoGenerator.from_pretrained(args.live_generator, variant=variant).float().eval()
        if live.config.resolution != pipe.generator.config.resolution:
            raise DVPError(
                f"{args.live_generator}: renders {live.config.resolution} px; the target's generator "
                f"{pipe.generator.config.resolution} px."
            )
        pipe.register_modules(live_generator=live)
    with tempfile.TemporaryDirectory() as tmp:
        if args.target_video:
            cam, cfg = pipe.target.camera, pipe.target.config
            frame = load_background(
                args.target_video, cam.width, cam.height, pipe.target.source_start + cfg.reference_frame
            )
            pipe.reference = os.path.join(tmp, "reference.png")
            save_reference(frame, pipe.reference)
            pipe.detail_bank = detail_bank_from_video(pipe, args.target_video)
        pipe.save_pretrained(args.target)
    if args.fp16_only:
        drop_fp32(args.target)
    parts = (
        (["refiner"] if args.refiner else [])
        + (["reference.png"] if args.target_video else [])
        + (["detail bank"] if args.target_video else [])
        + (["live_generator"] if args.live_generator else [])
    )
    print(f"{args.target}: added {', '.join(parts) or 'nothing'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DVPError as err:
        sys.exit(f"add_refiner: error: {err}")

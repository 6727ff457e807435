"""Prepare a target dataset from a video: track, fit, crop, split (see dvp_hub/dataset.py).

python training/prepare_target.py --target_video ../shared/data/target-obama-34s.mp4 --output_dir data/obama --resolution 256
"""

from __future__ import annotations

import argparse
import sys

from dvp_hub.dataset import prepare_target_dataset
from dvp_hub.errors import DVPError
from dvp_hub.render.crop import SCALE


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target_video", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--max_frames", type=int, default=None)
    p.add_argument("--val_fraction", type=float, default=0.1)
    p.add_argument(
        "--crop_scale",
        type=float,
        default=SCALE,
        help=f"the crop's side in face heights (plus the face's motion): {SCALE} (default) keeps hair, shoulders and "
        "some background; about 1.8 is a tight head-and-shoulders crop that leaves out gesturing hands",
    )
    p.add_argument(
        "--shot",
        default="longest",
        help='which continuous shot to keep when the clip has cuts or splices: "longest" (default) or its index',
    )
    return p.parse_args(input_args)


def main(args) -> dict:
    shot = args.shot if args.shot == "longest" else int(args.shot)
    meta = prepare_target_dataset(
        args.target_video,
        args.output_dir,
        args.resolution,
        args.max_frames,
        args.val_fraction,
        shot=shot,
        crop_scale=args.crop_scale,
    )
    fit, cut = meta["fit"], meta["shot"]
    if cut["cuts"]:
        kept, dropped = cut["kept"], ", ".join(f"{a}-{b - 1}" for a, b in cut["dropped"])
        print(
            f"{len(cut['cuts'])} cut(s) at frame(s) {', '.join(map(str, cut['cuts']))}: kept shot "
            f"{kept[0]}-{kept[1] - 1} ({kept[1] - kept[0]} frames), dropped frames {dropped}"
        )
    box, w_h = meta["picture_box"], meta["frame_size"]
    if list(box) != [0, 0, *w_h]:
        print(f"black bars: the picture is x {box[0]}-{box[2]}, y {box[1]}-{box[3]} of {w_h[0]}x{w_h[1]}")
    pad = {k: v for k, v in meta["padding"].items() if v > 0}
    if pad:
        print(
            "the crop leaves the picture: padded black by "
            + ", ".join(f"{v:.0f} px {k}" for k, v in pad.items())
            + " (source pixels)"
        )
    print(
        f"{meta['num_frames']} frames ({meta['val_start']} train, {meta['num_frames'] - meta['val_start']} validation)"
        f" at {meta['resolution']} px; crop {meta['crop']}; reprojection error "
        f"{100 * fit['reprojection_error_iod']:.2f}% IOD; wrote {args.output_dir}"
    )
    return meta


if __name__ == "__main__":
    try:
        main(parse_args())
    except DVPError as err:
        print(f"prepare_target: error: {err}", file=sys.stderr)
        sys.exit(2)

"""Prepare a target dataset from a video: track, fit, crop, split (see dvp_hub/dataset.py).

python training/prepare_target.py --target_video ../shared/data/talking-d6.mp4 --output_dir data/d6 --resolution 256
"""

from __future__ import annotations

import argparse
import sys

from dvp_hub.errors import DVPError


def parse_args(input_args=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target_video", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--max_frames", type=int, default=None)
    p.add_argument("--val_fraction", type=float, default=0.1)
    return p.parse_args(input_args)


def main(args) -> dict:
    from dvp_hub.dataset import prepare_target_dataset

    meta = prepare_target_dataset(
        args.target_video, args.output_dir, args.resolution, args.max_frames, args.val_fraction
    )
    fit = meta["fit"]
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

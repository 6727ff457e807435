"""Contact sheet of the detail bank on a driven clip, at the target's native size: source | diffuse render | output
without the bank | output with it (the target's crop cut from the pasted-back frame, marks off so that both show
the same pixels), rows spread over the clip.

    python scripts/detail_sheet.py --target demo --source ../shared/data/talking-d14.mp4 --out sheet.jpg [--frames 150]
"""

from __future__ import annotations

import argparse

import numpy as np

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.evaluate_measures import contact_sheet
from dvp_hub.pipelines import steps
from dvp_hub.pipelines.options import RunOptions
from dvp_hub.render.conditioning import ConditioningRenderer
from dvp_hub.video import VideoReader


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="demo")
    p.add_argument("--source", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--rows", type=int, default=5)
    args = p.parse_args(argv)
    pipe = DeepVideoPortraitPipeline.from_pretrained(args.target)
    if pipe.detail_bank is None:
        raise SystemExit(f"{args.target} has no detail bank: add one with training/add_refiner.py --target_video")
    kw = {"source_video": args.source, "max_frames": args.frames, "progress": False}
    kw.update(watermark=False, invisible_watermark=False)  # marks off: both columns show the same pixels
    with_bank = pipe(**kw).frames[0]
    bank, pipe.detail_bank = pipe.detail_bank, None
    without = pipe(**kw).frames[0]
    pipe.detail_bank = bank
    reader = VideoReader(args.source, max_frames=args.frames)
    sources = [f.copy() for f in reader]
    _, drive, _ = steps.drive_motion(pipe, VideoReader(args.source, max_frames=args.frames), None, RunOptions(), False)
    picks = np.linspace(0, len(with_bank) - 1, args.rows + 2).round().astype(int)[1:-1]
    res, crop = int(pipe.target.config.resolution), pipe.target.crop
    rows = []
    for i in picks:
        cond = ConditioningRenderer().render(drive, crop, res, frames=slice(int(i), int(i) + 1))[0]
        render = ((cond[:3].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
        rows.append([sources[i], render, crop.cut(np.asarray(without[i])), crop.cut(np.asarray(with_bank[i]))])
    height = rows[0][3].shape[0]
    contact_sheet(
        rows, args.out, ["source", "diffuse render", "without detail bank", "with detail bank"], height=height
    )
    print(f"wrote {args.out}: frames {picks.tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

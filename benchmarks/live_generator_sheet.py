#!/usr/bin/env python
"""The distilled live generator beside the full one, on a clip played as a camera: a contact sheet at native size
(source | diffuse render | full generator | light generator, the target's crop cut from the pasted-back frame) and
how far apart the two are (PSNR of the crop, and of the face window, light against full).

    python benchmarks/live_generator_sheet.py CLIP OUT.jpg [--frames 150] [--json OUT.json]

Both sessions see every frame (no pacing, no drops), so the difference is the generator's alone.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.evaluate_measures import contact_sheet
from dvp_hub.pipelines.finish import face_window
from dvp_hub.video import VideoReader


def run(pipe, frames, fps, light: bool):
    """The session's conditioning (diffuse render, uint8) and the target's crop cut from each output frame."""
    session = pipe.live(fps=fps, light=light)
    if light and not session.light:
        raise SystemExit(f"{pipe.origin} has no live_generator: distil one with training/distill_live.py")
    conds, outs = [], []
    for f in frames:
        c = session.prepare(f)
        conds.append(((c[0, :3].float().permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8))
        outs.append(pipe.target.crop.cut(session.generate(c)).copy())  # the crop only: full frames add up
    session.close()
    return conds, outs


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("out")
    ap.add_argument("--target", default="demo")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--rows", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    pipe = DeepVideoPortraitPipeline.from_pretrained(args.target)
    if not pipe.has_reference:
        raise SystemExit(f"{args.target} has no reference frame: the sheet cuts the crop from the pasted-back frame")
    reader = VideoReader(args.clip, max_frames=args.frames)
    frames = [f.copy() for f in reader]
    conds, full = run(pipe, frames, reader.fps, light=False)
    _, light = run(pipe, frames, reader.fps, light=True)
    crop = pipe.target.crop
    scale = crop.size / pipe.target.config.resolution
    x0, y0, x1, y1 = (round(v * scale) for v in face_window(pipe))
    skip = round(reader.fps)  # the calibration second
    if len(frames) <= skip:
        raise SystemExit(f"{args.clip}: give more than {skip} frames (the first second calibrates)")
    crops = list(zip(full[skip:], light[skip:]))
    scores = {
        "clip": os.path.basename(args.clip),
        "frames": len(crops),
        "psnr_crop_light_vs_full": round(float(np.mean([psnr(a, b) for a, b in crops])), 2),
        "psnr_face_light_vs_full": round(
            float(np.mean([psnr(a[y0:y1, x0:x1], b[y0:y1, x0:x1]) for a, b in crops])), 2
        ),
    }
    print(json.dumps(scores))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(scores, f, indent=1)
    picks = np.linspace(skip, len(frames) - 1, args.rows).round().astype(int)
    size = crops[0][0].shape[0]
    rows = [[frames[i], conds[i], full[i], light[i]] for i in picks]
    contact_sheet(rows, args.out, ["source", "diffuse render", "full generator", "light generator"], height=size)


if __name__ == "__main__":
    main()

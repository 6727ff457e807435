"""A blind test of a target: shuffled real and generated face crops at native size, and the key kept apart.

    python scripts/blind_test.py --target demo --target-video ../shared/data/target-obama-34s.mp4 \
        --source ../shared/data/talking-d9.mp4 --source ../shared/data/speech-wda.mp4 --out runs/blind --n 12

Writes ``OUT/images/NN.png`` (the same square around the face cut from full frames at the target's native size,
visible label off) and ``OUT/key.json`` (which is real). Real frames are the target's held-out frames; generated
ones are half self-reenactments of other held-out frames, half driven by the sources. Give a judge only the
images folder, ask "real footage or generated?" for each image, then score the answers with ``--score FILE``
(a JSON list of "real"/"generated" in image order).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.evaluate import held_out_outputs
from dvp_hub.evaluate_native import face_box, pasted
from dvp_hub.pipelines.finish import FrameFinisher
from dvp_hub.video import VideoReader


def square(frame: np.ndarray, box, side: int) -> np.ndarray:
    """A ``side`` px square of ``frame`` centred on the face ``box`` (kept inside the frame)."""
    h, w = frame.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = int(np.clip(cx - side / 2, 0, w - side))
    y0 = int(np.clip(cy - side / 2, 0, h - side))
    return frame[y0 : y0 + side, x0 : x0 + side]


def held_out_frames(pipe, video: str, picks: list[int]) -> dict[int, np.ndarray]:
    offset = pipe.target.source_start
    want = {offset + i for i in picks}
    out = {}
    for i, frame in enumerate(VideoReader(video, max_frames=max(want) + 1)):
        if i in want:
            out[i - offset] = frame.copy()
    return out


def build(args) -> None:
    pipe = DeepVideoPortraitPipeline.from_pretrained(args.target)
    pipe.set_progress_bar_config(disable=True)
    cfg, rng = pipe.target.config, np.random.default_rng(args.seed)
    seq = pipe.target_state.sequence
    lm = seq.landmarks
    side = int(round(2.0 * np.median(lm[:, :, 0].max(1) - lm[:, :, 0].min(1))))  # twice the face's width
    held = np.arange(cfg.train_frames, cfg.num_frames)
    picks = rng.choice(held, size=args.n + args.n // 2, replace=False).tolist()
    real_idx, self_idx = picks[: args.n], picks[args.n :]
    frames = held_out_frames(pipe, args.target_video, picks)
    items = [("real", square(frames[i], face_box(lm[i]), side)) for i in real_idx]
    finisher = FrameFinisher(pipe, False, watermark=False, invisible_watermark=False)
    for i in self_idx:  # self-reenactment: the held-out frame's own parameters, as `dvp evaluate` drives it
        cond, raw = held_out_outputs(pipe, seq, i, i + 1)
        out = pasted(pipe, finisher.crops(raw, cond[-1:]))[0]
        items.append(("generated", square(out, face_box(lm[i]), side)))
    per_source = (args.n - len(self_idx)) // max(1, len(args.source))
    for src in args.source:
        out = pipe(source_video=src, max_frames=args.max_frames, watermark=False)
        box = face_box(lm[cfg.reference_frame])  # the driven head is held near the target's trained poses
        for j in rng.choice(len(out.frames[0]), size=per_source, replace=False):
            items.append(("generated", square((out.frames[0][j] * 255).round().astype(np.uint8), box, side)))
    order = rng.permutation(len(items))
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    key = []
    for k, idx in enumerate(order):
        label, img = items[idx]
        Image.fromarray(img).save(os.path.join(args.out, "images", f"{k:02d}.png"))
        key.append(label)
    with open(os.path.join(args.out, "key.json"), "w") as f:
        json.dump(key, f)
    print(f"wrote {len(key)} images ({key.count('real')} real) of {side} px to {args.out}/images")


def score(args) -> None:
    key = json.load(open(os.path.join(args.out, "key.json")))
    answers = json.load(open(args.score))
    right = sum(a == k for a, k in zip(answers, key))
    print(f"{right} of {len(key)} told apart correctly ({100 * right / len(key):.0f}%; chance is 50%)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="A blind test of a target's realism.")
    p.add_argument("--target", default="demo")
    p.add_argument("--target-video", required=True)
    p.add_argument("--source", action="append", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=12, help="real images (and as many generated)")
    p.add_argument("--max-frames", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--score", default=None, help="a JSON list of answers to score against the key")
    args = p.parse_args(argv)
    score(args) if args.score else build(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A blind A/B of two targets (two generators, or two refiners on one generator): which looks like the footage?

    python scripts/blind_ab.py --a demo --b runs/demo_new [--b-int8] \
        --target-video ../shared/data/target-obama-34s.mp4 \
        --source ../shared/data/talking-d9.mp4 --source ../shared/data/talking-d14.mp4 --out runs/ab

Writes ``OUT/images/NN.png``: the same square around the face from both targets' full frames at native size, side
by side (left / right shuffled, visible label off). Held-out pairs (the two targets' self-reenactment of a target
frame it never trained on) come with ``OUT/images/NN_real.png``, the real frame of that moment; driven pairs have no
reference. ``OUT/key.json`` says which side is A. Give a judge only the images folder and ask, for each pair, which
side looks more like real camera footage of the person (and, where a real frame is given, is closer to it); then
score the answers (a JSON list of "left"/"right" in image order) with ``--score FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from blind_test import held_out_frames, square
from PIL import Image

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.evaluate import held_out_outputs
from dvp_hub.evaluate_native import face_box, pasted
from dvp_hub.pipelines.finish import FrameFinisher
from dvp_hub.pipelines.live_generator import offline_int8


def self_squares(pipe, picks: list[int], side: int, int8: bool = False) -> list[np.ndarray]:
    """The target's self-reenactment of held-out frames ``picks``, pasted back, cut to the face square (``int8``:
    the generator and the refiner's detail branch in int8, as `RunOptions.int8` runs them)."""
    seq = pipe.target_state.sequence
    finisher = FrameFinisher(pipe, False, watermark=False, invisible_watermark=False)
    gen8 = offline_int8(pipe, True) if int8 else None
    if int8 and gen8 is None:
        raise SystemExit("--b-int8: int8 is unavailable here (no x86 quantized engine, or DVP_INT8=0).")
    if gen8 is not None:
        finisher.use_int8(pipe, gen8)
    out = []
    for i in picks:
        cond, raw = held_out_outputs(pipe, seq, i, i + 1)
        if gen8 is not None:
            raw = gen8.clip(cond, pipe.generator.config.temporal_window)
        out.append(square(pasted(pipe, finisher.crops(raw, cond[-1:]))[0], face_box(seq.landmarks[i]), side))
    return out


def driven_squares(pipe, source: str, picks, side: int, max_frames: int, int8: bool = False) -> list[np.ndarray]:
    """Frames ``picks`` of the target driven by ``source`` (reenact mode), cut to the face square."""
    lm = pipe.target_state.sequence.landmarks
    box = face_box(lm[pipe.target.config.reference_frame])  # the driven head is held near the trained poses
    frames = pipe(source_video=source, max_frames=max_frames, watermark=False, int8=int8).frames[0]
    return [square((frames[j] * 255).round().astype(np.uint8), box, side) for j in picks]


def build(args) -> None:
    pipes = [DeepVideoPortraitPipeline.from_pretrained(t) for t in (args.a, args.b)]
    int8 = (False, args.b_int8)
    for p in pipes:
        p.set_progress_bar_config(disable=True)
    cfg, rng = pipes[0].target.config, np.random.default_rng(args.seed)
    lm = pipes[0].target_state.sequence.landmarks
    side = round(float(np.median(lm[:, :, 0].max(1) - lm[:, :, 0].min(1))) * 2.0)  # twice the face's width
    picks = rng.choice(np.arange(cfg.train_frames, cfg.num_frames), size=args.n_self, replace=False).tolist()
    real = held_out_frames(pipes[0], args.target_video, picks)
    pairs = [
        (a, b, square(real[i], face_box(lm[i]), side))
        for i, a, b in zip(picks, *(self_squares(p, picks, side, q) for p, q in zip(pipes, int8)))
    ]
    for src in args.source:
        frames = rng.choice(args.max_frames, size=args.n_driven, replace=False)
        got = [driven_squares(p, src, frames, side, args.max_frames, q) for p, q in zip(pipes, int8)]
        pairs += [(a, b, None) for a, b in zip(*got)]
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    key = []
    for k, idx in enumerate(rng.permutation(len(pairs))):
        a, b, ref = pairs[idx]
        a_left = bool(rng.random() < 0.5)
        gap = np.full((side, 8, 3), 255, np.uint8)
        img = np.hstack([a, gap, b] if a_left else [b, gap, a])
        Image.fromarray(img).save(os.path.join(args.out, "images", f"{k:02d}.png"))
        if ref is not None:
            Image.fromarray(ref).save(os.path.join(args.out, "images", f"{k:02d}_real.png"))
        key.append({"a": "left" if a_left else "right", "held_out": ref is not None})
    with open(os.path.join(args.out, "key.json"), "w") as f:
        json.dump({"a": args.a, "b": args.b + (" (int8)" if args.b_int8 else ""), "pairs": key}, f, indent=1)
    print(f"wrote {len(key)} pairs of {side} px squares to {args.out}/images")


def score(args) -> None:
    with open(os.path.join(args.out, "key.json")) as f:
        key = json.load(f)
    with open(args.score) as f:
        answers = json.load(f)
    if len(answers) != len(key["pairs"]):
        raise SystemExit(f"{args.score}: {len(answers)} answers for {len(key['pairs'])} pairs.")
    wins = [a == k["a"] for a, k in zip(answers, key["pairs"])]
    held = [w for w, k in zip(wins, key["pairs"]) if k["held_out"]]
    print(
        f"A ({key['a']}) preferred in {sum(wins)} of {len(wins)} pairs (held out {sum(held)} of {len(held)}); "
        f"B ({key['b']}) in {len(wins) - sum(wins)}"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="A blind A/B of two targets' realism.")
    p.add_argument("--a", required=True, help="target A (demo, a folder or a Hub id)")
    p.add_argument("--b", required=True, help="target B")
    p.add_argument("--target-video", required=True, help="the target's own video (real frames of held-out moments)")
    p.add_argument("--source", action="append", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--b-int8", action="store_true", help="B's generator and refiner detail in int8 (RunOptions.int8)")
    p.add_argument("--n-self", type=int, default=8, help="held-out pairs")
    p.add_argument("--n-driven", type=int, default=4, help="driven pairs per source")
    p.add_argument("--max-frames", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--score", default=None, help='a JSON list of "left"/"right" answers to score against the key')
    args = p.parse_args(argv)
    score(args) if args.score else build(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
from dvp_hub.evaluate_native import face_box, pasted, torso_lines
from dvp_hub.pipelines.finish import FrameFinisher, rendered_face
from dvp_hub.pipelines.live_generator import offline_int8
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


def face_side(pipe) -> int:
    """The side of the squares cut around the face: twice the face's median width in the target's footage."""
    lm = pipe.target_state.sequence.landmarks
    return round(float(2.0 * np.median(lm[:, :, 0].max(1) - lm[:, :, 0].min(1))))


def self_squares(pipe, picks: list[int], side: int, int8: bool = False) -> list[np.ndarray]:
    """The target's self-reenactment of held-out frames ``picks`` (their own parameters, as `dvp evaluate` drives
    them), pasted back as the pipeline does, cut to the face square. ``int8``: the generator and the refiner's detail branch in int8, as
    `RunOptions.int8` runs them (SystemExit where int8 is unavailable)."""
    seq = pipe.target_state.sequence
    finisher = FrameFinisher(pipe, False, watermark=False, invisible_watermark=False)
    gen8 = offline_int8(pipe, True) if int8 else None
    if int8 and gen8 is None:
        raise SystemExit("int8 is unavailable here (no x86 quantized engine, or DVP_INT8=0).")
    if gen8 is not None:
        finisher.use_int8(pipe, gen8)
    crops, faces = [], []
    for i in picks:
        cond, raw = held_out_outputs(pipe, seq, i, i + 1, generator8=gen8)
        crops.append(finisher.crops(raw, cond[-1:])[0])
        faces.append(rendered_face(cond[-1]))
    crops = np.stack(crops)
    torsos = torso_lines(pipe, faces, crops.shape[1])  # as the pipeline pastes back; one compositor for all picks
    fulls = pasted(pipe, crops, torsos=torsos)  # not consecutive: each pick pasted on its own, as before
    return [square(f, face_box(seq.landmarks[i]), side) for f, i in zip(fulls, picks)]


def driven_run(pipe, source: str, max_frames: int, int8: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The target driven by ``source`` (reenact mode, both marks off): its frames ``[T, H, W, 3]`` uint8 and the face
    box to cut them at (the reference frame's: the driven head is held near the target's trained poses)."""
    # both marks off, as on the self-reenactments: the invisible mark's 4 px pattern shows on flat backgrounds to a
    # close viewer, and a judge who spots it on generated frames only is not judging the face
    frames = pipe(source_video=source, max_frames=max_frames, watermark=False, invisible_watermark=False, int8=int8)
    frames = frames.frames[0]
    box = face_box(pipe.target_state.sequence.landmarks[pipe.target.config.reference_frame])
    return (frames * 255).round().astype(np.uint8), box


def equal_sizes(folder: str) -> None:
    """Pad every PNG in ``folder`` with zero bytes after its end to the largest one's size (decoders ignore them):
    a real frame's file is larger than a generated one's, and a judge must not learn that from a listing."""
    paths = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".png")]
    size = max((os.path.getsize(p) for p in paths), default=0)
    for p in paths:
        with open(p, "ab") as f:
            f.write(b"\0" * (size - os.path.getsize(p)))


def build(args) -> None:
    pipe = DeepVideoPortraitPipeline.from_pretrained(args.target)
    pipe.set_progress_bar_config(disable=True)
    cfg, rng = pipe.target.config, np.random.default_rng(args.seed)
    lm = pipe.target_state.sequence.landmarks
    side = face_side(pipe)
    held = np.arange(cfg.train_frames, cfg.num_frames)
    picks = rng.choice(held, size=args.n + args.n // 2, replace=False).tolist()
    real_idx, self_idx = picks[: args.n], picks[args.n :]
    frames = held_out_frames(pipe, args.target_video, picks)
    items = [("real", square(frames[i], face_box(lm[i]), side)) for i in real_idx]
    items += [("generated", s) for s in self_squares(pipe, self_idx, side)]
    per_source = (args.n - len(self_idx)) // max(1, len(args.source))
    for src in args.source:
        driven, box = driven_run(pipe, src, args.max_frames)
        for j in rng.choice(len(driven), size=per_source, replace=False):
            items.append(("generated", square(driven[j], box, side)))
    order = rng.permutation(len(items))
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    key = []
    for k, idx in enumerate(order):
        label, img = items[idx]
        Image.fromarray(img).save(os.path.join(args.out, "images", f"{k:02d}.png"))
        key.append(label)
    equal_sizes(os.path.join(args.out, "images"))
    with open(os.path.join(args.out, "key.json"), "w") as f:
        json.dump(key, f)
    print(f"wrote {len(key)} images ({key.count('real')} real) of {side} px to {args.out}/images")


def score(args) -> None:
    key = json.load(open(os.path.join(args.out, "key.json")))
    answers = json.load(open(args.score))
    right = sum(a == k for a, k in zip(answers, key))
    print(f"{right} of {len(key)} told apart correctly ({100 * right / len(key):.0f}%; chance is 50%)")


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options a blind test and a blind A/B share: the footage, the driving clips, where to write, the seed."""
    p.add_argument("--target-video", required=True, help="the target's own video (real frames of held-out moments)")
    p.add_argument("--source", action="append", default=[], help="a clip to drive the target with (repeatable)")
    p.add_argument("--out", required=True)
    p.add_argument("--max-frames", type=int, default=150, help="frames of each source to drive with")
    p.add_argument("--seed", type=int, default=0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="A blind test of a target's realism.")
    p.add_argument("--target", default="demo")
    add_common_arguments(p)
    p.add_argument("--n", type=int, default=12, help="real images (and as many generated)")
    p.add_argument("--score", default=None, help="a JSON list of answers to score against the key")
    args = p.parse_args(argv)
    score(args) if args.score else build(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

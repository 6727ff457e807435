"""A blind A/B of two targets (two generators, or two refiners on one generator): which looks like the footage?

    python scripts/blind_ab.py --a demo --b runs/demo_new [--b-int8] \
        --target-video ../shared/data/target-obama-34s.mp4 \
        --source ../shared/data/talking-d9.mp4 --source ../shared/data/talking-d14.mp4 --out runs/ab

Writes ``OUT/images/NN_1.png`` and ``NN_2.png``: the same square around the face from both targets' full frames at
native size, as two separate files (which target is 1 shuffled per pair, visible label off): shown side by side,
judges picked one side for every pair whatever it held. Held-out pairs (the two targets' self-reenactment of a target
frame it never trained on) come with ``OUT/images/NN_real.png``, the real frame of that moment; driven pairs have no
reference. ``OUT/key.json`` says which side is A. Give a judge only the images folder and ask, for each pair, which
side looks more like real camera footage of the person (and, where a real frame is given, is closer to it); then
score the answers (a JSON list of "1"/"2" in pair order) with ``--score FILE``.

Judges shown pairs have answered by position (the left side, or file _1, every time); ``OUT/ratings/`` holds the same
squares one by one under shuffled numbers (real frames included) for a judge who rates each image alone, e.g. 1-5 for
how much it looks like camera footage; score with ``--score-ratings FILE`` (``{"NNN": rating}``). ``--singles``
writes that folder from an existing ``OUT/images``. A rating judge who notices near-duplicates gives them the same
score, so two close versions tie on most pairs: ask it to name its cues per image, and read which version each cue
was named on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
from blind_test import add_common_arguments, driven_run, equal_sizes, face_side, held_out_frames, self_squares, square
from PIL import Image

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.evaluate_native import face_box


def build(args) -> None:
    pipes = [DeepVideoPortraitPipeline.from_pretrained(t) for t in (args.a, args.b)]
    int8 = (False, args.b_int8)
    for p in pipes:
        p.set_progress_bar_config(disable=True)
    cfg, rng = pipes[0].target.config, np.random.default_rng(args.seed)
    lm = pipes[0].target_state.sequence.landmarks
    side = face_side(pipes[0])
    picks = rng.choice(np.arange(cfg.train_frames, cfg.num_frames), size=args.n_self, replace=False).tolist()
    real = held_out_frames(pipes[0], args.target_video, picks)
    pairs = [
        (a, b, square(real[i], face_box(lm[i]), side))
        for i, a, b in zip(picks, *(self_squares(p, picks, side, q) for p, q in zip(pipes, int8)))
    ]
    for src in args.source:
        frames = rng.choice(args.max_frames, size=args.n_driven, replace=False)
        (a, box), (b, _) = (driven_run(p, src, args.max_frames, q) for p, q in zip(pipes, int8))
        pairs += [(square(a[j], box, side), square(b[j], box, side), None) for j in frames]
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    key = []
    for k, idx in enumerate(rng.permutation(len(pairs))):
        a, b, ref = pairs[idx]
        a_first = bool(rng.random() < 0.5)
        for n, img in zip("12", (a, b) if a_first else (b, a)):
            Image.fromarray(img).save(os.path.join(args.out, "images", f"{k:02d}_{n}.png"))
        if ref is not None:
            Image.fromarray(ref).save(os.path.join(args.out, "images", f"{k:02d}_real.png"))
        key.append({"a": "1" if a_first else "2", "held_out": ref is not None})
    equal_sizes(os.path.join(args.out, "images"))
    with open(os.path.join(args.out, "key.json"), "w") as f:
        json.dump({"a": args.a, "b": args.b + (" (int8)" if args.b_int8 else ""), "pairs": key}, f, indent=1)
    print(f"wrote {len(key)} pairs of {side} px squares to {args.out}/images")
    singles(args.out, rng)


def singles(out: str, rng) -> None:
    """The same squares one by one for a rating judge: ``OUT/ratings/NNN.png``, every A, B and real square of
    every pair under a shuffled number, and ``OUT/ratings_key.json`` (number -> pair and side). Judges shown two
    versions of a face, side by side or as files _1 and _2, picked one position for every pair; rated alone, each
    image is judged on its own look."""
    if os.path.exists(os.path.join(out, "ratings")):  # a judge may have rated its numbering already
        raise SystemExit(f"{out}/ratings exists: remove it (and ratings_key.json) to renumber.")
    with open(os.path.join(out, "key.json")) as f:
        key = json.load(f)
    items = []
    for k, pair in enumerate(key["pairs"]):
        for n in ("1", "2", "real"):
            path = os.path.join(out, "images", f"{k:02d}_{n}.png")
            if os.path.isfile(path):
                side = "real" if n == "real" else ("a" if n == pair["a"] else "b")
                items.append((path, k, side))
    os.makedirs(os.path.join(out, "ratings"), exist_ok=True)
    names = {}
    for number, idx in enumerate(rng.permutation(len(items))):
        path, k, side = items[idx]
        shutil.copyfile(path, os.path.join(out, "ratings", f"{number:03d}.png"))
        names[f"{number:03d}"] = {"pair": k, "side": side}
    equal_sizes(os.path.join(out, "ratings"))
    with open(os.path.join(out, "ratings_key.json"), "w") as f:
        json.dump(names, f, indent=1)
    print(f"wrote {len(names)} single squares to {out}/ratings for a rating judge")


def score_ratings(args) -> None:
    """Score a rating judge: ``--score-ratings FILE`` holds ``{"NNN": rating}`` (higher: more like camera footage)."""
    with open(os.path.join(args.out, "ratings_key.json")) as f:
        key = json.load(f)
    try:
        with open(args.score_ratings) as f:
            ratings = {k.removesuffix(".png"): float(v) for k, v in json.load(f).items()}
    except (ValueError, AttributeError) as err:
        raise SystemExit(f'{args.score_ratings}: not a JSON object of numbers {{"NNN": rating}} ({err}).') from None
    if set(ratings) != set(key):
        missing, extra = sorted(set(key) - set(ratings)), sorted(set(ratings) - set(key))
        raise SystemExit(f"{args.score_ratings}: ratings missing for {missing[:5]}, unknown names {extra[:5]}.")
    by_pair: dict = {}
    for name, item in key.items():
        by_pair.setdefault(item["pair"], {})[item["side"]] = ratings[name]
    a = sum(r["a"] > r["b"] for r in by_pair.values())
    b = sum(r["b"] > r["a"] for r in by_pair.values())
    mean = {s: np.mean([r[s] for r in by_pair.values() if s in r] or [np.nan]) for s in ("a", "b", "real")}
    real = [r for r in by_pair.values() if "real" in r]
    print(
        f"rated higher: A in {a} of {len(by_pair)} pairs, B in {b}, ties {len(by_pair) - a - b}; mean rating A "
        f"{mean['a']:.2f}, B {mean['b']:.2f}, real {mean['real']:.2f} (held out: the real frame rated above both "
        f"in {sum(r['real'] > max(r['a'], r['b']) for r in real)} of {len(real)})"
    )


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
    p.add_argument("--a", help="target A (demo, a folder or a Hub id); needed to build")
    p.add_argument("--b", help="target B; needed to build")
    add_common_arguments(p)
    p.add_argument("--b-int8", action="store_true", help="B's generator and refiner detail in int8 (RunOptions.int8)")
    p.add_argument("--n-self", type=int, default=8, help="held-out pairs")
    p.add_argument("--n-driven", type=int, default=4, help="driven pairs per source")
    p.add_argument("--score", default=None, help='a JSON list of "1"/"2" answers to score against the key')
    p.add_argument("--singles", action="store_true", help="write OUT/ratings from an existing OUT/images (no run)")
    p.add_argument("--score-ratings", default=None, help='a JSON object {"NNN": rating} for OUT/ratings')
    args = p.parse_args(argv)
    if args.score:
        score(args)
    elif args.score_ratings:
        score_ratings(args)
    elif args.singles:
        singles(args.out, np.random.default_rng(args.seed))
    elif not (args.a and args.b):
        p.error("building a blind A/B needs --a and --b")
    else:
        build(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a frame's time goes, offline and live, stage by stage, on the demo target.

    python benchmarks/bench_profile.py [--clip talking-d3.mp4] [--frames 150] [--json out.json]

Offline: one `dvp reenact`-equivalent run to a labelled mp4 with ``profile=True`` (track + fit, retarget, render,
generator, refine, paste-back, marks, encode). Live: a session fed the same frames one after another as fast as
it goes (no pacing, no dropping), every stage timed (face mesh, fit, retarget, render, generator, paste-back,
marks). Prints both tables and writes them with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.perf import tune_allocator
from dvp_hub.profile import format_rows
from dvp_hub.video import VideoReader

from timing import machine  # benchmarks/timing.py, beside this script

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="talking-d3.mp4")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--json", default=None)
    ap.add_argument("--full-generator", action="store_true", help="live: the full generator, not the distilled one")
    args = ap.parse_args(argv)
    tune_allocator()
    clip = os.path.join(DATA, args.clip)
    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    out = os.path.join(tempfile.mkdtemp(), "out.mp4")
    t0 = time.perf_counter()
    offline = pipe(source_video=clip, max_frames=args.frames, output_video=out, progress=False, profile=True).stats
    offline_wall = time.perf_counter() - t0
    session = pipe.live(fps=30, light=not args.full_generator)
    frames = list(VideoReader(clip, max_frames=args.frames))
    for f in frames[:30]:  # calibration, untimed
        session.push(f)
    times = session.start_profile()
    t0 = time.perf_counter()
    for f in frames[30:]:
        session.push(f)
    live_wall = time.perf_counter() - t0
    session.close()
    result = {
        "benchmark": "per-stage profile, demo target",
        "clip": args.clip,
        "frames": args.frames,
        "offline_fps_end_to_end": round(args.frames / offline_wall, 2),
        "offline": offline["profile"],
        "live_generator": session.generator_label,
        "live_fps_unpaced": round((len(frames) - 30) / live_wall, 2),
        "live": times.rows(),
        "torch_threads": torch.get_num_threads(),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"offline: {result['offline_fps_end_to_end']} frames/s end to end\n{format_rows(result['offline'])}")
    print(f"live ({result['live_generator']}): {result['live_fps_unpaced']} frames/s unpaced\n{times.table()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

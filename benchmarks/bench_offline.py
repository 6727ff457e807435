"""Offline reenactment end to end: the default run against float (``--compare int8``) or in turn (``overlap``).

    python benchmarks/bench_offline.py [--clip talking-d9.mp4] [--repeats 2] [--compare int8|overlap] [--space]
                                       [--long-seconds 120] [--json out.json]

Each run is a fresh process that loads the demo target, warms it on 40 frames (``warm_up_seconds``: with int8
that includes its calibration, once per process), then reenacts the whole clip from the video file to a labelled
mp4 (tracking included) and reports the seconds from the call to the finished file (model loading excluded),
frames per second, each stage's ms a frame and the process's peak memory (VmHWM). The default run (stages side by
side, int8 on a CPU with the engine) is compared with ``--compare int8``: the same in float (``int8=False``), or
``overlap``: the stages in turn. The configurations alternate run by run, so that a machine whose speed drifts is
compared fairly. ``--space`` also times the Space's Reenact handler (the seconds until the visitor has the result,
and until the side-by-side video follows it), and ``--long-seconds`` the peak memory of a source looped to that length against the clip's own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import imageio_ffmpeg
from timing import machine  # benchmarks/timing.py, beside this script

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "..", "shared", "data")

RUN = r"""
import json, os, sys, time
from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.perf import tune_allocator
tune_allocator()
kind, src, dst, overlap = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
from dvp_hub.pipelines import steps
if not overlap:  # every call in turn, the Space's included
    _rgw = steps.render_generate_write
    steps.render_generate_write = lambda *a, **k: _rgw(*a, **{**k, "overlap": False})
if kind == "space":  # imported before any timing, as in a running Space (gradio alone takes seconds)
    from dvp_hub.space import common, handlers
pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
pipe.set_progress_bar_config(disable=True)
t0 = time.perf_counter()
# warm-up, and int8 calibration (short runs do not calibrate by themselves; DVP_INT8=0 keeps it float)
gen = pipe(source_video=src, output_video=dst, max_frames=40, int8=True).stats["generator"]
warm = time.perf_counter() - t0
t0 = time.perf_counter()
if kind == "space":
    common.get_pipeline = lambda *a, **k: pipe
    handlers.get_pipeline = common.get_pipeline
    steps = handlers.reenact(src, "demo", "", "reenact", ["pose", "expression", "gaze"], True, progress=None)
    next(steps)  # the result, before its side-by-side
    stats = {"seconds_to_result": round(time.perf_counter() - t0, 2)}
    list(steps)
else:
    stats = pipe(source_video=src, output_video=dst, profile=True).stats
seconds = time.perf_counter() - t0
hwm = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]) // 1024
rows = {r["stage"]: r["ms_per_frame"] for r in stats.get("profile", [])}
print(json.dumps({"seconds": round(seconds, 2), "frames": stats.get("frames"),
                  "seconds_to_result": stats.get("seconds_to_result"),
                  "generator": stats.get("generator", gen), "warm_up_seconds": round(warm, 2),
                  "stages_ms_per_frame": rows, "peak_mb": hwm}))
"""


def run(kind: str, src: str, overlap: bool, int8: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", RUN, kind, src, os.path.join(tmp, "out.mp4"), str(int(overlap))],
            capture_output=True, text=True, cwd=ROOT, check=False,
            env={**os.environ, "DVP_INT8": "1" if int8 else "0"},  # "0": every run in float, the Space's included
        )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def looped(clip: str, seconds: float, tmp: str) -> str:
    path = os.path.join(tmp, f"looped_{int(seconds)}s.mp4")
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(
        [ff, "-v", "error", "-y", "-stream_loop", "-1", "-i", clip, "-t", str(seconds), "-an", "-c:v", "libx264",
         "-preset", "veryfast", "-crf", "18", path], check=True,
    )
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default="talking-d9.mp4")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--space", action="store_true", help="also time the Space's Reenact handler")
    p.add_argument(
        "--compare", choices=("int8", "overlap"), default="int8", help="the default against float, or in turn"
    )
    p.add_argument("--long-seconds", type=float, default=0, help="also the peak memory of a source this long")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    clip = os.path.join(DATA, args.clip)
    if not os.path.exists(clip):
        raise SystemExit(f"{clip} is missing: the benchmark reads the shared clips (../shared/data).")
    runs = []
    configs = [(True, True), (True, False) if args.compare == "int8" else (False, True)]  # (overlap, int8)
    for r in range(args.repeats):
        for overlap, int8 in configs if r % 2 == 0 else configs[::-1]:
            kinds = [("cli", "pipeline to mp4")]
            if args.space:
                kinds.append(("space", "Space Reenact (result + side-by-side)"))
            for kind, path in kinds:
                res = {"path": path, "overlap": overlap, "int8_asked": int8, **run(kind, clip, overlap, int8)}
                runs.append(res)
                print(json.dumps(res), flush=True)
    if args.long_seconds:
        with tempfile.TemporaryDirectory() as tmp:
            res = {"path": f"pipeline to mp4, source looped to {args.long_seconds:g} s", "overlap": True,
                   **run("cli", looped(clip, args.long_seconds, tmp), True)}
        runs.append(res)
        print(json.dumps(res), flush=True)
    result = {"benchmark": __doc__.splitlines()[0], "clip": args.clip, "machine": machine(), "runs": runs}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

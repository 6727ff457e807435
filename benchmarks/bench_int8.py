"""The live path's generator in int8 against the float one: time per window and how far the frames differ.

    python benchmarks/bench_int8.py [--target demo] [--source CLIP] [--frames 90]

Conditioning windows are those a live session builds from the source clip (reenact mode), calibration is the
live path's (the target's own frames). Prints medians of 40 one-window calls after 5 warm-up calls for the float
generator (eager and compiled, in the dtype the fast path picks here) and for int8, the calibration's seconds, and
the int8 frames against the compiled float ones: PSNR, mean and 99.9th percentile absolute difference in grey
levels. Time it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from timing import median_ms  # benchmarks/timing.py, beside this script

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.models.inference import generate_windows, input_dtype
from dvp_hub.models.int8 import int8_available
from dvp_hub.pipelines.live_generator import int8_live_generator
from dvp_hub.video import VideoReader


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="demo")
    ap.add_argument("--source", default=os.path.join(os.path.dirname(__file__), "../../shared/data/speech-wda.mp4"))
    ap.add_argument("--frames", type=int, default=90)
    args = ap.parse_args(argv)
    ok, why = int8_available("cpu")
    if not ok:
        print(f"int8 is unavailable here: {why}", file=sys.stderr)
        return 2
    pipe = DeepVideoPortraitPipeline.from_pretrained(args.target)
    gen = pipe.generator
    w = gen.config.temporal_window
    session = pipe.live(fps=30, mode="reenact", int8=False, compile=False)
    conds = [session.prepare(f.copy()) for f in VideoReader(args.source, max_frames=args.frames)]
    clip = torch.cat(conds).contiguous(memory_format=torch.channels_last)  # [T, 9, R, R]
    t = time.perf_counter()
    q = int8_live_generator(pipe, pipe.generator)
    calib = time.perf_counter() - t
    ring = q.ring(len(clip), clip.shape[-1])
    ring[:] = q.quantize(clip)
    fp, i8 = [], []
    for j in range(len(clip) - w + 1):
        fp.append(generate_windows(gen, clip[j : j + w], compiled=True)[0])
        i8.append(q(ring[j : j + w].permute(1, 0, 2, 3)[None])[0])
    to8 = lambda x: ((torch.stack(x) + 1) * 127.5).round().clamp(0, 255)  # noqa: E731
    a, b = to8(fp), to8(i8)
    d = (a - b).abs()
    psnr = 10 * np.log10(255**2 / float((d**2).mean()))
    one = clip[:w]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float path in {input_dtype(gen)}")
    print(f"float eager     {median_ms(lambda: generate_windows(gen, one)):6.1f} ms a window")
    print(f"float compiled  {median_ms(lambda: generate_windows(gen, one, compiled=True)):6.1f} ms a window")
    win = ring[:w].permute(1, 0, 2, 3)[None]
    print(f"int8            {median_ms(lambda: q(win)):6.1f} ms a window (calibration {calib:.1f} s)")
    print(
        f"int8 against compiled float over {len(a)} frames: PSNR {psnr:.1f} dB, mean difference "
        f"{float(d.mean()):.2f} grey levels, 99.9th percentile {float(torch.quantile(d.flatten()[::7], 0.999)):.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

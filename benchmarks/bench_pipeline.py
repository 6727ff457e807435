"""End-to-end reenactment benchmark: frames/s, overhead over generator-only time, memory vs source length.

    python benchmarks/bench_pipeline.py [--long-seconds 60] [--json out.json]

The source is talking-d3.mp4 cut (10 s) or looped (``--long-seconds``) with ffmpeg; the output is written
to an mp4 as `dvp reenact` does (streaming). Configurations: the bundled light demo target, and the
paper generator (random weights: the same cost as a trained one) on the same target parameters.
Peak memory is measured in a fresh process per run (VmHWM). The overhead is the end-to-end time over the
generator-only time: the same number of frames through the pipeline's generator call in the same batches,
inputs already rendered (``generator_only_seconds``); ``generator_seconds`` is the time inside the pipeline's generator calls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import imageio_ffmpeg

ROOT = os.path.join(os.path.dirname(__file__), "..")
CLIP = os.path.join(ROOT, "..", "shared", "data", "talking-d3.mp4")

RUN = r"""
import json, sys, time, torch
from dvp_hub.perf import tune_allocator; tune_allocator()
from dvp_hub import DeepVideoPortraitPipeline, RenderingToVideoGenerator
from dvp_hub.models.inference import generate_windows, input_dtype
from dvp_hub.render.conditioning import ConditioningRenderer
pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
if {config!r} == "paper":
    torch.manual_seed(0)
    pipe.generator = RenderingToVideoGenerator(temporal_window=11, resolution=256).eval()
pipe.to({device!r})
out = pipe(source_video={src!r}, output_video={dst!r}, progress=False)
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]
# Generator-only time: the pipeline's generator call (generate_windows) on the same number of frames in the
# same batches of 8, its inputs (8 frames + 10 of history, rendered) ready beforehand.
gen, dev = pipe.generator, pipe._execution_device
seq = out.parameters
clip = ConditioningRenderer(device=dev).render(seq, pipe.target.crop, 256, frames=slice(0, 18)).to(input_dtype(gen))
sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
generate_windows(gen, clip); sync()
t = time.perf_counter()
for _ in range(0, out.stats["frames"], 8):
    generate_windows(gen, clip)
sync()
gen_only = time.perf_counter() - t
print(json.dumps({{**out.stats, "generator_only_seconds": round(gen_only, 3), "peak_mb": int(hwm) // 1024}}))
"""


def make_source(seconds: float, path: str) -> None:
    ff = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(
        [
            ff,
            "-y",
            "-loglevel",
            "error",
            "-stream_loop",
            "-1",
            "-i",
            CLIP,
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-c:a",
            "aac",
            path,
        ],
        check=True,
    )


def run(config: str, src: str, dst: str, device: str = "cpu") -> dict:
    code = RUN.format(config=config, src=src, dst=dst, device=device)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["overhead_over_generator"] = round(row["seconds"] / row["generator_only_seconds"] - 1, 3)
    row["generator_fps"] = round(row["frames"] / row["generator_only_seconds"], 2)
    return {"config": config, **row}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--long-seconds", type=float, default=60)
    ap.add_argument("--configs", default="light,paper")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        short, long_ = os.path.join(tmp, "s10.mp4"), os.path.join(tmp, "long.mp4")
        make_source(10, short)
        for config in args.configs.split(","):
            rows.append({"source_seconds": 10, **run(config, short, os.path.join(tmp, "o.mp4"), args.device)})
            print(json.dumps(rows[-1]))
        if args.long_seconds:
            make_source(args.long_seconds, long_)
            rows.append(
                {"source_seconds": args.long_seconds, **run("light", long_, os.path.join(tmp, "o.mp4"), args.device)}
            )
            print(json.dumps(rows[-1]))
            print(
                f"peak memory {args.long_seconds:.0f} s / 10 s source: {rows[-1]['peak_mb'] / rows[0]['peak_mb']:.3f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

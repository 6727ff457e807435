"""The live path on files played as a camera: fps, drops, latency, and how well the output follows.

    python benchmarks/bench_live.py [--target demo] [--mode dub] [--json out.json] [--every-frame]
        [--no-pose-limit] [--no-expression-limit] [--no-int8] [--no-pipeline] CLIP [CLIP ...]

Per clip: `run_paced` (frames arrive at the clip's own rate), then the recording and the offline
pipeline's output on the same clip are both re-tracked, and their mouth opening is correlated with
the source's (offline fit).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from dvp_hub import DeepVideoPortraitPipeline
from dvp_hub.face import topology as topo
from dvp_hub.face.fitting import fit_sequence
from dvp_hub.face.model import load_face_model
from dvp_hub.face.tracker import track_video
from dvp_hub.pipelines.live_runner import pipelined_by_default, run_paced
from dvp_hub.video import VideoReader, VideoWriter


def mouth(path_or_seq, max_frames=None):
    seq = path_or_seq if not isinstance(path_or_seq, str) else fit_sequence(track_video(path_or_seq, max_frames))
    return topo.mouth_opening(load_face_model().shape(seq.identity, seq.expression))


def every_frame(session, frames, writer) -> dict:
    """Each frame pushed in turn and written: the live path's causal output without drops."""
    times = []
    for f in frames:
        t = time.perf_counter()
        writer.write(session.push(f))
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    return {
        "frames_in": len(frames),
        "frames_out": len(frames),
        "fps": round(len(frames) / max(sum(times), 1e-9), 2),
        "ms_p50": round(float(np.percentile(ms, 50)), 1),
        "ms_p95": round(float(np.percentile(ms, 95)), 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--target", default="demo")
    ap.add_argument("--mode", default="dub", choices=["dub", "reenact"])
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--every-frame",
        action="store_true",
        help="no camera pacing and no drops: each frame is pushed and waited for, so the mouth figure measures the "
        "live path itself whatever the machine's speed (fps is then its throughput)",
    )
    ap.add_argument("--no-pose-limit", action="store_true", help="as dvp reenact (reenact mode)")
    ap.add_argument("--no-expression-limit", action="store_true", help="as dvp reenact (reenact mode)")
    ap.add_argument(
        "--no-int8", action="store_true", help="the compiled float generator instead of int8 (as DVP_INT8=0)"
    )
    ap.add_argument("--full-generator", action="store_true", help="the full generator, not the distilled live one")
    ap.add_argument("--no-pipeline", action="store_true", help="prepare and generate one after the other (run_paced)")
    args = ap.parse_args()
    limits = dict(limit_pose=not args.no_pose_limit, limit_expression=not args.no_expression_limit)
    pipe = DeepVideoPortraitPipeline.from_pretrained(args.target)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for clip in args.clips:
        reader = VideoReader(clip, max_frames=args.max_frames)
        frames = [f.copy() for f in reader]
        session = pipe.live(
            fps=reader.fps, mode=args.mode, int8=not args.no_int8, light=not args.full_generator, **limits
        )
        with tempfile.TemporaryDirectory() as tmp:
            rec = os.path.join(tmp, "live.mp4")
            writer = VideoWriter(rec, reader.fps, low_latency=True)
            st = (
                every_frame(session, frames, writer)
                if args.every_frame
                else run_paced(session, frames, reader.fps, writer, pipelined=False if args.no_pipeline else None)
            )
            writer.close()
            off = os.path.join(tmp, "offline.mp4")
            pipe(source_video=clip, max_frames=args.max_frames, mode=args.mode, output_video=off, **limits)
            src = mouth(clip, args.max_frames)
            calib = session.calibration_frames
            live_m, off_m = mouth(rec), mouth(off)
            n = min(len(src), len(live_m), len(off_m))
            st.update(
                clip=os.path.basename(clip),
                mode=args.mode,
                **(limits if args.mode == "reenact" else {}),
                paced=not args.every_frame,
                pipelined=not args.every_frame and (not args.no_pipeline and pipelined_by_default(session)),
                generator=session.generator_label,
                mouth_r_live=round(float(np.corrcoef(src[calib:n], live_m[calib:n])[0, 1]), 3),
                mouth_r_offline=round(float(np.corrcoef(src[calib:n], off_m[calib:n])[0, 1]), 3),
            )
        rows.append(st)
        print(json.dumps(st), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()

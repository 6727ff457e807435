"""Foundation benchmark: tracking + fitting speed, rendering speed, tracking memory vs clip length.

    python benchmarks/bench_foundation.py [--clip ../shared/data/talking-d6.mp4] [--json out.json]

1. Tracking + fitting frames/s on the clip, decode excluded (frames are decoded into memory first).
2. Rendering the 9 conditioning channels at 256 x 256 in batches of 64.
3. Peak memory (VmHWM of a fresh process) tracking + fitting a 30 s cut vs a 3 s cut of the clip,
   streaming from the file as `dvp track` does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from dvp_hub.face.fitting import fit_sequence
from dvp_hub.face.tracker import FaceTracker
from dvp_hub.perf import tune_allocator
from dvp_hub.render.conditioning import ConditioningRenderer
from dvp_hub.render.crop import Crop
from dvp_hub.video import VideoReader, VideoWriter

DEFAULT_CLIP = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "talking-d6.mp4")


def track_memory(clip: str, frames: int) -> float:
    code = (
        "import resource\n"
        "from dvp_hub.face.tracker import track_video\nfrom dvp_hub.face.fitting import fit_sequence\n"
        "fit_sequence(track_video(%r, max_frames=%d))\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    ) % (clip, frames)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=DEFAULT_CLIP)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    tune_allocator()
    reader = VideoReader(args.clip)
    t0 = time.perf_counter()
    frames = list(reader)
    decode_s = time.perf_counter() - t0
    n = len(frames)
    with FaceTracker() as tracker:
        track = tracker.track(frames, fps=reader.fps)
    t0 = time.perf_counter()
    seq = fit_sequence(track)
    fit_s = time.perf_counter() - t0
    row = {
        "clip": os.path.basename(args.clip),
        "frames": n,
        "size": f"{reader.width}x{reader.height}",
        "decode_fps": round(n / decode_s, 1),
        "track_fps": round(n / track.seconds, 1),
        "fit_fps": round(n / fit_s, 1),
        "track_fit_fps": round(n / (track.seconds + fit_s), 1),
        "reprojection_px": seq.info["reprojection_error_px"],
        "reprojection_iod": seq.info["reprojection_error_iod"],
        "jitter_tracked_iod": seq.info["jitter_tracked_iod"],
        "jitter_fitted_iod": seq.info["jitter_fitted_iod"],
    }
    renderer = ConditioningRenderer()
    crop = Crop.for_landmarks(seq.landmarks, reader.width, reader.height)
    renderer.render(seq, crop, 256, frames=slice(0, 64))
    for bs in (16, 64):
        t0 = time.perf_counter()
        for s in range(0, n, bs):  # batch by batch, as the dataset and the pipeline consume them
            renderer.render(seq, crop, 256, frames=slice(s, s + bs), batch_size=bs)
        row[f"render_fps_256_batch{bs}"] = round(n / (time.perf_counter() - t0), 1)
    # encode: the pipeline's output (256 x 256 crops, H.264, container metadata), as VideoWriter writes it
    crops = [crop.apply(f, 256) for f in frames]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with VideoWriter(os.path.join(tmp, "o.mp4"), reader.fps) as writer:
            for c in crops:
                writer.write(c)
        row["encode_fps_256"] = round(n / (time.perf_counter() - t0), 1)
    fps = reader.fps
    m3, m30 = track_memory(args.clip, int(3 * fps)), track_memory(args.clip, int(30 * fps))
    row.update({"peak_mb_3s": round(m3), "peak_mb_30s": round(m30), "peak_ratio_30s_3s": round(m30 / m3, 3)})
    print(json.dumps(row, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=1)


if __name__ == "__main__":
    main()

"""Load test of the Space: N concurrent gradio_client requests against a launched app (127.0.0.1 only).

    python benchmarks/load_space.py [--clients 8] [--seconds 2]

Starts `spaces/app.py` in a subprocess, submits N reenactment jobs at once with a short real clip, and
reports for each whether it completed, its wait + run time, and the server's peak resident memory
(sampled every 0.2 s). The app's queue (max 16 waiting, one job at a time) makes extra visitors wait in
line instead of running concurrently.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psutil
from gradio_client import Client, handle_file

from dvp_hub.video import VideoReader, write_video

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CLIP = os.path.join(ROOT, "..", "shared", "data", "talking-d3.mp4")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "src.mp4")
    write_video(VideoReader(CLIP, max_frames=int(30 * args.seconds)), src, 30, audio_from=CLIP, synthetic=False)
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port)}
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "spaces", "app.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    proc = psutil.Process(server.pid)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.2)

    try:
        for _ in range(120):
            try:
                client = Client(url, verbose=False)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(1)
        idle_mb = proc.memory_info().rss / 2**20
        threading.Thread(target=sample, daemon=True).start()
        t0 = time.perf_counter()
        jobs = [
            client.submit(
                handle_file(src), "demo", "", "reenact", ["pose", "expression", "gaze"], True, api_name="/reenact"
            )
            for _ in range(args.clients)
        ]
        results = []
        for i, job in enumerate(jobs):
            try:
                out = job.result(timeout=900)
                results.append(
                    {"client": i, "ok": os.path.isfile(out[0]), "done_s": round(time.perf_counter() - t0, 1)}
                )
            except Exception as err:  # noqa: BLE001
                results.append({"client": i, "ok": False, "error": str(err)[:200]})
        stop.set()
        summary = {
            "clients": args.clients,
            "completed": sum(r["ok"] for r in results),
            "lost": sum(not r["ok"] for r in results),
            "total_s": round(time.perf_counter() - t0, 1),
            "server_idle_mb": round(idle_mb),
            "server_peak_mb": round(peak[0] / 2**20),
            "results": results,
        }
        print(json.dumps(summary, indent=1))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(summary, f, indent=1)
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()

"""The Space's Live tab in headless Chromium with a fake camera: output frames a second, as a visitor sees them.

    python benchmarks/bench_space_live.py [--seconds 20] [--clip talking-d3.mp4] [--json out.json] [--screenshot p.png]

Launches the Space in this process (127.0.0.1 only), starts Debian's Chromium (``/usr/bin/chromium``) with a
shared clip as its fake camera (converted to y4m, 320 px at 25 fps), ticks the consent box, starts streaming,
waits for the first output frame, then counts the distinct output images the page shows over ``--seconds``
of wall time. Prints one JSON object: the output rate, the server's own status line (its fps, latency and drop
figures) and the machine. The browser runs on the same cores as the server, as it does for a local visitor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import imageio_ffmpeg
from playwright.sync_api import sync_playwright
from timing import machine  # benchmarks/timing.py, beside this script

from dvp_hub.space import build_demo

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


COUNT_OUTPUTS = """() => {
  window.__dvpSeen = new Set();
  const out = document.querySelector('#live_out');
  const note = () => { const img = out.querySelector('img'); if (img) window.__dvpSeen.add(img.src); };
  new MutationObserver(note).observe(out, {subtree: true, childList: true, attributes: true, attributeFilter: ['src']});
}"""


def fake_camera(clip: str, seconds: float) -> str:
    path = os.path.join(tempfile.mkdtemp(), "camera.y4m")
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", clip, "-t", str(seconds + 30)]
        + ["-vf", "scale=320:320,fps=25", "-pix_fmt", "yuv420p", path],
        check=True,
    )
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clip", default="talking-d3.mp4")
    ap.add_argument("--json", default=None)
    ap.add_argument("--screenshot", default=None, help="save the page as a PNG at the end, to look at")
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium")
    if not chromium:
        raise SystemExit("error: Debian's chromium is not installed (apt-get install chromium)")
    camera = fake_camera(os.path.join(DATA, args.clip), args.seconds)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = build_demo()
    demo.queue(max_size=16, default_concurrency_limit=1).launch(prevent_thread_lock=True, server_port=port, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--use-fake-ui-for-media-stream",
                    "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-video-capture={camera}",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Live").click()
            page.locator("#live_consent input[type=checkbox]").check()
            page.locator("#live_cam").get_by_text("Click to Access Webcam").click()
            page.locator("#live_cam button[aria-label='capture photo']").click()
            page.wait_for_function("() => document.querySelector('#live_out img')", timeout=180_000)
            page.wait_for_timeout(3000)  # past the first frames' warm-up
            # counted in the page (a MutationObserver on the output image), not by polling it from here: polling
            # would take CPU from the server and the browser on the same cores
            page.evaluate(COUNT_OUTPUTS)
            t0 = time.time()
            page.wait_for_timeout(1000 * args.seconds)
            distinct = page.evaluate("window.__dvpSeen.size")
            elapsed = time.time() - t0
            status = page.locator("#live_status").inner_text()
            # Gradio's hidden progress timer ("0.0s") is part of the element's text, not of what the page shows
            status = " ".join(x for x in status.split("\n") if x.strip() and not re.fullmatch(r"[\d.]+s", x.strip()))
            if args.screenshot:
                page.screenshot(path=args.screenshot, full_page=True)
            browser.close()
    finally:
        demo.close()
    result = {
        "benchmark": "Space Live tab, headless Chromium, fake camera",
        "clip": args.clip,
        "seconds": round(elapsed, 1),
        "output_fps": round(distinct / elapsed, 2),
        "server_status": status,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

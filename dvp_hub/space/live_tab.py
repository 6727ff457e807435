"""The Space's Live tab: webcam in, the target out, continuously.

Transport: Gradio's own webcam streaming (``gr.Image(sources=["webcam"], streaming=True).stream``): it
ships with Gradio and works on 127.0.0.1 and on Spaces without a TURN server. Each webcam frame is offered to
the session's `LiveRunner` (the engine `dvp live` runs: a one-frame mailbox that drops rather than queues, the
prepare, generate and finish stages side by side where that pays), and the call returns the newest output it has not
returned yet, waiting for it only while an earlier frame is still in the runner (else the image is left as it is);
so the runner works on the next frames while Gradio carries the last one to the browser.

One live session at a time on a CPU: the first visitor who streams holds it until they stop for
`IDLE_SECONDS`; others are told that the live mode is busy (the upload tab keeps working). The session
calibrates on its first second (a button redoes it); a recording is written on the wall clock's
timeline (the last output repeated until the next one), labelled and signed like every output.
"""

from __future__ import annotations

import collections
import logging
import os
import tempfile
import threading
import time

import cv2
import gradio as gr
import numpy as np

from ..pipelines.live_runner import LiveRunner, pipelined_by_default
from ..video import VideoWriter
from .common import CONSENT, get_pipeline, pick_target, user_error

IDLE_SECONDS = 5.0
RECORD_FPS = 20.0
STREAM_EVERY = 0.04  # seconds between webcam frames sent by the browser (at most 25 fps)
# How the streamed images are encoded: Gradio's default (WebP) takes about 60 ms for a 1280 x 720 frame on two
# cores, JPEG (libjpeg-turbo) a few ms. Display only: a recording is written from the frames themselves.
STREAM_FORMAT = "jpeg"
DISPLAY_WIDTH = 854  # px: the page shows frames at most this wide (480p); a recording keeps them whole
OUTPUT_WAIT = 1.0  # seconds a call waits for a new output before it returns the last one again


class _Live:
    def __init__(self):
        self.lock = threading.Lock()
        self.new_output = threading.Condition(self.lock)
        self.reset()

    def reset(self):
        """Close the runner (frames in flight are finished), the session and an unfinished recording (aborted:
        nothing half-written stays); called with ``lock`` held."""
        runner, session = getattr(self, "runner", None), getattr(self, "session", None)
        writer = getattr(self, "writer", None)
        self.runner = self.session = self.writer = None  # the runner's last outputs find no recording
        if runner is not None:
            self.lock.release()  # its last output's callback takes the lock
            try:
                runner.close()
            except Exception as err:  # noqa: BLE001 - a failed frame was reported to its visitor already
                logging.getLogger("dvp_hub").debug("live runner closed with %s", err)
            finally:
                self.lock.acquire()
        if writer is not None:
            writer.abort()
        if session is not None:
            session.close()  # its paste-back segmenter
        self.owner = None
        self.key = None
        self.offered = 0  # frames offered to the runner
        self.last_index = 0  # the newest output's frame
        self.returned = 0  # the newest frame a call returned
        self.last_seen = 0.0
        self.outputs: collections.deque = collections.deque(maxlen=30)  # output times, for the fps
        self.latencies: collections.deque = collections.deque(maxlen=30)
        self.writer = None
        self.record_start = 0.0
        self.recorded = 0
        self.last_frame = None
        self.last_shown = None  # the last frame as the page shows it (`_display`)


LIVE = _Live()


def _owner(request) -> str:
    return getattr(request, "session_hash", None) or "local"


def _status(live: _Live) -> str:
    times = list(live.outputs)
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    lat = 1000 * float(np.median(live.latencies)) if live.latencies else 0.0
    text = f"{fps:.1f} fps · latency {lat:.0f} ms"
    if live.session is not None and live.session.calibrating:
        text += " · calibrating: look into the camera with a relaxed, neutral face"
    if live.writer is not None:
        text += f" · recording {live.recorded / RECORD_FPS:.1f} s"
    return text


def live_frame(frame, target_choice, hub_id, mode, consent, request: gr.Request = None):
    """One webcam frame in, the target's frame and a status line out."""
    if frame is None:
        return None, "Start the camera."
    if not consent:
        return None, "Tick the consent box first: the result is synthetic and labelled so."
    me, now = _owner(request), time.perf_counter()
    live = LIVE
    with live.lock:
        if live.owner not in (None, me) and now - live.last_seen < IDLE_SECONDS:
            return None, "The live mode is busy: another visitor is using it. The Reenact tab keeps working."
        key = (pick_target(target_choice, hub_id), mode or "dub")
        if live.owner != me or live.key != key or live.session is None:
            live.reset()
            live.session = get_pipeline(key[0]).live(fps=1 / STREAM_EVERY, mode=key[1])
            live.runner = LiveRunner(
                live.session, on_output=_on_output, pipelined=pipelined_by_default(live.session)
            )
            live.owner, live.key = me, key
        live.last_seen = now
        live.offered += 1
        runner, index = live.runner, live.offered
    runner.offer(index, np.ascontiguousarray(frame[..., :3]), now)
    with live.lock:
        # Wait only for frames offered before this one: waiting for this one's own output would hold every call for
        # a whole frame's latency, one frame in the runner at a time, and its stages would never overlap.
        if live.last_index < index - 1 or live.last_index > live.returned:
            live.new_output.wait_for(lambda: live.last_index > live.returned or runner.error is not None, OUTPUT_WAIT)
        if runner.error is not None:
            live.reset()
            raise user_error(f"The live session stopped: {str(runner.error).splitlines()[0][:200]}")
        if live.last_index <= live.returned:  # nothing new yet: the image stays as it is
            return gr.skip(), _status(live)
        live.returned = live.last_index
        return live.last_shown, _status(live)


def _on_output(index: int, out: np.ndarray, arrived: float) -> None:
    """The runner's output callback (its finish thread): keep the frame, time it, record it."""
    done = time.perf_counter()
    shown = _display(out)
    live = LIVE
    with live.lock:
        live.latencies.append(done - arrived)
        live.outputs.append(done)
        live.last_frame, live.last_shown, live.last_index = out, shown, index
        if live.writer is not None:  # on the wall clock's timeline: repeat the output until it is due
            due = int((done - live.record_start) * RECORD_FPS) + 1
            box = live.session.changed_region if live.session is not None else None  # `VideoWriter.write`
            while live.recorded < due:
                live.writer.write(out, box)
                box = (0, 0, 0, 0)  # the same frame again: nothing to convert
                live.recorded += 1
        live.new_output.notify_all()


def _display(frame: np.ndarray) -> np.ndarray:
    """An output frame as the page shows it: at most `DISPLAY_WIDTH` wide (what a browser encodes, carries and
    decodes for every frame; the column it is shown in is narrower)."""
    h, w = frame.shape[:2]
    if w <= DISPLAY_WIDTH:
        return frame
    return cv2.resize(frame, (DISPLAY_WIDTH, round(h * DISPLAY_WIDTH / w / 2) * 2), interpolation=cv2.INTER_AREA)


def live_calibrate(request: gr.Request = None) -> str:
    with LIVE.lock:
        if LIVE.session is None or LIVE.owner != _owner(request):
            return "Start the camera first."
        LIVE.session.recalibrate()
        return "Calibrating again: look into the camera with a relaxed, neutral face."


def live_record_start(request: gr.Request = None) -> str:
    with LIVE.lock:
        if LIVE.session is None or LIVE.owner != _owner(request):
            return "Start the camera first."
        if LIVE.writer is None:
            folder = tempfile.mkdtemp(prefix="dvp-live-")
            os.chmod(folder, 0o755)
            pipe = LIVE.session.pipe
            LIVE.writer = VideoWriter(
                os.path.join(folder, "live.mp4"),
                RECORD_FPS,
                provenance=pipe.provenance(mode="live", source="webcam"),
                low_latency=True,
            )
            LIVE.writer.open(*LIVE.session.output_size)  # here, not in the frame path
            LIVE.record_start, LIVE.recorded = time.perf_counter(), 0
        return "Recording: press Stop to get the video."


def live_record_stop(request: gr.Request = None):
    """Close the recording: the labelled, signed mp4 (or an error when nothing was recorded)."""
    with LIVE.lock:
        writer = LIVE.writer if LIVE.owner == _owner(request) else None
        if writer is None:
            raise user_error("Nothing is being recorded: press Record first.")
        LIVE.writer = None
        if LIVE.recorded == 0 and LIVE.last_frame is not None:
            writer.write(LIVE.last_frame)
        if writer.frames_written == 0:
            writer.abort()
            raise user_error("The recording is empty: keep the camera running while recording.")
        writer.close()
        return str(writer.path), f"Recorded {writer.frames_written / RECORD_FPS:.1f} s."


def build_live_tab(target, hub_id) -> None:
    """The Live tab's components and events (inside ``gr.Blocks``)."""
    gr.Markdown(
        "Look into your webcam and the target follows your head, expression and gaze, live. The first second "
        "calibrates (keep a relaxed, neutral face). One live visitor at a time."
    )
    with gr.Row():
        with gr.Column():
            cam = gr.Image(
                sources=["webcam"], streaming=True, label="Your camera", elem_id="live_cam", format=STREAM_FORMAT
            )
            mode = gr.Radio(
                ["dub", "reenact"],
                value="dub",
                label="Mode (dub: the target keeps its own head motion, its face follows yours: the demo's "
                "cleanest; reenact: the head follows yours too)",
            )
            consent = gr.Checkbox(label=CONSENT, value=False, elem_id="live_consent")
            with gr.Row():
                calibrate = gr.Button("Calibrate", elem_id="live_calibrate")
                rec = gr.Button("Record", elem_id="live_record")
                stop = gr.Button("Stop recording", elem_id="live_stop")
        with gr.Column():
            out = gr.Image(label="Target (synthetic)", elem_id="live_out", streaming=True, format=STREAM_FORMAT)
            status = gr.Markdown(elem_id="live_status")
            recording = gr.File(label="Recording (synthetic, labelled)", elem_id="live_recording")
    cam.stream(
        live_frame,
        [cam, target, hub_id, mode, consent],
        [out, status],
        stream_every=STREAM_EVERY,
        concurrency_limit=1,
        concurrency_id="live",
        show_progress="hidden",
        api_name="live_frame",
    )
    calibrate.click(live_calibrate, None, status, api_name=False)
    rec.click(live_record_start, None, status, api_name=False)
    stop.click(live_record_stop, None, [recording, status], api_name=False)
